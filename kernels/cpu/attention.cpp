// Causal attention over a ragged KV cache (each KV head has its own live length),
// FlashAttention-style on the CPU.
//
// Work is split into tasks of (KV head, block of up to 16 new tokens), and in decode also
// by chunks of each head's keys (below). A task handles all query heads of the GQA group at once, so every key and value row read from memory
// serves group x 16 queries, and no K/V is copied per query head. Keys are visited in
// blocks of 64 with an online softmax: each query row keeps a running max and sum, and
// its partial output is rescaled when a larger score appears, so the T x len score matrix
// is never stored. A key block is transposed once so that scores are computed with keys
// in the vector lanes (broadcast q[d] times a row of K^T), needing no horizontal sums.
// Rows stored in 16 bits are widened to float32 as they are read (simd::load), once per
// task: the block's keys on their way into K^T, each value row inside the P.V update.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/simd.h"

namespace kvlm {

namespace {

using simd::kLanes;
using simd::Vec;
constexpr int kQueryBlock = 16;
constexpr int kKeyBlock = 64;  // a multiple of kLanes

// out += a * x over n values.
template <class K>
inline void axpy(float* out, float a, const K* x, int n) {
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) simd::store(out + i, simd::load(out + i) + a * simd::load(x + i));
  for (; i < n; i++) out[i] += a * simd::to_float(x[i]);
}

// out = x, widened to float32.
template <class K>
inline void widen(float* out, const K* x, int n) {
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) simd::store(out + i, simd::load(x + i));
  for (; i < n; i++) out[i] = simd::to_float(x[i]);
}

// Per-thread state for one task: the query rows of a GQA group x token block.
struct QueryBlock {
  QueryBlock(int group, int head_dim)
      : q(size_t(group) * kQueryBlock * head_dim), visible(size_t(group) * kQueryBlock),
        acc(q.size()), max(visible.size()), sum(visible.size()),
        k_t(size_t(head_dim) * kKeyBlock), key(head_dim), p(kKeyBlock) {}
  int rows = 0;
  std::vector<float> q;       // [rows][head_dim], pre-scaled by 1/sqrt(head_dim)
  std::vector<int> visible;   // [rows] keys each row may see
  std::vector<float> acc;     // [rows][head_dim] unnormalised output
  std::vector<float> max, sum;
  std::vector<float> k_t, key, p;  // a key block transposed, one key widened, the scores
};

// The rows of b over keys [key_begin, key_end) (each row also stops at its visible end).
template <class K>
KVLM_SIMD_CLONES void attend_block(QueryBlock& b, const KVHeadView& cache, int head_dim,
                                   int key_begin, int key_end) {
  const K* keys = static_cast<const K*>(cache.keys);
  const K* values = static_cast<const K*>(cache.values);
  std::vector<float>& k_t = b.k_t;
  std::vector<float>& p = b.p;
  std::fill(b.acc.begin(), b.acc.begin() + size_t(b.rows) * head_dim, 0.0f);
  std::fill(b.max.begin(), b.max.begin() + b.rows, -INFINITY);
  std::fill(b.sum.begin(), b.sum.begin() + b.rows, 0.0f);
  const int n_keys =
      std::min(key_end, *std::max_element(b.visible.begin(), b.visible.begin() + b.rows));

  for (int j0 = key_begin; j0 < n_keys; j0 += kKeyBlock) {
    const int n_block = std::min(kKeyBlock, n_keys - j0);
    // K^T of this block: k_t[d][j], zero beyond the block's end.
    for (int j = 0; j < kKeyBlock; j++) {
      if (j < n_block) widen(b.key.data(), keys + size_t(j0 + j) * head_dim, head_dim);
      for (int d = 0; d < head_dim; d++) k_t[size_t(d) * kKeyBlock + j] = j < n_block ? b.key[d] : 0.0f;
    }

    for (int r = 0; r < b.rows; r++) {
      const int n = std::min(n_block, b.visible[r] - j0);  // keys this row sees here
      if (n <= 0) continue;
      const float* q = &b.q[size_t(r) * head_dim];
      Vec s[kKeyBlock / kLanes] = {};
      for (int d = 0; d < head_dim; d++)
        for (int v = 0; v < kKeyBlock / kLanes; v++)
          s[v] += q[d] * simd::load(&k_t[size_t(d) * kKeyBlock + v * kLanes]);
      for (int v = 0; v < kKeyBlock / kLanes; v++) simd::store(&p[v * kLanes], s[v]);

      const float block_max = *std::max_element(p.begin(), p.begin() + n);
      const float new_max = std::max(b.max[r], block_max);
      const float rescale = std::exp(b.max[r] - new_max);  // 0 on the first block
      for (int v = 0; v < kKeyBlock / kLanes; v++)
        simd::store(&p[v * kLanes], simd::exp(simd::load(&p[v * kLanes]) - new_max));
      float block_sum = 0;
      for (int j = 0; j < n; j++) block_sum += p[j];
      b.sum[r] = b.sum[r] * rescale + block_sum;
      b.max[r] = new_max;

      float* acc = &b.acc[size_t(r) * head_dim];
      for (int d = 0; d < head_dim; d++) acc[d] *= rescale;
      for (int j = 0; j < n; j++) axpy(acc, p[j], values + size_t(j0 + j) * head_dim, head_dim);
    }
  }
}

}  // namespace

// Decode has one block of new tokens, so its tasks would be just the KV heads (3 for
// SmolLM2, on however many threads). Each head's keys are then cut into chunks of at
// least kMinChunk keys, enough for every thread to get several; a chunk's rows keep their
// partial softmax (max, sum, unnormalised output), merged per row once all have run.
constexpr int kMinChunk = 256;  // a multiple of kKeyBlock

void CpuBackend::attention(float* out, const float* q, const std::vector<KVHeadView>& kv, int T,
                           int n_heads, int head_dim) {
  check_kv_view("attention", kv, n_heads, head_dim);
  const int n_kv = int(kv.size()), group = n_heads / n_kv;
  const int n_blocks = (T + kQueryBlock - 1) / kQueryBlock;
  const float scale = 1.0f / std::sqrt(float(head_dim));
  int longest = 0;
  for (const KVHeadView& h : kv) longest = std::max(longest, h.len);
  const int wanted = n_blocks == 1 ? (4 * threads() + n_kv - 1) / n_kv : 1;
  const int n_chunks = std::max(1, std::min(wanted, longest / kMinChunk));
  const int chunk = (longest + n_chunks - 1) / n_chunks / kKeyBlock * kKeyBlock + kKeyBlock;

  std::vector<QueryBlock> scratch(threads(), QueryBlock(group, head_dim));
  // Per (head, chunk) when chunked: every row's max, sum and unnormalised output.
  const int rows_per_task = group * std::min(T, kQueryBlock);
  std::vector<float> part_max, part_sum, part_acc;
  if (n_chunks > 1) {
    part_max.resize(size_t(n_kv) * n_chunks * rows_per_task);
    part_sum.resize(part_max.size());
    part_acc.resize(part_max.size() * head_dim);
  }

  // A task is one (token block, KV head, key chunk). Later token blocks see more keys;
  // handing them out first balances the threads.
  pool_.run(n_blocks * n_kv * n_chunks, [&](int task, int thread) {
    const int c = task % n_chunks, h = task / n_chunks % n_kv;
    const int blk = n_blocks - 1 - task / n_chunks / n_kv;
    QueryBlock& b = scratch[thread];
    const KVHeadView& cache = kv[h];
    const int t0 = blk * kQueryBlock, nt = std::min(kQueryBlock, T - t0);
    b.rows = group * nt;
    for (int g = 0; g < group; g++)
      for (int t = 0; t < nt; t++) {
        const int r = g * nt + t;
        const float* src = q + (size_t(t0 + t) * n_heads + h * group + g) * head_dim;
        for (int d = 0; d < head_dim; d++) b.q[size_t(r) * head_dim + d] = src[d] * scale;
        b.visible[r] = cache.len - T + t0 + t + 1;  // the new tokens are the last T rows
      }
    const int key_begin = n_chunks > 1 ? c * chunk : 0;
    const int key_end = n_chunks > 1 ? key_begin + chunk : cache.len;
    simd::with_storage_type(cache.dtype, [&](auto type) {
      attend_block<decltype(type)>(b, cache, head_dim, key_begin, key_end);
    });
    if (n_chunks > 1) {
      const size_t first = (size_t(h) * n_chunks + c) * rows_per_task;
      std::copy_n(b.max.begin(), b.rows, part_max.begin() + first);
      std::copy_n(b.sum.begin(), b.rows, part_sum.begin() + first);
      std::copy_n(b.acc.begin(), size_t(b.rows) * head_dim, part_acc.begin() + first * head_dim);
      return;
    }
    for (int g = 0; g < group; g++)
      for (int t = 0; t < nt; t++) {
        const int r = g * nt + t;
        float* dst = out + (size_t(t0 + t) * n_heads + h * group + g) * head_dim;
        // A row that saw no keys (an empty head) has sum 0 and acc 0: its output is 0.
        const float sum = b.sum[r];
        for (int d = 0; d < head_dim; d++) dst[d] = sum > 0 ? b.acc[size_t(r) * head_dim + d] / sum : 0.0f;
      }
  });
  if (n_chunks == 1) return;
  // Merge the chunks of each row: rescale every partial to the row's overall max. A chunk
  // a row saw nothing of has max -inf and sum 0, and adds nothing.
  for (int h = 0; h < n_kv; h++)
    for (int g = 0; g < group; g++)
      for (int t = 0; t < T; t++) {
        const int r = g * T + t;
        float row_max = -INFINITY;
        for (int c = 0; c < n_chunks; c++)
          row_max = std::max(row_max, part_max[(size_t(h) * n_chunks + c) * rows_per_task + r]);
        float* dst = out + (size_t(t) * n_heads + h * group + g) * head_dim;
        std::fill(dst, dst + head_dim, 0.0f);
        float sum = 0;
        for (int c = 0; c < n_chunks; c++) {
          const size_t i = (size_t(h) * n_chunks + c) * rows_per_task + r;
          if (part_sum[i] == 0) continue;
          const float w = std::exp(part_max[i] - row_max);
          sum += w * part_sum[i];
          for (int d = 0; d < head_dim; d++) dst[d] += w * part_acc[i * head_dim + d];
        }
        for (int d = 0; d < head_dim; d++) dst[d] = sum > 0 ? dst[d] / sum : 0.0f;
      }
}

}  // namespace kvlm
