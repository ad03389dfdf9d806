// Observations for KV strategies: attention probabilities of chosen query rows, and key
// norms. They run only when a strategy asks, after the layer's attention.
//
// attention_scores needs each row's softmax normaliser before any probability can be
// added up, so it takes two passes that compute the same scores the same way: the first
// finds every row's log-sum-exp, the second turns scores into probabilities and sums
// them per key. Nothing of size rows x keys is stored. A warp per key (lanes across
// head_dim) keeps every key row read coalesced; scores are in log2 units. The kernels are
// templates over the keys' storage type K, widened to float32 as they are read.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/cuda_backend.cuh"

namespace kvlm {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kKeysPerBlock = 32;  // second pass: 8 keys per warp
// First pass: one block per row walks all its keys, so it gets many warps (a decode step
// asks for one row per head over the whole cache).
constexpr int kLseThreads = 1024;
constexpr int kLseWarps = kLseThreads / 32;

// The scaled score of one (query row, key): every lane holds the result.
template <class K>
__device__ inline float score(const float* qt, const K* key, int head_dim, float scale) {
  float dot = 0.0f;
  for (int d = threadIdx.x & 31; d < head_dim; d += 32) dot += qt[d] * to_float(key[d]);
  return warp_sum(dot) * scale;
}

// Block (row r, query head h): row_lse[h][r] = log2(sum_j exp2(score_j)) over the keys
// query row first_row + r sees.
template <class K>
__global__ void __launch_bounds__(kLseThreads)
    row_lse_kernel(float* row_lse, const float* q, const KVHeadView* kv, int T,
                               int first_row, int n_rows, int n_heads, int group, int head_dim,
                               float scale) {
  __shared__ float warp_max_[kLseWarps], warp_sum_[kLseWarps];
  const int r = blockIdx.x, h = blockIdx.y, t = first_row + r;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const KVHeadView cache = kv[h / group];
  const K* keys = static_cast<const K*>(cache.keys);
  const int visible = cache.len - T + t + 1;
  const float* qt = q + (size_t(t) * n_heads + h) * head_dim;
  // Online: a running max and a sum relative to it, per warp.
  float m = -INFINITY, sum = 0.0f;
  for (int j = warp; j < visible; j += kLseWarps) {
    const float s = score(qt, keys + size_t(j) * head_dim, head_dim, scale);
    if (s > m) {
      sum = sum * exp2f(m - s) + 1.0f;
      m = s;
    } else {
      sum += exp2f(s - m);
    }
  }
  if (lane == 0) warp_max_[warp] = m, warp_sum_[warp] = sum;
  __syncthreads();
  if (threadIdx.x == 0) {
    float all_max = -INFINITY, total = 0.0f;
    for (int w = 0; w < kLseWarps; w++) all_max = fmaxf(all_max, warp_max_[w]);
    for (int w = 0; w < kLseWarps; w++)
      if (warp_sum_[w] > 0) total += warp_sum_[w] * exp2f(warp_max_[w] - all_max);
    row_lse[size_t(h) * n_rows + r] = all_max + log2f(total);
  }
}

// Block (key block, query head h): out[h][j] = sum over rows that see key j of
// exp2(score - lse), divided by n_rows when `average`; 0 for keys no row sees.
template <class K>
__global__ void scores_kernel(float* out, int stride, const float* row_lse, const float* q,
                              const KVHeadView* kv, int T, int first_row, int n_rows,
                              int n_heads, int group, int head_dim, float scale, bool average) {
  const int h = blockIdx.y;
  const KVHeadView cache = kv[h / group];
  const K* keys = static_cast<const K*>(cache.keys);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int j_end = min(cache.len, int(blockIdx.x + 1) * kKeysPerBlock);
  for (int j = blockIdx.x * kKeysPerBlock + warp; j < j_end; j += kWarps) {
    const K* key = keys + size_t(j) * head_dim;
    // Row t sees key j when j <= len - T + t.
    const int first_seeing = max(0, j - cache.len + T - first_row);
    float total = 0.0f;
    for (int r = first_seeing; r < n_rows; r++) {
      const float* qt = q + (size_t(first_row + r) * n_heads + h) * head_dim;
      total += exp2f(score(qt, key, head_dim, scale) - row_lse[size_t(h) * n_rows + r]);
    }
    if (lane == 0) out[size_t(h) * stride + j] = average ? total / n_rows : total;
  }
}

template <class K>
__global__ void key_norms_kernel(float* out, const K* keys, int len, int head_dim) {
  const int j = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (j >= len) return;
  const K* k = keys + size_t(j) * head_dim;
  float s = 0.0f;
  for (int d = threadIdx.x & 31; d < head_dim; d += 32) s += to_float(k[d]) * to_float(k[d]);
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) out[j] = sqrtf(s);
}

// One warp per KV head: the norm of the head's last key.
template <class K>
__global__ void newest_key_norms_kernel(float* out, const KVHeadView* kv, int head_dim) {
  const KVHeadView& head = kv[blockIdx.x];
  const K* k = static_cast<const K*>(head.keys) + size_t(head.len - 1) * head_dim;
  float s = 0.0f;
  for (int d = threadIdx.x; d < head_dim; d += 32) s += to_float(k[d]) * to_float(k[d]);
  s = warp_sum(s);
  if (threadIdx.x == 0) out[blockIdx.x] = sqrtf(s);
}

}  // namespace

void CudaBackend::attention_scores(float* out, int stride, const float* q,
                                   const std::vector<KVHeadView>& kv, int T, int first_row,
                                   int n_rows, int n_heads, int head_dim, bool average) {
  check_kv_view("attention_scores", kv, n_heads, head_dim);
  check_score_rows("attention_scores", kv, stride, T, first_row, n_rows);
  int max_len = 0;
  for (const KVHeadView& h : kv) max_len = std::max(max_len, h.len);
  if (max_len == 0) return;
  if (n_rows == 0) {  // no row sees any slot: every slot scores 0, as on the CPU
    cuda_check(cudaMemsetAsync(out, 0, size_t(n_heads) * stride * sizeof(float), stream_),
               "attention_scores (no rows)");
    return;
  }
  const int group = n_heads / int(kv.size());
  const float scale = kLog2e / std::sqrt(float(head_dim));
  const KVHeadView* device_kv = stage(kv.data(), kv.size());
  float* lse = static_cast<float*>(
      scratch(row_lse_, size_t(n_heads) * n_rows * sizeof(float), "attention score normalisers"));
  with_storage_type(kv[0].dtype, [&](auto tag) {
    using K = typename decltype(tag)::type;
    row_lse_kernel<K><<<dim3(n_rows, n_heads), kLseThreads, 0, stream_>>>(
        lse, q, device_kv, T, first_row, n_rows, n_heads, group, head_dim, scale);
    launched("attention_scores (normalisers)");
    const dim3 grid((max_len + kKeysPerBlock - 1) / kKeysPerBlock, n_heads);
    scores_kernel<K><<<grid, kThreads, 0, stream_>>>(out, stride, lse, q, device_kv, T, first_row,
                                                     n_rows, n_heads, group, head_dim, scale,
                                                     average);
    launched("attention_scores");
  });
}

void CudaBackend::key_norms(float* out, const KVHeadView& head, int head_dim) {
  if (head.len == 0) return;
  with_storage_type(head.dtype, [&](auto tag) {
    using K = typename decltype(tag)::type;
    key_norms_kernel<K><<<(head.len + kWarps - 1) / kWarps, kThreads, 0, stream_>>>(
        out, static_cast<const K*>(head.keys), head.len, head_dim);
  });
  launched("key_norms");
}

void CudaBackend::newest_key_norms(float* out, const std::vector<KVHeadView>& kv, int head_dim) {
  check_kv_view("newest_key_norms", kv, int(kv.size()), head_dim);
  check_newest_rows("newest_key_norms", kv);
  const KVHeadView* device_kv = stage(kv.data(), kv.size());
  with_storage_type(kv[0].dtype, [&](auto tag) {
    using K = typename decltype(tag)::type;
    newest_key_norms_kernel<K><<<int(kv.size()), 32, 0, stream_>>>(out, device_kv, head_dim);
  });
  launched("newest_key_norms");
}

}  // namespace kvlm
