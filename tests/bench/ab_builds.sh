#!/usr/bin/env bash
# Two kvlm builds side by side (before and after a change): `kvlm bench` runs alternate
# between them, the first of each pair taking turns, and the script prints every pair's
# ratio after / before of prefill and decode tokens/s, their medians, and how many pairs
# the second build was faster in: the README's "median of N alternating pairs". On a
# shared machine single runs move by 10-40%, and a pair's two runs see the same weather
# more often than two runs minutes apart.
#
#   tests/bench/ab_builds.sh BEFORE_KVLM AFTER_KVLM [PAIRS=6] [-- BENCH ARGS...]
#
# BENCH ARGS go to both `kvlm bench` runs (default: --prompt-len 512 --gen 64, the
# default model). Build the "before" binary from another commit with, e.g.,
#   git worktree add /tmp/before HEAD~1 && make -C /tmp/before kvlm
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 BEFORE_KVLM AFTER_KVLM [PAIRS=6] [-- BENCH ARGS...]" >&2
  exit 2
fi
bins=("$1" "$2")
shift 2
pairs=6
if [ $# -gt 0 ] && [ "$1" != "--" ]; then pairs=$1; shift; fi
[ $# -gt 0 ] && [ "$1" == "--" ] && shift
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--prompt-len 512 --gen 64)
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }; done
[[ "$pairs" =~ ^[1-9][0-9]*$ ]] || { echo "$0: PAIRS must be a positive integer, not '$pairs'" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One run of binary j: appends "prefill decode" to $work/bj.
run_one() {
  local j=$1 out=$work/run.json
  if ! "${bins[$j]}" bench -q "${args[@]}" --json "$out" >/dev/null 2>"$work/err"; then
    echo "$0: ${bins[$j]} bench ${args[*]} failed:" >&2
    cat "$work/err" >&2
    exit 1
  fi
  python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print("%.1f %.1f" % (r["prefill_tokens_per_s"], r["decode_tokens_per_s"]))' "$out" >> "$work/b$j"
}

echo "kvlm bench ${args[*]}: $pairs pairs, $(nproc) cores" >&2
: > "$work/b0"
: > "$work/b1"
for ((p = 0; p < pairs; p++)); do
  for k in 0 1; do
    run_one $(( (p + k) % 2 ))
  done
  echo "  pair $((p + 1)): before $(tail -1 "$work/b0"), after $(tail -1 "$work/b1")" >&2
done

python3 - "$work/b0" "$work/b1" "${bins[0]}" "${bins[1]}" <<'PY'
import statistics, sys
before = [list(map(float, line.split())) for line in open(sys.argv[1])]
after = [list(map(float, line.split())) for line in open(sys.argv[2])]
print(f"before: {sys.argv[3]}\nafter:  {sys.argv[4]}\n")
print("| | before tok/s (median) | after tok/s (median) | after / before, per pair | median ratio | pairs faster |")
print("|---|---:|---:|---|---:|---:|")
for col, name in enumerate(["prefill", "decode"]):
    b = [row[col] for row in before]
    a = [row[col] for row in after]
    ratios = [y / x for x, y in zip(b, a)]
    faster = sum(r > 1 for r in ratios)
    print(f"| {name} | {statistics.median(b):.1f} | {statistics.median(a):.1f} | "
          f"{' '.join(f'{r:.2f}' for r in ratios)} | {statistics.median(ratios):.3f} | "
          f"{faster} of {len(ratios)} |")
PY
