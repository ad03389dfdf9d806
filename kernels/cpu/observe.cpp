// Observations for KV strategies: attention probabilities of chosen query rows, and key
// norms. They run only when a strategy asks, after the layer's attention.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/simd.h"

namespace kvlm {

namespace {

// q . k over head_dim values, k widened from its storage type.
template <class K>
inline float dot(const float* q, const K* k, int head_dim) {
  float s = 0;
#pragma omp simd reduction(+ : s)
  for (int d = 0; d < head_dim; d++) s += q[d] * simd::to_float(k[d]);
  return s;
}

}  // namespace

void CpuBackend::attention_scores(float* out, int stride, const float* q,
                                  const std::vector<KVHeadView>& kv, int T, int first_row,
                                  int n_rows, int n_heads, int head_dim, bool average) {
  check_kv_view("attention_scores", kv, n_heads, head_dim);
  check_score_rows("attention_scores", kv, stride, T, first_row, n_rows);
  const int group = n_heads / int(kv.size());
  const float scale = 1.0f / std::sqrt(float(head_dim));
  // One query head per task: its output row is private, so rows add up without locks.
  std::vector<std::vector<float>> probs(threads(), std::vector<float>(stride));
  pool_.run(n_heads, [&](int h, int thread) {
    std::vector<float>& p = probs[thread];
    const KVHeadView& cache = kv[h / group];
    float* row = out + size_t(h) * stride;
    std::fill(row, row + cache.len, 0.0f);
    simd::with_storage_type(cache.dtype, [&](auto type) {
      const auto* keys = static_cast<const decltype(type)*>(cache.keys);
      for (int t = first_row; t < first_row + n_rows; t++) {
        const float* qt = q + (size_t(t) * n_heads + h) * head_dim;
        const int visible = cache.len - T + t + 1;
        float max_score = -INFINITY;
        for (int j = 0; j < visible; j++) {
          p[j] = dot(qt, keys + size_t(j) * head_dim, head_dim) * scale;
          max_score = std::max(max_score, p[j]);
        }
        double sum = 0;
        for (int j = 0; j < visible; j++) sum += p[j] = std::exp(p[j] - max_score);
        const float inv = float((average ? n_rows : 1) * sum);
        for (int j = 0; j < visible; j++) row[j] += p[j] / inv;
      }
    });
  });
}

void CpuBackend::key_norms(float* out, const KVHeadView& head, int head_dim) {
  simd::with_storage_type(head.dtype, [&](auto type) {
    const auto* keys = static_cast<const decltype(type)*>(head.keys);
    pool_.parallel_for(head.len, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; j++) {
        const auto* k = keys + size_t(j) * head_dim;
        float s = 0;
#pragma omp simd reduction(+ : s)
        for (int d = 0; d < head_dim; d++) s += simd::to_float(k[d]) * simd::to_float(k[d]);
        out[j] = std::sqrt(s);
      }
    });
  });
}

}  // namespace kvlm
