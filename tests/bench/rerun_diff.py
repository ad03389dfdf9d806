#!/usr/bin/env python3
"""Two runs of the same prompts, every cell: what changed between them, answer by answer.

For runs of one sweep (same task, seed, contexts and methods) made with two builds or two
settings, e.g. prefill's products in bf16 pairs and with --f32-prefill:

    tests/bench/rerun_diff.py tests/results/passkey_2k_f32prefill.json.gz \\
        tests/results/passkey_2k_bf16prefill.json.gz

With --common, a run that stopped early (a sweep writes its JSON as it goes) is compared
on the prompts it reached. Prints how many answers are the same text and how many are
right (or wrong) in both, then each cell whose answers differ: its accuracy in each run,
the prompts only one run gets right, and the exact sign test on those (tests/bench/paired.py's).
"""
import argparse
import gzip
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired import sign_test_p  # noqa: E402


def answers(path):
    """(spec, prompt id) -> answer record of the run JSON at `path`."""
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rt") as f:
            records = json.load(f)["trials_detail"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"{path}: not a kvlm run JSON ({e})")
    return {(r["spec"], r["prompt"]): r for r in records}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", help="a sweep, passkey or needle JSON written by kvlm --json")
    parser.add_argument("second", help="a run of the same prompts")
    parser.add_argument("--common", action="store_true",
                        help="compare only the answers both runs hold (one run stopped early)")
    args = parser.parse_args()
    first, second = answers(args.first), answers(args.second)
    if first.keys() != second.keys():
        if not args.common:
            sys.exit(f"{args.first} and {args.second} do not hold the same (method, prompt) "
                     "answers (--common compares those both hold)")
        shared = first.keys() & second.keys()
        if not shared:
            sys.exit(f"{args.first} and {args.second} hold no answer in common")
        print(f"comparing the {len(shared)} answers both runs hold "
              f"(of {len(first)} and {len(second)})")
        first = {k: first[k] for k in shared}
        second = {k: second[k] for k in shared}
    for key, a in first.items():
        if any(second[key][k] != a[k] for k in ("expected", "depth", "ctx")):
            sys.exit(f"prompt {key[1]} is not the same prompt in both runs (another seed or task?)")

    same_text = sum(first[k]["answer"] == second[k]["answer"] for k in first)
    same_right = sum(first[k]["strict"] == second[k]["strict"] for k in first)
    n = len(first)
    print(f"{n} answers: {same_text} the same text ({100 * same_text / n:.1f}%), "
          f"{same_right} right or wrong in both ({100 * same_right / n:.1f}%)")

    cells = {}
    for (spec, prompt), a in first.items():
        cells.setdefault(spec, []).append((a["strict"], second[spec, prompt]["strict"]))
    print(f"{'cell':<24} {'first':>6} {'second':>6} {'only 1st':>8} {'only 2nd':>8} {'p':>6}")
    moved = 0
    for spec, pairs in cells.items():
        only_first = sum(x and not y for x, y in pairs)
        only_second = sum(y and not x for x, y in pairs)
        if only_first == only_second == 0:
            continue
        moved += only_first != only_second
        right_first = 100 * sum(x for x, _ in pairs) / len(pairs)
        right_second = 100 * sum(y for _, y in pairs) / len(pairs)
        print(f"{spec:<24} {right_first:5.1f}% {right_second:5.1f}% {only_first:8d} {only_second:8d} "
              f"{sign_test_p(only_first, only_second):6.3f}")
    print(f"{moved} of {len(cells)} cells have a different accuracy; "
          f"right only in the first run: {sum(x and not y for p in cells.values() for x, y in p)}, "
          f"only in the second: {sum(y and not x for p in cells.values() for x, y in p)}")


if __name__ == "__main__":
    main()
