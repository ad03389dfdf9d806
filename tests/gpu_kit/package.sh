#!/usr/bin/env bash
# Packs a built kvlm and its test binary into a folder that runs on a GPU machine without
# this one's packages: usage: package.sh BUILD_DIR KIT_DIR (`make gpu-kit` calls it).
#
#   KIT_DIR/kvlm, kvlm_tests   the binaries (libstdc++ and cudart linked in, RPATH $ORIGIN/lib)
#   KIT_DIR/lib/               the shared libraries they need that are not part of the base
#                              system or of CUDA (libsentencepiece.so.0)
#   KIT_DIR/tests/data/, tests/results/snapkv_pooling_2k.json
#                              what the test binary reads (a fuzz seed is cut from that
#                              result), at the paths it expects
#   KIT_DIR/run.sh             the checks and benchmarks (see its header)
#   KIT_DIR/BUILD_INFO         commit, compilers, flags, the newest glibc symbol needed
#
# Fails when a binary links a C++ or CUDA runtime dynamically, needs a library it cannot
# find, or when the folder reaches 60 MiB (a device call carries 64 MiB, the repository's
# tracked files included; tests/test_gpu_kit.cpp checks the same limit).
set -euo pipefail
build=${1:?usage: package.sh BUILD_DIR KIT_DIR}
kit=${2:?usage: package.sh BUILD_DIR KIT_DIR}
limit_mib=60
repo=$(cd "$(dirname "$0")/../.." && pwd)
bins=(kvlm kvlm_tests)

fail() { echo "package.sh: $*" >&2; exit 1; }

for b in "${bins[@]}"; do [ -x "$build/$b" ] || fail "$build/$b is missing (build it first)"; done
# Provided on the GPU machine: the C library, the C++ runtime (only libsentencepiece uses
# it: the binaries have theirs linked in), and cuBLAS (hundreds of MiB, found there by
# run.sh). Anything else a binary needs travels in lib/.
system_lib='^(linux-vdso|ld-linux-x86-64|libc|libm|libdl|librt|libpthread|libstdc\+\+|libgcc_s|libcublas|libcublasLt)\.so'
for b in "${bins[@]}"; do
  readelf -d "$build/$b" | grep -q 'RUNPATH.*\$ORIGIN/lib' ||
    fail "$build/$b has no RUNPATH \$ORIGIN/lib (a release build has: see the Makefile)"
  runtimes=$(readelf -d "$build/$b" | grep -o 'NEEDED.*\(libstdc++\|libgcc_s\|libcudart\)[^]]*' || true)
  [ -z "$runtimes" ] || fail "$build/$b links a runtime dynamically ($runtimes); a release build does not"
done

rm -rf "$kit"
mkdir -p "$kit/lib" "$kit/tests"
for b in "${bins[@]}"; do
  cp "$build/$b" "$kit/$b"
  while read -r name _ path _; do
    [[ $name =~ $system_lib ]] && continue
    [ -f "$path" ] || fail "$b needs $name, which ldd cannot find here"
    cp -L "$path" "$kit/lib/$name"
  done < <(ldd "$build/$b" | grep '=>')
done
# The copied libraries' own dependencies must be system ones too.
for l in "$kit"/lib/*; do
  while read -r name _; do
    [[ $name =~ $system_lib ]] || [ -f "$kit/lib/$name" ] ||
      fail "$(basename "$l") needs $name, which is not in the kit"
  done < <(ldd "$l" | grep '=>')
done

mkdir -p "$kit/tests/results"
cp -r "$repo/tests/data" "$kit/tests/"
cp "$repo/tests/results/snapkv_pooling_2k.json" "$kit/tests/results/"
cp "$repo/tests/gpu_kit/run.sh" "$kit/run.sh"

newest_glibc=$(objdump -T "$kit"/kvlm "$kit"/kvlm_tests "$kit"/lib/* | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
{
  echo "commit    $(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- . 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "packaged  $(date -u '+%Y-%m-%d %H:%M UTC') on $(. /etc/os-release && echo "$PRETTY_NAME"), glibc $(ldd --version | head -1 | grep -o '[0-9.]*$')"
  echo "compiler  $(${CXX:-g++} --version | head -1)"
  [ -n "${NVCC:-}" ] && echo "nvcc      $("$NVCC" --version | grep -o 'release [0-9.]*')"
  echo "cxxflags  ${KVLM_CXXFLAGS:-?}"
  echo "ldflags   ${KVLM_LDFLAGS:-?}"
  echo "needs     $newest_glibc or newer (the newest glibc symbol version the binaries use)"
} >"$kit/BUILD_INFO"

size_mib=$(( $(du -sk "$kit" | cut -f1) / 1024 ))
echo "package.sh: $kit: ${size_mib} MiB (limit ${limit_mib}), lib/: $(ls "$kit/lib" | tr '\n' ' ')"
echo "package.sh: the binaries need $newest_glibc or newer"
[ "$size_mib" -lt "$limit_mib" ] || fail "$kit is ${size_mib} MiB, over the ${limit_mib} MiB limit"
