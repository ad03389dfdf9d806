// CpuBackend: memory is ordinary host memory; the ops live in the files beside this one.
#include <sys/mman.h>

#include <cstdlib>
#include <cstring>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm {

CpuBackend::CpuBackend(int n_threads) : pool_(n_threads) {}

std::string CpuBackend::name() const {
  return "cpu (" + std::to_string(threads()) + " threads)";
}

namespace {
// Buffers from 64 KiB up are mapped straight from the kernel and unmapped on release, so
// a compressed KV cache really returns its memory: malloc would keep freed blocks in its
// heap (and raises its mmap threshold after each large free), and resident memory would
// not drop. A 64-byte header in front of every buffer records how it was obtained and
// keeps the data aligned to a cache line (and an AVX-512 register).
constexpr size_t kHeader = 64;
constexpr size_t kMapThreshold = size_t(64) << 10;
struct Header {
  size_t bytes;  // total, header included
  bool mapped;
};
}  // namespace

float* CpuBackend::alloc(size_t n_floats) {
  const size_t bytes = kHeader + (n_floats * sizeof(float) + 63) / 64 * 64;
  const bool mapped = bytes >= kMapThreshold;
  void* p = mapped ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                   : std::aligned_alloc(64, bytes);
  if (p == nullptr || p == MAP_FAILED)
    throw OutOfMemory("cpu: out of memory allocating " + std::to_string(bytes >> 20) + " MiB");
  *static_cast<Header*>(p) = {bytes, mapped};
  return reinterpret_cast<float*>(static_cast<char*>(p) + kHeader);
}

void CpuBackend::release(float* p) {
  if (!p) return;
  void* base = reinterpret_cast<char*>(p) - kHeader;
  const Header h = *static_cast<Header*>(base);
  if (h.mapped) munmap(base, h.bytes);
  else std::free(base);
}

// An empty vector's data() may be null, which memcpy may not be given even for 0 bytes.
void CpuBackend::upload(float* dst, const float* host_src, size_t n) {
  if (n) std::memcpy(dst, host_src, n * sizeof(float));
}

void CpuBackend::download(float* host_dst, const float* src, size_t n) {
  if (n) std::memcpy(host_dst, src, n * sizeof(float));
}

WeightMatrix CpuBackend::upload_matrix(const float* host, int rows, int cols) {
  float* p = alloc(size_t(rows) * cols);
  upload(p, host, size_t(rows) * cols);
  return {p, DType::F32, rows, cols};
}

void CpuBackend::release_matrix(const WeightMatrix& w) {
  release(const_cast<float*>(static_cast<const float*>(w.data)));
}

}  // namespace kvlm
