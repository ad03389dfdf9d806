#!/usr/bin/env bash
# The long-context results of the README, each a named run that writes
# tests/results/NAME.{txt,err,csv,json,svg}. A run that stops (Ctrl-C, a crash, the end of a
# working day) is taken up again by running the same name: the answers its JSON holds are
# not run again (--resume).
#
#   tests/bench/readme_sweeps.sh NAME...      e.g. passkey_2k passkey_2k_agnostic
#   tests/bench/readme_sweeps.sh --list
#
# Set SHARD=K/N to run one shard of a run on this machine (it writes NAME.shardK.json);
# put the shards together with `./kvlm merge tests/results/NAME.shard*.json --json ...`.
# Times on 2 CPU cores, the default model: passkey_2k_agnostic 36 min and passkey_4k 54 min
# (commit 9d7b7de), passkey_8k 1 h 44 min and passkey_8k_agnostic 1 h 29 min (e061826);
# needle_256 48 min, needle_128 about 3 h. KVLM (default ./kvlm) and KVLM_FLAGS (e.g.
# "-t 2") are passed through.
set -euo pipefail

kvlm=${KVLM:-./kvlm}
out=tests/results
trials="--trials 96"  # a cell's 95% interval is then about +-10 points at 50%
methods=full,streaming,h2o,snapkv,pyramidkv,adakv,dynamickv,simlayerkv,knorm,minicache
budgets=32,64,128,256,512,1024

declare -A runs=(
  [passkey_2k]="sweep $trials --ctx 2k --budgets $budgets --kv-list $methods"
  [passkey_2k_agnostic]="sweep $trials --ctx 2k --budgets $budgets --kv-list $methods --query-mode agnostic"
  [passkey_4k]="sweep $trials --ctx 4k --budgets $budgets --kv-list $methods"
  [passkey_4k_agnostic]="sweep $trials --ctx 4k --budgets $budgets --kv-list $methods --query-mode agnostic"
  [passkey_8k]="sweep $trials --ctx 8k --budgets $budgets --kv-list $methods"
  [passkey_8k_agnostic]="sweep $trials --ctx 8k --budgets $budgets --kv-list $methods --query-mode agnostic"
  # SnapKV's pooling: max (the paper's) or average (kvpress's), kernel 7 or 31.
  [snapkv_pooling_2k]="sweep $trials --ctx 2k --budgets 64,128,256,512,1024 --kv-list snapkv,snapkv:kernel=31,snapkv:pool=avg,snapkv:pool=avg,kernel=31"
  # Needle heatmaps, every method at one budget, 5 trials a cell.
  [needle_128]="needle --task single --ctx-list 1k,2k,4k,8k --depths 0:1:0.25 --trials 5 --kv-list full,streaming:budget=128,h2o:budget=128,snapkv:budget=128,pyramidkv:budget=128,adakv:budget=128,dynamickv:budget=128,knorm:budget=128,simlayerkv:recent=124,minicache"
  [needle_256]="needle --task single --ctx-list 1k,2k,4k,8k --depths 0:1:0.25 --trials 5 --kv-list full,streaming:budget=256,h2o:budget=256,snapkv:budget=256,pyramidkv:budget=256,adakv:budget=256,dynamickv:budget=256,knorm:budget=256,simlayerkv:recent=252,minicache"
)

if [ "${1:-}" = "--list" ] || [ $# -eq 0 ]; then
  for name in "${!runs[@]}"; do echo "$name: kvlm ${runs[$name]}"; done | sort
  [ $# -eq 0 ] && { echo "usage: $0 NAME... (or --list)" >&2; exit 2; }
  exit 0
fi

for name in "$@"; do
  [ -n "${runs[$name]:-}" ] || { echo "$0: no run called $name (see --list)" >&2; exit 2; }
  file=$out/$name
  shard_flags=""
  if [ -n "${SHARD:-}" ]; then
    file=$out/$name.shard${SHARD%/*}
    shard_flags="--shard $SHARD"
  fi
  resume=""
  if [ -f "$file.json" ]; then  # take it up again; the new file replaces it as it goes
    cp "$file.json" "$file.prev.json"
    resume="--resume $file.prev.json"
  fi
  # Raw prompts: with SmolLM2's chat template the model stops finding the key past ~1K.
  read -r -a args <<< "${runs[$name]}"
  start=$(date +%s)
  "$kvlm" "${args[@]}" --no-chat ${KVLM_FLAGS:-} $shard_flags $resume \
    --json "$file.json" --csv "$file.csv" --svg "$file.svg" > "$file.txt" 2> "$file.err"
  rm -f "$file.prev.json"
  echo "$name: $(( $(date +%s) - start )) s" | tee -a "$file.err"
done
