// Key norms, an observation for KV strategies (KNorm) that runs only when a strategy asks.
// The other observation, attention probabilities of chosen query rows, is in
// attention.cpp next to the attention it reproduces.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/kv_rows.h"

namespace kvlm {

void CpuBackend::key_norms(float* out, const KVHeadView& head, int head_dim) {
  const size_t row_bytes = size_t(head_dim) * dtype_bytes(head.dtype);
  pool_.parallel_for(head.len, 1024, [&](int64_t begin, int64_t end) {
    std::vector<float> k(head_dim);
    for (int64_t j = begin; j < end; j++) {
      kv_rows::widen(head.dtype, static_cast<const char*>(head.keys) + j * row_bytes, k.data(),
                     head_dim);
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (int d = 0; d < head_dim; d++) s += k[d] * k[d];
      out[j] = std::sqrt(s);
    }
  });
}

void CpuBackend::newest_key_norms(float* out, const std::vector<KVHeadView>& kv, int head_dim) {
  check_kv_view("newest_key_norms", kv, int(kv.size()), head_dim);
  check_newest_rows("newest_key_norms", kv);
  for (size_t h = 0; h < kv.size(); h++) {
    const KVHeadView last{static_cast<const uint8_t*>(kv[h].keys) +
                              size_t(kv[h].len - 1) * head_dim * dtype_bytes(kv[h].dtype),
                          nullptr, 1, kv[h].dtype};
    key_norms(out + h, last, head_dim);
  }
}

}  // namespace kvlm
