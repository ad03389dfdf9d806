#!/usr/bin/env bash
# The GPU kit's checks, in one call: ./run.sh OUTDIR (from anywhere; `make gpu-kit` builds
# the kit, README's GPU section says how to carry it to a GPU machine).
#
#   1. the machine (nvidia-smi, or "no GPU") and the build (BUILD_INFO, kvlm --version)
#   2. every CUDA test case, with KVLM_REQUIRE_GPU=1 when a GPU is visible so that a CUDA
#      backend that cannot start fails instead of skipping; then the CPU cases (the ones
#      that need the default model skip: it does not travel)
#   3. kvlm bench on random-weight models of real shapes (no GPU: skipped, with a line)
#
# Each step runs under `timeout`; the whole run has a budget (KIT_BUDGET_S, default 450 s,
# under the 8 minutes a device call may take): a step whose limit would pass it is cut to
# fit, and one with less than half its limit left is recorded as skipped. Writes
# OUTDIR/log.txt (all that is printed), OUTDIR/results.json (each step's status and
# seconds, the test counts and failures, the benchmark numbers) and OUTDIR/tests-*.json
# (GoogleTest's reports); nothing else, so OUTDIR stays flat.
set -u
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
mkdir -p "$1" || exit 1
out=$(cd "$1" && pwd)
kit=$(cd "$(dirname "$0")" && pwd)
cd "$kit" || exit 1  # the tests read tests/data/... relative to the working directory
log=$out/log.txt
scratch=$(mktemp -d)  # the benchmarks' JSON files, and:
steps=$scratch/steps.tsv  # name, status, seconds, detail: results.json is made from it
trap 'rm -rf "$scratch"' EXIT
: >"$log"
: >"$steps"
deadline=$((SECONDS + ${KIT_BUDGET_S:-450}))

say() { echo "$*" | tee -a "$log"; }
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$steps"; }

# step NAME LIMIT_S COMMAND...: runs COMMAND under a time limit, output to screen and log.
step() {
  local name=$1 limit=$2 left=$((deadline - SECONDS))
  shift 2
  if ((left < limit / 2)); then
    say "== $name: skipped, the run's time budget is spent"
    record "$name" skipped 0 "time budget spent"
    return 1
  fi
  ((limit > left)) && limit=$left
  say "== $name (limit ${limit} s): $*"
  local start=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]} took=$((SECONDS - start)) status=ok
  if ((rc == 124 || rc == 137)); then status=timeout; elif ((rc != 0)); then status=failed; fi
  say "== $name: $status after ${took} s (exit $rc)"
  record "$name" "$status" "$took" "exit $rc"
  [ "$status" = ok ]
}

# --- 1. the machine and the build -------------------------------------------------------
gpu=0
say "== machine: $(hostname), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
if smi=$(nvidia-smi 2>&1) && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  gpu=1
  say "$smi"
else
  say "no GPU (nvidia-smi absent or failing): the CUDA cases skip, the benchmarks do not run"
fi
say "== build"
tee -a "$log" <"$kit/BUILD_INFO"

# cuBLAS is too large to travel: use the GPU machine's own, from the CUDA toolkit, the
# loader's cache, or the nvidia-* pip wheels of a Python environment (e.g. torch's).
# kvlm opens cuBLAS when it makes a CUDA backend; --version names the library.
cublas=$("$kit/kvlm" --version | sed -n 's/.*(\(libcublas[^ ]*\) opened when used).*/\1/p')
find_cublas() {
  local d py sp
  for d in /usr/local/cuda/lib64 /usr/local/cuda*/lib64 /usr/local/cuda*/targets/x86_64-linux/lib; do
    [ -e "$d/$cublas" ] && { echo "$d"; return; }
  done
  d=$(ldconfig -p 2>/dev/null | awk -v lib="$cublas" '$1 == lib { print $NF; exit }')
  [ -n "$d" ] && { dirname "$d"; return; }
  for py in python3 /opt/*/.venv/bin/python /opt/*/bin/python; do
    command -v "$py" >/dev/null || continue
    for sp in $("$py" -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null); do
      for d in "$sp"/nvidia/cu*/lib "$sp"/nvidia/cublas/lib; do
        [ -e "$d/$cublas" ] && { echo "$d"; return; }
      done
    done
  done
}
if [ -n "$cublas" ]; then
  cublas_dir=$(find_cublas)
  if [ -n "$cublas_dir" ]; then
    say "cuBLAS: $cublas from $cublas_dir"
    export LD_LIBRARY_PATH="$cublas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  else
    say "cuBLAS: $cublas not found in /usr/local/cuda*/lib64, ldconfig -p, or python's nvidia/*/lib"
  fi
fi
missing=$(ldd "$kit/kvlm" "$kit/kvlm_tests" | awk '/not found/ { print $1 }' | sort -u | xargs)
if [ -n "$missing" ]; then
  say "error: the kit's binaries cannot start, missing: $missing"
  record libraries failed 0 "missing: $missing"
else
  say "version: $("$kit/kvlm" --version)"
fi

# --- 2. the tests -------------------------------------------------------------------------
# The CUDA cases first (they are why the kit exists), then the rest. KVLM_MODEL names a
# file that is not there, so tests needing the default model skip wherever the kit lies.
cuda_filter='*cuda*:*Cuda*'
run_tests() {  # run_tests NAME LIMIT_S FILTER [KVLM_REQUIRE_GPU]
  step "$1" "$2" env KVLM_BIN="$kit/kvlm" KVLM_MODEL="$kit/no-default-model.gguf" \
    KVLM_REQUIRE_GPU="${4:-0}" "$kit/kvlm_tests" --gtest_filter="$3" \
    --gtest_output="json:$out/$1.json"
}
if [ -z "$missing" ]; then
  run_tests tests-cuda 120 "$cuda_filter" "$gpu"
  run_tests tests-cpu 150 "-$cuda_filter"
fi

# --- 3. the benchmarks --------------------------------------------------------------------
# bench MODEL DTYPE PROMPT GEN LIMIT_S METHOD: one kvlm bench process. Each generates its
# random weights on the host and uploads them (~10 s for 8B parameters), but a step that
# runs out of time loses only its own numbers: bench writes its JSON at the end.
bench() {
  local name="bench-${1}-${2}-${3}-${6%%:*}"
  step "$name" "$5" "$kit/kvlm" bench --device cuda --dtype "$2" --model "random:$1" \
    -c $(($3 + $4 + 1)) --prompt-len "$3" --gen "$4" --kv-list "$6" --json "$scratch/$name.json"
}
if ((gpu == 0)) || [ -n "$missing" ]; then
  why=$( ((gpu == 0)) && echo "no GPU" || echo "the binaries cannot start")
  say "== benchmarks: skipped ($why)"
  record benchmarks skipped 0 "$why"
else
  # Decode at 1K, 8K and 32K of context, prefill of an 8K prompt (the 8K step), and the
  # three methods at 32K: every step in f16 on both shapes first.
  long_methods="full snapkv:budget=512 adakv:budget=512"
  for model in llama3-8b llama2-7b; do
    bench "$model" f16 1024 128 45 full
    bench "$model" f16 8192 64 60 full
    for method in $long_methods; do bench "$model" f16 32768 32 90 "$method"; done
  done
  # bf16 reads as many bytes per weight as f16, so decode should match; what is its own is
  # the GEMV's bf16 loads and cuBLAS's bf16 GEMM: 8K and 32K first, the rest as time allows
  # (the estimate in README leaves out the last two steps).
  for model in llama3-8b llama2-7b; do
    bench "$model" bf16 8192 64 60 full
    bench "$model" bf16 32768 32 90 full
  done
  for model in llama3-8b llama2-7b; do
    bench "$model" bf16 1024 128 45 full
    for method in ${long_methods#full }; do bench "$model" bf16 32768 32 90 "$method"; done
  done
fi

# --- results.json -------------------------------------------------------------------------
python3 - "$out" "$steps" "$scratch" "$gpu" "$kit/BUILD_INFO" <<'EOF' || say "error: results.json not written"
import json, os, sys
out, steps_file, scratch, gpu, build_info = sys.argv[1:]
steps, tests, benches = [], {}, []
for line in open(steps_file):
    name, status, seconds, detail = line.rstrip("\n").split("\t")
    steps.append({"step": name, "status": status, "seconds": int(seconds), "detail": detail})
    report = os.path.join(out, name + ".json")
    if name.startswith("tests-") and not os.path.exists(report):
        tests[name] = {"error": f"no report: the test binary {status} ({detail})"}
    elif name.startswith("tests-"):
        counts = {"passed": 0, "failed": 0, "skipped": 0}
        failures = []
        for suite in json.load(open(report)).get("testsuites", []):
            for case in suite.get("testsuite", []):
                full = suite["name"] + "." + case["name"]
                if case.get("failures"):
                    counts["failed"] += 1
                    failures.append({"test": full, "messages": [f["failure"] for f in case["failures"]]})
                elif case.get("result") == "SKIPPED":
                    counts["skipped"] += 1
                else:
                    counts["passed"] += 1
        tests[name] = dict(counts, failures=failures)
    bench_json = os.path.join(scratch, name + ".json")
    if name.startswith("bench-"):
        benches.append({"step": name, "status": status, "seconds": int(seconds),
                        "results": json.load(open(bench_json)) if os.path.exists(bench_json) else None})
build = dict(l.split(None, 1) for l in open(build_info).read().splitlines() if " " in l)
json.dump({"gpu": gpu == "1", "build": build, "steps": steps, "tests": tests, "bench": benches},
          open(os.path.join(out, "results.json"), "w"), indent=2)
EOF
failed=$(awk -F'\t' '$2 == "failed" || $2 == "timeout" { print $1 }' "$steps" | xargs)
say "== done in ${SECONDS} s; $( [ -n "$failed" ] && echo "failed or timed out: $failed" || echo 'no step failed'); $out/results.json"
[ -z "$failed" ]
