#!/usr/bin/env python3
"""Check the result files the README quotes: every cell of every sweep, passkey and needle
JSON in tests/results is recomputed from the answers the same file records.

For each cell (one method spec at one context, and one depth where the run fixes depths):
the accuracy, its 95% Wilson interval, and the exact sign test against `full` on the same
prompts (the `!` of the tables), computed here in Python, independently of kvlm's C++
(src/eval/stats.cpp), with the sign test of tests/bench/paired.py, which the README's
comparisons between two methods come from. Prints one line per file; exits 1 if a cell
disagrees, a file cannot be read, or a cell has no answers behind it.

    tests/bench/check_results.py [FILE.json ...]   (default: tests/results/*.json and *.json.gz)
"""
import glob
import gzip
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from paired import sign_test_p  # noqa: E402

Z95 = 1.959963984540054


def wilson(right, n):
    p = right / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def close(a, b, tolerance=1e-9):
    return abs(a - b) <= tolerance * max(1.0, abs(b))


def check(path):
    """A list of problems found in one run JSON (empty: it checks out), and its cell count."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rt") as f:
        run = json.load(f)
    if "cells" not in run or "trials_detail" not in run:
        return None, 0  # not an accuracy run (e.g. a perplexity run)
    answers = {}  # (spec, ctx, depth or None) -> {prompt: right}
    for a in run["trials_detail"]:
        for depth in (None, a["depth"]):
            answers.setdefault((a["spec"], a["ctx"], depth), {})[a["prompt"]] = a["strict"]
    problems = []
    for cell in run["cells"]:
        where = f"{cell['spec']} at ctx {cell['ctx']}" + (
            "" if cell["depth"] is None else f", depth {cell['depth']}")
        if cell["model_cannot"]:
            continue
        mine = answers.get((cell["spec"], cell["ctx"], cell["depth"]))
        if not mine:
            problems.append(f"{where}: no answers behind the cell")
            continue
        n, right = len(mine), sum(mine.values())
        low, high = wilson(right, n)
        if cell["trials"] != n or not close(cell["accuracy"], right / n):
            problems.append(f"{where}: the cell says {cell['accuracy']:.4f} of {cell['trials']}, "
                            f"its answers {right} of {n}")
        if not (close(cell["accuracy_low"], low, 1e-6) and close(cell["accuracy_high"], high, 1e-6)):
            problems.append(f"{where}: interval [{cell['accuracy_low']:.4f}, {cell['accuracy_high']:.4f}]"
                            f", Wilson gives [{low:.4f}, {high:.4f}]")
        if cell["p_vs_full"] is None:
            continue
        full = answers.get(("full", cell["ctx"], cell["depth"]), {})
        shared = [p for p in mine if p in full]
        only_method = sum(1 for p in shared if mine[p] and not full[p])
        only_full = sum(1 for p in shared if full[p] and not mine[p])
        p = sign_test_p(only_method, only_full)
        if not close(cell["p_vs_full"], p, 1e-6):
            problems.append(f"{where}: p vs full {cell['p_vs_full']:.3g}, the sign test gives {p:.3g} "
                            f"({only_method} vs {only_full} prompts)")
    return problems, len(run["cells"])


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    results = os.path.join(here, "..", "results")
    paths = sys.argv[1:] or sorted(glob.glob(os.path.join(results, "*.json")) +
                                   glob.glob(os.path.join(results, "*.json.gz")))
    if not paths:
        sys.exit("check_results: no JSON files to check")
    failed = False
    for path in paths:
        name = os.path.relpath(path)
        try:
            problems, cells = check(path)
        except (OSError, ValueError, KeyError, TypeError) as e:
            print(f"{name}: cannot be checked ({e!r})")
            failed = True
            continue
        if problems is None:
            print(f"{name}: no accuracy cells (skipped)")
        elif problems:
            failed = True
            print(f"{name}: {len(problems)} of {cells} cells disagree with their answers")
            for problem in problems[:10]:
                print(f"  {problem}")
        else:
            print(f"{name}: {cells} cells agree with their answers")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
