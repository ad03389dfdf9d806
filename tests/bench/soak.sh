#!/usr/bin/env bash
# Soak test of bounded memory: 100K generated tokens with StreamingLLM and positions
# inside the cache, on the default model. kvlm bench prints, every 10K tokens, the decode
# speed over the last 10K, the KV bytes held and allocated, the positions in use and the
# resident memory: all of them should stay flat. About 20 minutes on 2 CPU cores.
#
#   tests/bench/soak.sh [OUT=tests/results/soak_streaming_100k.txt] [GEN=100000]
set -euo pipefail
out=${1:-tests/results/soak_streaming_100k.txt}
gen=${2:-100000}
"${KVLM:-./kvlm}" bench --prompt-len 256 --gen "$gen" --report-every 10000 \
  --kv-list streaming:budget=256 ${KVLM_FLAGS:-} 2>&1 | grep -v ": warm-up" | tee "$out"
