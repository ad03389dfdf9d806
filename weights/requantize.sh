#!/usr/bin/env bash
# Requantises the default model (SmolLM2-135M-Instruct, Q4_1) to F16, Q8_0, Q6_K, Q5_K_M and
# Q4_K_M with llama.cpp's llama-quantize (tests/bench/build_llamacpp.sh builds it), into
# weights/SmolLM2-135M-Instruct.<TYPE>.gguf. The Q4_1 weights are dequantised first, so these
# files hold the Q4_1 model's numbers in other formats, not the original model's: they
# exercise the weight types, they do not measure what each format would lose.
# SmolLM2's hidden size (576) is not a multiple of 256, so only ffn_down (1536 inputs) can
# be a k-quant; llama.cpp stores the matrices that read 576 values in a block-of-32 type:
#   Q6_K    ffn_down Q6_K; the rest Q8_0
#   Q5_K_M  ffn_down Q5_K (16 layers) or Q6_K (14); attn_v Q5_1 or Q8_0; the rest Q5_1
#   Q4_K_M  ffn_down Q4_K (16 layers) or Q6_K (14); attn_v Q5_0 or Q8_0; the rest Q5_0
# (the token embedding, which is also the output, is Q8_0 in all three).
# Idempotent: present files are kept.
set -euo pipefail

dir=$(cd "$(dirname "$0")" && pwd)
quantize="$dir/../build/llamacpp/cmake/bin/llama-quantize"
export LD_LIBRARY_PATH="$(dirname "$quantize")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
source="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -x "$quantize" ] || { echo "requantize: $quantize missing: run tests/bench/build_llamacpp.sh" >&2; exit 1; }
[ -f "$source" ] || { echo "requantize: $source missing: run weights/get-default.sh" >&2; exit 1; }

for type in F16 Q8_0 Q6_K Q5_K_M Q4_K_M; do
  dest="$dir/SmolLM2-135M-Instruct.$type.gguf"
  if [ -f "$dest" ]; then echo "requantize: $(basename "$dest") present"; continue; fi
  "$quantize" --allow-requantize "$source" "$dest.partial" "$type" "${JOBS:-2}" >/dev/null
  mv "$dest.partial" "$dest"
  echo "requantize: wrote $(basename "$dest")"
done
