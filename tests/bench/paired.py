#!/usr/bin/env python3
"""Compare two methods on the same prompts: the paired counts and the exact sign test.

A sweep's `!` compares each method with `full`; this compares any two answers of the same
prompts, within one run or across two runs of the same prompts (e.g. the query-aware and
query-agnostic sweeps of one context, which share their seed and so their prompts):

    tests/bench/paired.py tests/results/passkey_8k.json dynamickv:budget=1024 snapkv:budget=1024
    tests/bench/paired.py tests/results/passkey_4k_agnostic.json snapkv:budget=1024 \\
        snapkv:budget=1024 --vs tests/results/passkey_4k.json
    tests/bench/paired.py tests/results/passkey_2k.json streaming:budget=1024 full --depths 0.5:1

Prints how many prompts each gets right, how many only one of the two gets right, and the
two-sided p-value of an exact sign test on those (the same test as the sweep's `!`).
"""
import argparse
import json
import math
import sys


def sign_test_p(only_first, only_second):
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_first, only_second) + 1))
    return min(1.0, 2 * tail / 2**n)


def answers(path, spec):
    """prompt id -> answer record of `spec` in the run JSON at `path`."""
    try:
        with open(path) as f:
            records = json.load(f)["trials_detail"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"{path}: not a kvlm run JSON ({e})")
    found = {r["prompt"]: r for r in records if r["spec"] == spec}
    if not found:
        specs = ", ".join(sorted({r["spec"] for r in records}))
        sys.exit(f"{path}: no answers of '{spec}' (the run has: {specs})")
    return found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a sweep, passkey or needle JSON written by kvlm --json")
    parser.add_argument("first", help="a method spec as the run names it, e.g. snapkv:budget=256")
    parser.add_argument("second", help="the spec to compare it with")
    parser.add_argument("--vs", metavar="JSON", help="read the second spec from this run (same prompts)")
    parser.add_argument("--depths", metavar="LO:HI", help="only prompts with LO <= depth <= HI")
    args = parser.parse_args()

    first = answers(args.json, args.first)
    second_path = args.vs or args.json
    second = answers(second_path, args.second)
    for prompt, a in first.items():
        b = second.get(prompt)
        if b is None or any(b[k] != a[k] for k in ("expected", "depth", "ctx")):
            sys.exit(f"{args.json} and {second_path}: prompt {prompt} is not the same prompt in both "
                     "(another seed, task or context?)")
    prompts = sorted(first)
    if args.depths:
        try:
            low, high = (float(x) for x in args.depths.split(":"))
        except ValueError:
            sys.exit(f"--depths {args.depths}: give LO:HI, e.g. 0.5:1")
        prompts = [p for p in prompts if low <= first[p]["depth"] <= high]
        if not prompts:
            sys.exit(f"--depths {args.depths}: no prompt of {args.json} lies there")

    right_first = {p for p in prompts if first[p]["strict"]}
    right_second = {p for p in prompts if second[p]["strict"]}
    only_first = len(right_first - right_second)
    only_second = len(right_second - right_first)
    print(f"{args.first} vs {args.second}{' (' + second_path + ')' if args.vs else ''}, "
          f"{len(prompts)} prompts")
    print(f"right: {len(right_first)} vs {len(right_second)}; only the first: {only_first}, "
          f"only the second: {only_second}; exact sign test p = {sign_test_p(only_first, only_second):.2g}")


if __name__ == "__main__":
    main()
