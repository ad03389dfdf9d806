#!/usr/bin/env bash
# Speed of kvlm on a busy machine: prefill and decode tokens/s of the default model alone
# and with 1 and 2 CPU-bound processes (busy shell loops) beside it, for two kvlm binaries
# side by side (e.g. before and after a change). Runs alternate between the binaries,
# starting with a different one each pair; the table shows medians.
#
#   tests/bench/contention.sh BEFORE_KVLM AFTER_KVLM [PAIRS] [PROMPT_LEN] [GEN]
#
# LOADS="0 1 2" (the default) lists the numbers of busy processes to try.
# Also reports CPU seconds per run (user + system), which is where spinning threads show.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 BEFORE_KVLM AFTER_KVLM [PAIRS=3] [PROMPT_LEN=256] [GEN=16]" >&2
  exit 2
fi
bins=("$1" "$2")
pairs=${3:-3}
prompt_len=${4:-256}
gen=${5:-16}
model=${KVLM_MODEL:-weights/SmolLM2-135M-Instruct.Q4_1.gguf}
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "$0: $b is not an executable" >&2; exit 2; }; done
[ -f "$model" ] || { echo "$0: no model at $model (make model)" >&2; exit 2; }

work=$(mktemp -d)
busy=()
stop_busy() { for p in "${busy[@]}"; do kill "$p" 2>/dev/null || true; done; busy=(); }
trap 'stop_busy; rm -rf "$work"' EXIT

# One run: prints "prefill decode cpu_seconds".
run_one() {
  local bin=$1 out=$work/run.json
  /usr/bin/time -f "%U %S" -o "$work/time" \
    "$bin" bench -q -m "$model" --prompt-len "$prompt_len" --gen "$gen" --json "$out" >/dev/null 2>&1
  python3 - "$out" "$work/time" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
user, system = map(float, open(sys.argv[2]).read().split()[-2:])
print(r["prefill_tokens_per_s"], r["decode_tokens_per_s"], user + system)
PY
}

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "model $model, prompt $prompt_len tokens, $gen decoded, $pairs pairs per cell, $(nproc) cores" >&2
loads=${LOADS:-0 1 2}
for load in $loads; do
  stop_busy
  for ((i = 0; i < load; i++)); do bash -c 'while :; do :; done' & busy+=($!); done
  : > "$work/b0" ; : > "$work/b1"
  for ((p = 0; p < pairs; p++)); do
    for k in 0 1; do
      j=$(( (p + k) % 2 ))
      run_one "${bins[$j]}" >> "$work/b$j"
      echo "  load $load pair $((p + 1)) ${bins[$j]}: $(tail -1 "$work/b$j")" >&2
    done
  done
  for j in 0 1; do
    for col in 1 2 3; do cut -d' ' -f$col "$work/b$j" | median; done | paste -sd' ' > "$work/m${load}_$j"
  done
done
stop_busy

printf '| busy processes | prefill tok/s: %s | prefill: %s | decode tok/s: %s | decode: %s | CPU s/run: %s | CPU s/run: %s |\n' \
  "$(basename "${bins[0]}")" "$(basename "${bins[1]}")" "$(basename "${bins[0]}")" "$(basename "${bins[1]}")" \
  "$(basename "${bins[0]}")" "$(basename "${bins[1]}")"
echo "|---:|---:|---:|---:|---:|---:|---:|"
first=${loads%% *}
read -r p0a d0a _ < "$work/m${first}_0"; read -r p0b d0b _ < "$work/m${first}_1"
for load in $loads; do
  read -r pa da ca < "$work/m${load}_0"; read -r pb db cb < "$work/m${load}_1"
  awk -v l="$load" -v pa="$pa" -v pb="$pb" -v da="$da" -v db="$db" -v ca="$ca" -v cb="$cb" \
      -v p0a="$p0a" -v p0b="$p0b" -v d0a="$d0a" -v d0b="$d0b" 'BEGIN {
    printf "| %d | %.0f (%.0f%%) | %.0f (%.0f%%) | %.1f (%.0f%%) | %.1f (%.0f%%) | %.1f | %.1f |\n",
      l, pa, 100 * pa / p0a, pb, 100 * pb / p0b, da, 100 * da / d0a, db, 100 * db / d0b, ca, cb }'
done
echo "(percent: of the same binary's speed with $first busy processes beside it)"
