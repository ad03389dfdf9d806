#!/usr/bin/env python3
"""How much of the expected number each method's answers get right, from a run's JSON.

The exact scorer counts "722." for the key 7225299 as wrong, as it should; this script
shows what such misses hold. For every method: the answers' distribution of the length of
the number's correct leading digits (the first number in the answer against the first
expected value), over the prompts of the given depths.

    tests/bench/answer_prefix.py tests/results/needle_128.json [--below-depth 1.0]

--below-depth D keeps only prompts whose needle lies before depth D (depth 1.0, the end
of the text, falls inside every method's recent window).
"""
import argparse
import collections
import json
import re
import sys


def correct_digits(expected, answer):
    found = re.search(r"\d+", answer)
    got = found.group(0) if found else ""
    n = 0
    while n < min(len(expected), len(got)) and expected[n] == got[n]:
        n += 1
    return n


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", help="a passkey, needle or sweep JSON written by kvlm --json")
    parser.add_argument("--below-depth", type=float, default=None,
                        help="only prompts whose needle lies before this depth")
    args = parser.parse_args()
    try:
        with open(args.json) as f:
            run = json.load(f)
        records = run["trials_detail"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"{args.json}: not a kvlm run JSON ({e})")

    lengths = collections.defaultdict(list)  # spec -> correct leading digits per answer
    for r in records:
        if args.below_depth is not None and r["depth"] >= args.below_depth:
            continue
        lengths[r["spec"]].append(correct_digits(r["expected"][0], r["answer"]))
    if not lengths:
        sys.exit(f"{args.json}: no answers at the requested depths")

    longest = max(len(r["expected"][0]) for r in records)
    header = "".join(f"{k:>5}" for k in range(longest + 1))
    print(f"correct leading digits of the answer (answers per count), {run.get('title', '')}")
    print(f"{'method':28}{header}   mean")
    for spec, values in lengths.items():
        counts = collections.Counter(values)
        row = "".join(f"{counts.get(k, 0):>5}" for k in range(longest + 1))
        print(f"{spec:28}{row}   {sum(values) / len(values):4.2f}")


if __name__ == "__main__":
    main()
