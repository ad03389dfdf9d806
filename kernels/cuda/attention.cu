// Causal attention over a ragged KV cache (each KV head has its own live length).
//
// Prefill (T > 1), FlashAttention-style: a block takes 64 query rows of one query head and
// walks its KV head's keys in tiles of 64 staged through shared memory. Scores, the online
// softmax (running max and sum per row, partial output rescaled when the max grows) and
// the P.V product stay on chip, so the T x len score matrix never exists. GQA is an index:
// query head h reads KV head h / group, nothing is copied. 256 threads as a 16 x 16 grid:
// thread (ty, tx) owns rows ty + 16i and keys tx + 16j (i, j < 4) of a tile, then output
// columns tx + 16c of the same rows; the 16 threads of a row are 16 lanes of one warp, so
// row maxima and sums are warp shuffles.
//
// Decode (T = 1), flash-decoding style: one query row per head cannot fill a GPU, so the
// keys of every KV head are cut into chunks sized so that all heads together make a few
// blocks per multiprocessor. A block scores its chunk for up to 8 query heads of the GQA
// group (each key and value row read once for all of them), normalises within the chunk and
// writes an unnormalised partial output with its max and sum; a second kernel merges the
// chunks of each head. Ragged lengths need no padding: chunks past a head's end exit.
//
// Scores are kept in log2 units (q pre-scaled by log2(e) / sqrt(head_dim)) so that every
// exponential is an exp2f. Both kernels are templates over the KV rows' storage type K,
// widened to float32 as they are read (staged tiles and registers hold float32). A query
// row that sees no keys ends with a zero sum and writes 0.
#include <algorithm>
#include <cmath>

#include "kernels/cuda/cuda_backend.cuh"

namespace kvlm {

namespace {

// ---- prefill -----------------------------------------------------------------------------

constexpr int kRows = 64;     // query rows per block
constexpr int kKeys = 64;     // keys per tile
constexpr int kPrefillThreads = 256;
constexpr int kMaxHeadDim = 256;

size_t prefill_shared_bytes(int head_dim) {
  const int padded = head_dim + 1;  // odd row stride: neighbouring rows fall in other banks
  return sizeof(float) *
         (size_t(kRows) * padded + size_t(kKeys) * padded + size_t(kKeys) * head_dim +
          size_t(kRows) * (kKeys + 1));
}

template <int kMaxDim, class K>  // head_dim <= kMaxDim
__global__ void __launch_bounds__(kPrefillThreads)
    prefill_attention_kernel(float* out, const float* q, const KVHeadView* kv, int T, int n_heads,
                             int group, int head_dim, float score_scale) {
  extern __shared__ float shared[];
  const int padded = head_dim + 1;
  float* sq = shared;                           // [kRows][padded] scaled queries
  float* sk = sq + kRows * padded;              // [kKeys][padded] keys of this tile
  float* sv = sk + kKeys * padded;              // [kKeys][head_dim] values of this tile
  float* sp = sv + kKeys * head_dim;            // [kRows][kKeys + 1] probabilities

  const int head = blockIdx.y;
  const int t0 = (gridDim.x - 1 - blockIdx.x) * kRows;  // later rows see more keys: go first
  const KVHeadView cache = kv[head / group];
  const K* keys = static_cast<const K*>(cache.keys);
  const K* values = static_cast<const K*>(cache.values);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  constexpr int kCols = kMaxDim / 16;

  for (int idx = threadIdx.x; idx < kRows * head_dim; idx += kPrefillThreads) {
    const int r = idx / head_dim, d = idx % head_dim, t = t0 + r;
    sq[r * padded + d] = t < T ? q[(size_t(t) * n_heads + head) * head_dim + d] * score_scale : 0.0f;
  }
  // Query t sees keys [0, len - T + t]; rows past T copy the last real row's limit so that
  // their (unwritten) arithmetic stays finite.
  int last_key[4];
#pragma unroll
  for (int i = 0; i < 4; i++) last_key[i] = cache.len - T + min(t0 + ty + 16 * i, T - 1);
  const int key_end = cache.len - T + min(t0 + kRows - 1, T - 1) + 1;

  float row_max[4], row_sum[4], acc[4][kCols];
#pragma unroll
  for (int i = 0; i < 4; i++) {
    row_max[i] = -INFINITY;
    row_sum[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < kCols; c++) acc[i][c] = 0.0f;
  }

  for (int k0 = 0; k0 < key_end; k0 += kKeys) {
    __syncthreads();  // the previous tile is no longer read (and sq is written, first time)
    for (int idx = threadIdx.x; idx < kKeys * head_dim; idx += kPrefillThreads) {
      const int j = idx / head_dim, d = idx % head_dim, key = k0 + j;
      const bool live = key < key_end;
      sk[j * padded + d] = live ? to_float(keys[size_t(key) * head_dim + d]) : 0.0f;
      sv[j * head_dim + d] = live ? to_float(values[size_t(key) * head_dim + d]) : 0.0f;
    }
    __syncthreads();

    float s[4][4] = {};
    for (int d = 0; d < head_dim; d++) {
      float qd[4], kd[4];
#pragma unroll
      for (int i = 0; i < 4; i++) qd[i] = sq[(ty + 16 * i) * padded + d];
#pragma unroll
      for (int j = 0; j < 4; j++) kd[j] = sk[(tx + 16 * j) * padded + d];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) s[i][j] += qd[i] * kd[j];
    }

#pragma unroll
    for (int i = 0; i < 4; i++) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        if (k0 + tx + 16 * j > last_key[i]) s[i][j] = -INFINITY;
        tile_max = fmaxf(tile_max, s[i][j]);
      }
      for (int offset = 1; offset < 16; offset <<= 1)
        tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
      const float new_max = fmaxf(row_max[i], tile_max);
      // Key 0 is visible to every row, so after the first tile new_max is finite; the
      // guard only keeps -inf - -inf out of a row that has seen nothing yet.
      const float base = new_max == -INFINITY ? 0.0f : new_max;
      const float rescale = exp2f(row_max[i] - base);
      float tile_sum = 0.0f;
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const float p = exp2f(s[i][j] - base);
        tile_sum += p;
        sp[(ty + 16 * i) * (kKeys + 1) + tx + 16 * j] = p;
      }
      for (int offset = 1; offset < 16; offset <<= 1)
        tile_sum += __shfl_xor_sync(0xffffffffu, tile_sum, offset);
      row_sum[i] = row_sum[i] * rescale + tile_sum;
      row_max[i] = new_max;
#pragma unroll
      for (int c = 0; c < kCols; c++) acc[i][c] *= rescale;
    }
    __syncthreads();

    const int n_keys = min(kKeys, key_end - k0);
    for (int j = 0; j < n_keys; j++) {
      float p[4];
#pragma unroll
      for (int i = 0; i < 4; i++) p[i] = sp[(ty + 16 * i) * (kKeys + 1) + j];
#pragma unroll
      for (int c = 0; c < kCols; c++) {
        const int col = tx + 16 * c;
        if (col < head_dim) {
          const float v = sv[j * head_dim + col];
#pragma unroll
          for (int i = 0; i < 4; i++) acc[i][c] += p[i] * v;
        }
      }
    }
  }

#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int t = t0 + ty + 16 * i;
    if (t >= T) continue;
    float* dst = out + (size_t(t) * n_heads + head) * head_dim;
#pragma unroll
    for (int c = 0; c < kCols; c++) {
      const int col = tx + 16 * c;
      if (col < head_dim) dst[col] = row_sum[i] > 0 ? acc[i][c] / row_sum[i] : 0.0f;
    }
  }
}

// ---- decode ------------------------------------------------------------------------------

constexpr int kDecodeThreads = 128;
constexpr int kDecodeWarps = kDecodeThreads / 32;
constexpr int kGroupChunk = 8;    // query heads of one GQA group handled by one block
constexpr int kMaxChunk = 1024;   // keys per block at most (their scores sit in shared memory)

// Block (split, kv head, group chunk): keys [split * chunk, +chunk) of the KV head for
// query heads g0 .. g0 + n_g - 1 of its group. Writes, per query head h and split s,
// partial_out[h][s][:] = sum_j exp2(score_j - m) v_j, partial_max[h][s] = m and
// partial_sum[h][s] = sum_j exp2(score_j - m).
template <int kMaxDim, class K>
__global__ void __launch_bounds__(kDecodeThreads)
    decode_attention_kernel(float* partial_out, float* partial_max, float* partial_sum,
                            const float* q, const KVHeadView* kv, int group, int head_dim,
                            float score_scale, int chunk, int max_splits) {
  __shared__ float sq[kGroupChunk][kMaxDim];
  __shared__ float sp[kGroupChunk][kMaxChunk];
  __shared__ float s_max[kGroupChunk], s_sum[kGroupChunk];
  constexpr int kPerLane = (kMaxDim + 31) / 32;
  constexpr int kColsPerThread = (kMaxDim + kDecodeThreads - 1) / kDecodeThreads;

  const int split = blockIdx.x, kv_head = blockIdx.y, g0 = blockIdx.z * kGroupChunk;
  const int n_g = min(kGroupChunk, group - g0);
  const KVHeadView cache = kv[kv_head];
  const K* keys = static_cast<const K*>(cache.keys);
  const K* values = static_cast<const K*>(cache.values);
  const int k0 = split * chunk, k1 = min(cache.len, k0 + chunk);
  if (k0 >= k1) return;  // past this head's end (the merge kernel knows)
  const int n = k1 - k0;
  const int first_head = kv_head * group + g0;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

  for (int idx = threadIdx.x; idx < n_g * head_dim; idx += kDecodeThreads) {
    const int g = idx / head_dim, d = idx % head_dim;
    sq[g][d] = q[size_t(first_head + g) * head_dim + d];
  }
  __syncthreads();

  // Scores: a warp per key, lanes across head_dim (coalesced), one key row for all heads.
  for (int j = warp; j < n; j += kDecodeWarps) {
    const K* key = keys + size_t(k0 + j) * head_dim;
    float k[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; i++) {
      const int d = lane + 32 * i;
      k[i] = d < head_dim ? to_float(key[d]) : 0.0f;
    }
#pragma unroll
    for (int g = 0; g < kGroupChunk; g++) {
      if (g >= n_g) break;
      float dot = 0.0f;
#pragma unroll
      for (int i = 0; i < kPerLane; i++) {
        const int d = lane + 32 * i;
        if (d < head_dim) dot += sq[g][d] * k[i];
      }
      dot = warp_sum(dot);
      if (lane == 0) sp[g][j] = dot * score_scale;
    }
  }
  __syncthreads();

  // Softmax within the chunk: a warp per query head.
  for (int g = warp; g < n_g; g += kDecodeWarps) {
    float m = -INFINITY;
    for (int j = lane; j < n; j += 32) m = fmaxf(m, sp[g][j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < n; j += 32) {
      const float p = exp2f(sp[g][j] - m);
      sp[g][j] = p;
      sum += p;
    }
    sum = warp_sum(sum);
    if (lane == 0) s_max[g] = m, s_sum[g] = sum;
  }
  __syncthreads();

  // P.V: threads across head_dim, each value row read once for every head.
  float acc[kGroupChunk][kColsPerThread] = {};
#pragma unroll 4
  for (int j = 0; j < n; j++) {
    const K* value = values + size_t(k0 + j) * head_dim;
#pragma unroll
    for (int c = 0; c < kColsPerThread; c++) {
      const int d = threadIdx.x + kDecodeThreads * c;
      if (d >= head_dim) continue;
      const float v = to_float(value[d]);
#pragma unroll
      for (int g = 0; g < kGroupChunk; g++)
        if (g < n_g) acc[g][c] += sp[g][j] * v;
    }
  }
#pragma unroll
  for (int g = 0; g < kGroupChunk; g++) {
    if (g >= n_g) break;
    const size_t slot = size_t(first_head + g) * max_splits + split;
#pragma unroll
    for (int c = 0; c < kColsPerThread; c++) {
      const int d = threadIdx.x + kDecodeThreads * c;
      if (d < head_dim) partial_out[slot * head_dim + d] = acc[g][c];
    }
    if (threadIdx.x == 0) partial_max[slot] = s_max[g], partial_sum[slot] = s_sum[g];
  }
}

// One block per query head: out = sum_s exp2(m_s - M) partial_s / sum_s exp2(m_s - M) l_s.
__global__ void merge_splits_kernel(float* out, const float* partial_out, const float* partial_max,
                                    const float* partial_sum, const KVHeadView* kv, int group,
                                    int head_dim, int chunk, int max_splits) {
  const int head = blockIdx.x;
  const int splits = (kv[head / group].len + chunk - 1) / chunk;
  const size_t first = size_t(head) * max_splits;
  float m = -INFINITY;
  for (int s = 0; s < splits; s++) m = fmaxf(m, partial_max[first + s]);
  float total = 0.0f;
  for (int s = 0; s < splits; s++) total += exp2f(partial_max[first + s] - m) * partial_sum[first + s];
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < splits; s++)
      o += exp2f(partial_max[first + s] - m) * partial_out[(first + s) * head_dim + d];
    // An empty head (no keys at all) has nothing to attend to: 0 rather than 0 / 0.
    out[size_t(head) * head_dim + d] = splits > 0 ? o / total : 0.0f;
  }
}

template <class F>
void with_max_dim(int head_dim, F&& f) {
  if (head_dim <= 64) f(std::integral_constant<int, 64>{});
  else if (head_dim <= 128) f(std::integral_constant<int, 128>{});
  else f(std::integral_constant<int, 256>{});
}

}  // namespace

void CudaBackend::attention(float* out, const float* q, const std::vector<KVHeadView>& kv, int T,
                            int n_heads, int head_dim) {
  check_kv_view("attention", kv, n_heads, head_dim);
  if (head_dim > kMaxHeadDim)
    throw std::runtime_error("cuda: attention: head dim " + std::to_string(head_dim) +
                             " is larger than the CUDA kernels support (" +
                             std::to_string(kMaxHeadDim) + ")");
  if (T == 0) return;
  int max_len = 0;
  long long total_len = 0;
  for (const KVHeadView& h : kv) max_len = std::max(max_len, h.len), total_len += h.len;
  const KVHeadView* device_kv = stage(kv.data(), kv.size());
  const DType dtype = kv[0].dtype;
  if (T == 1) decode_attention(out, q, device_kv, dtype, int(kv.size()), max_len, total_len, n_heads, head_dim);
  else prefill_attention(out, q, device_kv, dtype, int(kv.size()), T, n_heads, head_dim);
}

void CudaBackend::prefill_attention(float* out, const float* q, const KVHeadView* kv, DType dtype,
                                    int n_kv, int T, int n_heads, int head_dim) {
  const size_t shared_bytes = prefill_shared_bytes(head_dim);
  const dim3 grid((T + kRows - 1) / kRows, n_heads);
  const float score_scale = kLog2e / std::sqrt(float(head_dim));
  with_max_dim(head_dim, [&](auto max_dim) {
    with_storage_type(dtype, [&](auto tag) {
      auto kernel = prefill_attention_kernel<decltype(max_dim)::value, typename decltype(tag)::type>;
      cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      int(shared_bytes)),
                 "attention (shared memory limit)");
      kernel<<<grid, kPrefillThreads, shared_bytes, stream_>>>(out, q, kv, T, n_heads,
                                                               n_heads / n_kv, head_dim, score_scale);
    });
  });
  launched("attention (prefill)");
}

void CudaBackend::decode_attention(float* out, const float* q, const KVHeadView* kv, DType dtype,
                                   int n_kv, int max_len, long long total_len, int n_heads,
                                   int head_dim) {
  const int group = n_heads / n_kv;
  const int group_chunks = (group + kGroupChunk - 1) / kGroupChunk;
  // Aim at four blocks per multiprocessor over all heads together.
  const long long target_blocks = 4LL * multiprocessors_;
  long long chunk = (total_len * group_chunks + target_blocks - 1) / target_blocks;
  chunk = std::clamp<long long>((chunk + 31) / 32 * 32, kDecodeMinChunk, kMaxChunk);
  const int max_splits = int((max_len + chunk - 1) / chunk);
  const size_t slots = size_t(n_heads) * std::max(max_splits, 1);
  float* partial_out = static_cast<float*>(
      scratch(partials_, slots * (head_dim + 2) * sizeof(float), "decode attention partials"));
  float* partial_max = partial_out + slots * head_dim;
  float* partial_sum = partial_max + slots;
  const float score_scale = kLog2e / std::sqrt(float(head_dim));
  if (max_splits > 0) {
    const dim3 grid(max_splits, n_kv, group_chunks);
    with_max_dim(head_dim, [&](auto max_dim) {
      with_storage_type(dtype, [&](auto tag) {
        decode_attention_kernel<decltype(max_dim)::value, typename decltype(tag)::type>
            <<<grid, kDecodeThreads, 0, stream_>>>(partial_out, partial_max, partial_sum, q, kv,
                                                   group, head_dim, score_scale, int(chunk),
                                                   max_splits);
      });
    });
    launched("attention (decode)");
  }
  merge_splits_kernel<<<n_heads, 128, 0, stream_>>>(out, partial_out, partial_max, partial_sum, kv,
                                                    group, head_dim, int(chunk), std::max(max_splits, 1));
  launched("attention (decode merge)");
}

}  // namespace kvlm
