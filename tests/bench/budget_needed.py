#!/usr/bin/env python3
"""The smallest budget at which each method stops differing from `full`, across sweeps.

For every sweep JSON given (one column each) and every budgeted method: the smallest budget
B of the sweep such that at B and at every larger budget the method's cell has no `!` (the
exact sign test against `full` on the same prompts gives p >= 0.05). "-" when even the
largest budget differs. Methods without a budget (full, simlayerkv, minicache) are left out.

    tests/bench/budget_needed.py tests/results/passkey_{2k,4k,8k}.json
"""
import argparse
import json
import sys


def budget_needed(path):
    """(column title, {method: smallest budget or None})."""
    try:
        with open(path) as f:
            run = json.load(f)
        cells = run["cells"]
    except (OSError, ValueError, KeyError) as e:
        sys.exit(f"{path}: not a kvlm sweep JSON ({e})")
    if len({cell["ctx"] for cell in cells}) != 1:
        sys.exit(f"{path}: a run of several contexts; give one sweep JSON per context")
    by_method = {}
    for cell in cells:
        if cell["budget"].startswith("budget=") and cell["p_vs_full"] is not None:
            budget = int(cell["budget"].split("=")[1])
            by_method.setdefault(cell["method"], []).append((budget, cell["p_vs_full"] >= 0.05))
    if not by_method:
        sys.exit(f"{path}: no cells with a budget= column (a sweep JSON has them; needle runs do not)")
    needed = {}
    for method, cells_of_method in by_method.items():
        smallest = None
        for budget, like_full in sorted(cells_of_method, reverse=True):
            if not like_full:
                break
            smallest = budget
        needed[method] = smallest
    title = f"{cells[0]['ctx'] // 1024}K {run['query_mode']}"
    return title, needed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="sweep JSON files written by kvlm sweep --json")
    args = parser.parse_args()
    columns = [budget_needed(path) for path in args.json]
    methods = list(dict.fromkeys(m for _, needed in columns for m in needed))
    print("smallest budget matching full (no ! from there up)")
    print(f"{'method':12}" + "".join(f"{title:>14}" for title, _ in columns))
    for method in methods:
        row = ""
        for _, needed in columns:
            b = needed.get(method, "n/a")
            row += f"{'-' if b is None else b:>14}"
        print(f"{method:12}{row}")


if __name__ == "__main__":
    main()
