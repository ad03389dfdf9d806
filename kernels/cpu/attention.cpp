// Causal attention over a ragged KV cache (each KV head has its own live length).
//
// One (token, query head) pair per task: scores against every visible key, a softmax,
// then the weighted sum of values. GQA: query head h reads KV head h / group directly.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm {

void CpuBackend::attention(float* out, const float* q, const std::vector<KVHeadView>& kv, int T,
                           int n_heads, int head_dim) {
  const int group = n_heads / int(kv.size());
  const float scale = 1.0f / std::sqrt(float(head_dim));
  int max_len = 0;
  for (const KVHeadView& h : kv) max_len = std::max(max_len, h.len);

#pragma omp parallel
  {
    std::vector<float> scores(max_len);
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int t = 0; t < T; t++)
      for (int h = 0; h < n_heads; h++) {
        const KVHeadView& cache = kv[h / group];
        const float* qh = q + (size_t(t) * n_heads + h) * head_dim;
        float* oh = out + (size_t(t) * n_heads + h) * head_dim;
        const int visible = cache.len - T + t + 1;  // the new tokens are the last T rows

        float max_score = -INFINITY;
        for (int j = 0; j < visible; j++) {
          const float* k = cache.keys + size_t(j) * head_dim;
          float s = 0;
#pragma omp simd reduction(+ : s)
          for (int d = 0; d < head_dim; d++) s += qh[d] * k[d];
          scores[j] = s * scale;
          max_score = std::max(max_score, scores[j]);
        }
        float sum = 0;
        for (int j = 0; j < visible; j++) sum += scores[j] = std::exp(scores[j] - max_score);

        std::fill(oh, oh + head_dim, 0.0f);
        for (int j = 0; j < visible; j++) {
          const float p = scores[j] / sum;
          const float* v = cache.values + size_t(j) * head_dim;
#pragma omp simd
          for (int d = 0; d < head_dim; d++) oh[d] += p * v[d];
        }
      }
  }
}

}  // namespace kvlm
