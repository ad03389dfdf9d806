// Observations for KV strategies: attention probabilities of chosen query rows, and key
// norms. They run only when a strategy asks, after the layer's attention.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm {

void CpuBackend::attention_scores(float* out, int stride, const float* q,
                                  const std::vector<KVHeadView>& kv, int T, int first_row,
                                  int n_rows, int n_heads, int head_dim, bool average) {
  const int group = n_heads / int(kv.size());
  const float scale = 1.0f / std::sqrt(float(head_dim));
  // One query head per task: its output row is private, so rows add up without locks.
  std::vector<std::vector<float>> probs(threads(), std::vector<float>(stride));
  pool_.run(n_heads, [&](int h, int thread) {
    std::vector<float>& p = probs[thread];
    const KVHeadView& cache = kv[h / group];
    float* row = out + size_t(h) * stride;
    std::fill(row, row + cache.len, 0.0f);
    for (int t = first_row; t < first_row + n_rows; t++) {
      const float* qt = q + (size_t(t) * n_heads + h) * head_dim;
      const int visible = cache.len - T + t + 1;
      float max_score = -INFINITY;
      for (int j = 0; j < visible; j++) {
        const float* k = cache.keys + size_t(j) * head_dim;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int d = 0; d < head_dim; d++) s += qt[d] * k[d];
        p[j] = s * scale;
        max_score = std::max(max_score, p[j]);
      }
      double sum = 0;
      for (int j = 0; j < visible; j++) sum += p[j] = std::exp(p[j] - max_score);
      const float inv = float((average ? n_rows : 1) * sum);
      for (int j = 0; j < visible; j++) row[j] += p[j] / inv;
    }
  });
}

void CpuBackend::key_norms(float* out, const float* keys, int len, int head_dim) {
  pool_.parallel_for(len, 1024, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; j++) {
      const float* k = keys + size_t(j) * head_dim;
      float s = 0;
#pragma omp simd reduction(+ : s)
      for (int d = 0; d < head_dim; d++) s += k[d] * k[d];
      out[j] = std::sqrt(s);
    }
  });
}

}  // namespace kvlm
