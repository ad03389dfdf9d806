// CpuBackend: memory is ordinary host memory; the ops live in the files beside this one.
#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#include <stdexcept>
#include <string>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/strips.h"

namespace kvlm {

CpuBackend::CpuBackend(int n_threads, std::optional<WeightType> convert_to, bool bf16_prefill)
    : pool_(n_threads),
      convert_to_(convert_to),
      bf16_prefill_(bf16_prefill && strips::cpu_has_bf16_products()) {
  if (convert_to && is_quantized(*convert_to))
    throw std::invalid_argument(std::string("cpu: weights convert to f32, f16 or bf16, not ") +
                                weight_type_name(*convert_to));
}

std::string CpuBackend::name() const {
  return "cpu (" + std::to_string(threads()) + " threads" +
         (bf16_prefill_ ? ", prefill in bf16 pairs)" : ")");
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

float* CpuBackend::alloc(size_t n_floats) { return alloc(n_floats, false); }

// Huge pages only where asked: a 2 MiB page is resident whole once touched, so for the
// KV cache and activations, of which a short chat touches a little, they would cost memory;
// weights are read whole every step, and 4 KiB pages cost a TLB miss each (decode on an
// F16 file ~4% faster in 2 MiB pages on the development machine).
float* CpuBackend::alloc(size_t n_floats, bool huge_pages) {
  const size_t bytes = kHeader + (n_floats * sizeof(float) + 63) / 64 * 64;
  const bool mapped = bytes >= kMapThreshold;
  void* p = mapped ? mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                   : std::aligned_alloc(64, bytes);
  if (p == nullptr || p == MAP_FAILED)
    throw OutOfMemory("cpu: out of memory allocating " + std::to_string(bytes >> 20) + " MiB");
  if (mapped && huge_pages) madvise(p, bytes, MADV_HUGEPAGE);  // advice: a refusal is harmless
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

WeightType CpuBackend::weight_type_for(WeightType stored) const {
  return convert_to_.value_or(stored);
}

// A part the backend needs no conversion for, in host memory that outlives the matrix and
// aligned for its type (a safetensors file may place a tensor at any byte), is used where
// it lies: a mapped file's weights are read straight from the page cache, so
// loading costs nothing and the pages are shared with every other process reading the
// file. Every other part is converted (or copied) into one allocation.
WeightMatrix CpuBackend::upload_weights(const std::vector<WeightRows>& parts, int cols,
                                        bool host_outlives) {
  auto kept_in_place = [&](const WeightRows& p) {
    return host_outlives && weight_type_for(p.type) == p.type &&
           reinterpret_cast<uintptr_t>(p.data) % weight_alignment(p.type) == 0;
  };
  // Each part starts on a cache line (a part's bytes need not be a multiple of 64).
  auto owned_bytes = [&](const WeightRows& p) {
    return (size_t(p.rows) * weight_row_bytes(weight_type_for(p.type), cols) + 63) / 64 * 64;
  };
  size_t owned = 0;
  for (const WeightRows& p : parts)
    if (!kept_in_place(p)) owned += owned_bytes(p);
  WeightMatrix m;
  m.cols = cols;
  m.storage = owned ? alloc((owned + sizeof(float) - 1) / sizeof(float), true) : nullptr;
  auto* next = static_cast<uint8_t*>(m.storage);
  for (const WeightRows& p : parts) {
    m.rows += p.rows;
    if (kept_in_place(p)) {
      m.parts.push_back(p);
      continue;
    }
    const WeightType type = weight_type_for(p.type);
    const size_t src_row = weight_row_bytes(p.type, cols), dst_row = weight_row_bytes(type, cols);
    uint8_t* dst = next;
    next += owned_bytes(p);
    m.parts.push_back({dst, type, p.rows});
    const auto* src = static_cast<const uint8_t*>(p.data);
    if (type == p.type) {
      if (p.rows) std::memcpy(dst, src, size_t(p.rows) * src_row);
      continue;
    }
    pool_.parallel_for(p.rows, 16, [&](int64_t begin, int64_t end) {
      std::vector<float> row(cols);
      for (int64_t r = begin; r < end; r++) {
        quant::dequantize_row(p.type, src + r * src_row, row.data(), cols);
        simd::with_storage_type(float_dtype(type), [&](auto tag) {
          using W = decltype(tag);
          W* out = reinterpret_cast<W*>(dst + r * dst_row);
          for (int i = 0; i < cols; i++) out[i] = simd::from_float<W>(row[i]);
        });
      }
    });
  }
  return m;
}

void CpuBackend::release_matrix(const WeightMatrix& w) { release(static_cast<float*>(w.storage)); }

}  // namespace kvlm
