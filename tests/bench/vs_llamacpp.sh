#!/usr/bin/env bash
# kvlm against llama.cpp on the CPU: the same GGUF file, the same thread count, runs
# alternating between the two (each pair starting with the other one), medians over PAIRS.
#
#   tests/bench/vs_llamacpp.sh FILE [PAIRS=5]
#
# Prefill: llama-bench -p 512,2048 -n 0 against `kvlm bench --prompt-len 512|2048`.
# Decode: llama-bench -p 0 -n 64 -d 16,512,2048 (64 tokens after a context of that depth)
# against `kvlm bench --prompt-len 16|512|2048 --gen 64` (whose prefill runs give the
# prefill rows too). Both keep their default KV cache (f16) and attention (llama-bench's
# flash attention on auto). THREADS (default 2) sets -t for both; KVLM (default
# build/release/kvlm) the kvlm binary; DEPTHS (default "16 512 2048") the decode depths,
# all but the first also the prefill lengths (a model trained on 2048 tokens takes
# "16 512 1024"). tests/bench/build_llamacpp.sh builds llama-bench.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 FILE [PAIRS=5]" >&2
  exit 2
fi
model=$1
pairs=${2:-5}
threads=${THREADS:-2}
read -r -a depths <<<"${DEPTHS:-16 512 2048}"
prefill_lengths=$(IFS=,; echo "${depths[*]:1}")
decode_depths=$(IFS=,; echo "${depths[*]}")
root=$(cd "$(dirname "$0")/../.." && pwd)
kvlm=${KVLM:-$root/build/release/kvlm}
llama_bench=$root/build/llamacpp/cmake/bin/llama-bench
[ -f "$model" ] || { echo "$0: no model at $model" >&2; exit 2; }
[ -x "$kvlm" ] || { echo "$0: $kvlm is not an executable (make kvlm)" >&2; exit 2; }
[ -x "$llama_bench" ] || { echo "$0: $llama_bench missing: run tests/bench/build_llamacpp.sh" >&2; exit 2; }

# Its shared libraries lie beside it (a build made before RPATH_USE_ORIGIN names an
# absolute directory that may have moved).
export LD_LIBRARY_PATH="$(dirname "$llama_bench")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=$work/results.txt  # lines: "tool test tokens_per_s"

run_llamacpp() {
  "$llama_bench" -m "$model" -t "$threads" -r 1 -o json -p "$prefill_lengths" -n 0 >"$work/lp.json" 2>/dev/null
  "$llama_bench" -m "$model" -t "$threads" -r 1 -o json -p 0 -n 64 -d "$decode_depths" >"$work/lg.json" 2>/dev/null
  python3 - "$work/lp.json" "$work/lg.json" >>"$results" <<'PY'
import json, sys
for path in sys.argv[1:]:
    for r in json.load(open(path)):
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']} @ d{r['n_depth']}"
        print("llama.cpp", test.replace(" ", "_"), r["avg_ts"])
PY
}

run_kvlm() {
  for depth in "${depths[@]}"; do
    "$kvlm" bench -q -m "$model" --device cpu -t "$threads" --prompt-len "$depth" --gen 64 \
      --json "$work/k.json" >/dev/null 2>&1
    python3 - "$work/k.json" "$depth" "$work/huge_pages" "${depths[0]}" >>"$results" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
r, depth = doc["results"][0], sys.argv[2]
open(sys.argv[3], "w").write(f"{doc['huge_page_bytes'] / 2**20:.0f} MiB")
if depth != sys.argv[4]:
    print("kvlm", f"pp{depth}", r["prefill_tokens_per_s"])
print("kvlm", f"tg64_@_d{depth}", r["decode_tokens_per_s"])
PY
  done
}

# Both engines map the file from the page cache, through 2 MiB pages where the cache holds
# it in 2 MiB folios (a read made under kvlm's MADV_HUGEPAGE), else through 4 KiB ones (a
# file just written by llama-quantize, or read first by another program, keeps its small
# pages until it leaves the cache). So the file's clean pages are dropped (no privilege
# needed) and kvlm reads it first: every run of both engines sees the same pages.
python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$model"
"$kvlm" bench -q -m "$model" --device cpu -t "$threads" --prompt-len 1 --gen 1 >/dev/null 2>&1

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((i = 0; i < pairs; i++)); do
  echo "pair $((i + 1))/$pairs" >&2
  if ((i % 2 == 0)); then run_llamacpp; run_kvlm; else run_kvlm; run_llamacpp; fi
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "kvlm's last run held $(cat "$work/huge_pages") in 2 MiB pages" >&2

python3 - "$results" "$model" "$threads" "$pairs" "${depths[@]}" <<'PY'
import statistics, sys
from collections import defaultdict
path, model, threads, pairs, *depths = sys.argv[1:]
runs = defaultdict(list)
for line in open(path):
    tool, test, tps = line.split()
    runs[tool, test.replace("_", " ")].append(float(tps))
print(f"{model}, -t {threads}, medians of {pairs} alternating pairs (tokens/s; runs' range)\n")
print("| test | llama.cpp | kvlm | kvlm / llama.cpp |")
print("|---|---:|---:|---:|")
cell = lambda v: f"{statistics.median(v):.1f} ({min(v):.1f}-{max(v):.1f})"
for test in [f"pp{d}" for d in depths[1:]] + [f"tg64 @ d{d}" for d in depths]:
    ours, theirs = runs["kvlm", test], runs["llama.cpp", test]
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"| {test} | {cell(theirs)} | {cell(ours)} | {ratio:.2f} |")
PY
