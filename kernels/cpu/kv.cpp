// Row movement: KV rows widened from and rounded to the cache's dtype (kv_rows.h), token
// embedding lookup, appending new keys/values into per-head cache storage, and compaction
// of a cache after eviction.
#include <cstring>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/kv_rows.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/simd.h"

namespace kvlm {

namespace kv_rows {

namespace {

__attribute__((target("avx2,f16c"))) void narrow_f16c(const float* src, _Float16* dst, int n) {
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) dst[i] = _Float16(src[i]);
}

bool has_f16c() {
  static const bool f16c = __builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx2");
  return f16c;
}

}  // namespace

// quant::dequantize_row has the F16C (and bfloat16) paths for widening.
void widen(DType dtype, const void* src, float* dst, int n) {
  const WeightType type = dtype == DType::F16    ? WeightType::F16
                          : dtype == DType::BF16 ? WeightType::BF16
                                                 : WeightType::F32;
  quant::dequantize_row(type, src, dst, n);
}

void narrow(DType dtype, const float* src, void* dst, int n) {
  if (dtype == DType::F16 && has_f16c()) return narrow_f16c(src, static_cast<_Float16*>(dst), n);
  simd::with_storage_type(dtype, [&](auto type) {
    using K = decltype(type);
    for (int i = 0; i < n; i++) static_cast<K*>(dst)[i] = simd::from_float<K>(src[i]);
  });
}

}  // namespace kv_rows

// The table's rows stay in their storage type; a token's row is rebuilt as float32.
void CpuBackend::embedding(float* out, const WeightMatrix& w, const int32_t* ids, int T) {
  for (int t = 0; t < T; t++) {
    int row = ids[t];
    for (const WeightRows& part : w.parts) {
      if (row < part.rows) {
        const auto* data = static_cast<const uint8_t*>(part.data);
        quant::dequantize_row(part.type, data + size_t(row) * weight_row_bytes(part.type, w.cols),
                              out + size_t(t) * w.cols, w.cols);
        break;
      }
      row -= part.rows;
    }
  }
}

void CpuBackend::append_kv(const std::vector<KVAppendTarget>& dst, DType dtype, const float* keys,
                           const float* values, int row_stride, int head_dim, int T) {
  const size_t row_bytes = size_t(head_dim) * dtype_bytes(dtype);
  for (size_t h = 0; h < dst.size(); h++)
    for (int t = 0; t < T; t++) {
      const size_t src = size_t(t) * row_stride + h * head_dim;
      kv_rows::narrow(dtype, keys + src, static_cast<char*>(dst[h].keys) + t * row_bytes, head_dim);
      kv_rows::narrow(dtype, values + src, static_cast<char*>(dst[h].values) + t * row_bytes,
                      head_dim);
    }
}

void CpuBackend::copy_rows(void* dst, size_t dst_stride, const void* src, size_t src_stride,
                           int rows, size_t row_bytes) {
  for (int r = 0; r < rows; r++)
    std::memcpy(static_cast<char*>(dst) + r * dst_stride,
                static_cast<const char*>(src) + r * src_stride, row_bytes);
}

void CpuBackend::compact_rows(void* buf, const int32_t* keep, int n, size_t row_bytes) {
  char* rows = static_cast<char*>(buf);
  for (int r = 0; r < n; r++)
    if (keep[r] != r)  // memmove: a row may overlap its destination only when it stays put
      std::memmove(rows + r * row_bytes, rows + keep[r] * row_bytes, row_bytes);
}

}  // namespace kvlm
