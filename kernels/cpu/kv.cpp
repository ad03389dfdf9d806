// Row movement: token embedding lookup, appending new keys/values into per-head cache
// storage (rounded to the cache's dtype), and compaction of a cache after eviction.
#include <cstring>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/simd.h"

namespace kvlm {

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
  simd::with_storage_type(dtype, [&](auto type) {
    using K = decltype(type);
    for (size_t h = 0; h < dst.size(); h++)
      for (int t = 0; t < T; t++) {
        const size_t src = size_t(t) * row_stride + h * head_dim, row = size_t(t) * head_dim;
        K* k = static_cast<K*>(dst[h].keys) + row;
        K* v = static_cast<K*>(dst[h].values) + row;
        for (int c = 0; c < head_dim; c++) {
          k[c] = simd::from_float<K>(keys[src + c]);
          v[c] = simd::from_float<K>(values[src + c]);
        }
      }
  });
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
