#!/usr/bin/env bash
# Builds llama.cpp (CPU only) as the independent reference and speed peer:
# llama-bench, llama-quantize and tests/golden/llamacpp_logits.cpp, into build/llamacpp/.
# The sources come from the llama-cpp-python sdist on PyPI, which vendors a pinned llama.cpp.
# Idempotent: each step is skipped when its output exists. JOBS=N sets the build parallelism.
set -euo pipefail

VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
JOBS=${JOBS:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$ROOT/build/llamacpp
SRC=$OUT/llama-cpp-python-$VERSION/vendor/llama.cpp
CMAKE_BUILD=$OUT/cmake
mkdir -p "$OUT"

if [ ! -f "$SRC/CMakeLists.txt" ]; then
    pip download --no-deps --no-binary :all: --dest "$OUT" "llama-cpp-python==$VERSION"
    tar -xzf "$OUT/llama_cpp_python-$VERSION.tar.gz" -C "$OUT"
    mv "$OUT/llama_cpp_python-$VERSION" "$OUT/llama-cpp-python-$VERSION"
fi

if [ ! -x "$CMAKE_BUILD/bin/llama-bench" ] || [ ! -x "$CMAKE_BUILD/bin/llama-quantize" ]; then
    cmake -S "$SRC" -B "$CMAKE_BUILD" -G Ninja \
        -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
        -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
        -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DBUILD_SHARED_LIBS=ON \
        -DCMAKE_BUILD_RPATH_USE_ORIGIN=ON  # the tools find their libraries if build/ moves
    cmake --build "$CMAKE_BUILD" -j "$JOBS" --target llama-bench llama-quantize
fi

LOGITS=$OUT/llamacpp_logits
LOGITS_SRC=$ROOT/tests/golden/llamacpp_logits.cpp
if [ ! -x "$LOGITS" ] || [ "$LOGITS_SRC" -nt "$LOGITS" ]; then
    g++ -std=c++17 -O2 -o "$LOGITS" "$LOGITS_SRC" \
        -I"$SRC/include" -I"$SRC/ggml/include" \
        -L"$CMAKE_BUILD/bin" -lllama -lggml -lggml-base \
        -Wl,-rpath,"$CMAKE_BUILD/bin"
fi

echo "llama.cpp tools in $CMAKE_BUILD/bin, logits dumper at $LOGITS"
