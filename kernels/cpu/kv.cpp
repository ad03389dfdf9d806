// Row movement: token embedding lookup, appending new keys/values into per-head cache
// storage, and compaction of a cache after eviction.
#include <cstring>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm {

void CpuBackend::embedding(float* out, const WeightMatrix& w, const int32_t* ids, int T) {
  const float* table = static_cast<const float*>(w.data);
  const int dim = w.cols;
  for (int t = 0; t < T; t++)
    std::memcpy(out + size_t(t) * dim, table + size_t(ids[t]) * dim, dim * sizeof(float));
}

void CpuBackend::copy_rows(float* dst, int dst_stride, const float* src, int src_stride, int rows,
                           int cols) {
  for (int r = 0; r < rows; r++)
    std::memcpy(dst + size_t(r) * dst_stride, src + size_t(r) * src_stride, cols * sizeof(float));
}

void CpuBackend::compact_rows(float* buf, const int32_t* keep, int n, int cols) {
  for (int r = 0; r < n; r++)
    if (keep[r] != r)  // memmove: a row may overlap its destination only when it stays put
      std::memmove(buf + size_t(r) * cols, buf + size_t(keep[r]) * cols, cols * sizeof(float));
}

}  // namespace kvlm
