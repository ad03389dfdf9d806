#!/usr/bin/env bash
# Shared prefill against one prefill per method, side by side: the README's 4K passkey grid
# (10 methods x 6 budgets, raw prompts) run both ways on the same prompts, alternating, one
# trial a pair with its own seed. Prints each pair's wall times and ratio, their median, and
# checks that both ways give the same accuracy table and the same answers, kept bytes and
# prompt lengths in --json (exits 1 when they differ).
#
#   tests/bench/share_prefill_ratio.sh [PAIRS] [OUTDIR]     (default 3 pairs, /tmp/kvlm-share)
#
# About 8 minutes a pair on 2 CPU cores (the unshared run is ~96% of it). CTX, BUDGETS and
# METHODS change the grid (e.g. CTX=1k for a quick look); KVLM (default ./kvlm) and
# KVLM_FLAGS (e.g. "-t 2") are passed through.
set -euo pipefail

kvlm=${KVLM:-./kvlm}
pairs=${1:-3}
out=${2:-/tmp/kvlm-share}
mkdir -p "$out"
grid=(sweep --trials 1 --no-chat --ctx "${CTX:-4k}" --budgets "${BUDGETS:-32,64,128,256,512,1024}"
      --kv-list "${METHODS:-full,streaming,h2o,snapkv,pyramidkv,adakv,dynamickv,simlayerkv,knorm,minicache}")

# The accuracy table: stdout up to its first blank line (the next table holds speeds).
accuracy_table() { sed '/^$/q' "$1"; }

# The fields of every answer that must not depend on how the prompt was prefilled.
answers() {
  python3 - "$1" <<'EOF'
import json, sys
for a in json.load(open(sys.argv[1]))["trials_detail"]:
    print(a["spec"], a["prompt"], a["prompt_tokens"], a["kv_bytes_held"], repr(a["answer"]), a["strict"])
EOF
}

ratios=()
same=1
for ((pair = 1; pair <= pairs; pair++)); do
  seed=$pair
  for way in shared unshared; do
    flags=()
    [ "$way" = unshared ] && flags=(--no-share-prefill)
    start=$(date +%s.%N)
    "$kvlm" "${grid[@]}" --seed "$seed" "${flags[@]}" ${KVLM_FLAGS:-} \
      --json "$out/$way.$seed.json" > "$out/$way.$seed.txt" 2> "$out/$way.$seed.err" ||
      { tail -3 "$out/$way.$seed.err" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$end - $start" | bc > "$out/$way.$seed.seconds"
  done
  shared_s=$(cat "$out/shared.$seed.seconds")
  unshared_s=$(cat "$out/unshared.$seed.seconds")
  ratio=$(echo "scale=2; $unshared_s / $shared_s" | bc)
  ratios+=("$ratio")
  verdict="same table and answers"
  if ! cmp -s <(accuracy_table "$out/shared.$seed.txt") <(accuracy_table "$out/unshared.$seed.txt") ||
     ! cmp -s <(answers "$out/shared.$seed.json") <(answers "$out/unshared.$seed.json"); then
    verdict="DIFFERENT results (see $out/*.$seed.*)"
    same=0
  fi
  printf 'pair %d (seed %d): shared %.1f s, unshared %.1f s, %sx; %s\n' \
    "$pair" "$seed" "$shared_s" "$unshared_s" "$ratio" "$verdict"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ r[NR] = $1 } END {
  print (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2 }')
echo "median ratio over $pairs pairs: ${median}x"
[ "$same" = 1 ]
