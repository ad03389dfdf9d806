// Causal attention over a ragged KV cache (each KV head has its own live length),
// FlashAttention-style on the CPU.
//
// Work is split into tasks of (KV head, block of up to 32 new tokens), and in decode also
// by chunks of each head's keys (below). A task handles all query heads of the GQA group
// at once, so every key and value row read from memory serves group x 32 queries, and no
// K/V is copied per query head. Keys are visited in blocks of 64 with an online softmax:
// each query row keeps a running max and sum, and its partial output is rescaled when a
// larger score appears, so the T x len score matrix is never stored.
//
// With many query rows (prefill) a block is two small matrix products in register-blocked
// strips of 6 query rows (kernels/cpu/strips.h): scores = Q . K^T, the block's keys
// transposed once into panels, then acc += P . V, the value rows being panels as they lie.
// For those, a block's 16-bit keys and values are widened to float32 once per task (F16C's
// conversion where the CPU has it, through quant::dequantize_row): a 16-bit row converted
// inside the inner loops costs more than the multiply-adds (the compiler widens a _Float16
// vector one element at a time in the portable clones). Where the CPU has AVX512-BF16 and
// the cache is 16-bit, P . V goes in bf16 pairs as prefill's matmuls do (probabilities and
// values rounded to 2^-9 of themselves); Q . K^T stays float32, since a score's error is
// exponentiated.
// With few rows (decode: one per query head of the group) the transposition would cost
// more than the products. The scores are dot products of the group's rows with the keys,
// and the output adds up the value rows, both read from the cache where they lie
// (quant::dots_function, quant::weighted_sums_function: each 16-bit row widened once in
// registers for the whole group, in tiles that fill the 16 AVX2 registers, or AVX-512's 32
// where the CPU has it; the keys asked for 2 KiB ahead). Asking for the values ahead as
// well gained nothing, measured several ways; README.md ("Against llama.cpp") has these
// measurements, and tests/bench/decode_attention times this op alone.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/strips.h"

namespace kvlm {

namespace {

using simd::kLanes;
using simd::Vec;
constexpr int kQueryBlock = 32;
constexpr int kKeyBlock = 64;      // a multiple of kLanes
constexpr int kStripsFromRows = 8;  // fewer query rows: scores as dot products
using strips::kPanelColumns, strips::kStripRows;

constexpr int round_up(int n, int m) { return (n + m - 1) / m * m; }

// Per-thread state for one task: the query rows of a GQA group x token block. Row counts
// are rounded up to whole strips of 6: a strip reads all its rows and writes only the real
// ones. Each thread keeps one for good (query_block below): allocated and zeroed per call,
// the ~120 KiB of a SmolLM2 block per thread cost more than a short decode step's attention.
struct QueryBlock {
  void resize(int group, int head_dim) {
    q.resize(size_t(round_up(group * kQueryBlock, kStripRows)) * head_dim);
    visible.resize(size_t(group) * kQueryBlock);
    acc.resize(q.size());
    max.resize(visible.size());
    sum.resize(visible.size());
    keys.resize(size_t(kKeyBlock) * head_dim);
    values.resize(size_t(kKeyBlock) * round_up(head_dim, kPanelColumns));
    scores.resize(size_t(round_up(group * kQueryBlock, kStripRows)) * kKeyBlock);
    k_t.resize(keys.size());
    p_pairs.resize(scores.size());
    v_pairs.resize(size_t(round_up(head_dim, strips::kPairPanelColumns)) * kKeyBlock);
  }
  int rows = 0;
  std::vector<float> q;       // [rows][head_dim], pre-scaled by 1/sqrt(head_dim)
  std::vector<int> visible;   // [rows] keys each row may see
  std::vector<float> acc;     // [rows][head_dim] unnormalised output
  std::vector<float> max, sum;
  std::vector<float> keys, values;  // a 16-bit block widened: [kKeyBlock][head_dim]; values
                                    // with rows of head_dim rounded up to 16 for panels
  std::vector<float> scores;        // [rows][kKeyBlock], then the probabilities
  std::vector<float> k_t;           // [head_dim][kKeyBlock]: the block's keys as panels
  // P . V in bf16 pairs: the probabilities rounded ([rows][kKeyBlock]) and the block's values
  // as pair panels of 32 dimensions.
  std::vector<strips::BFloat16> p_pairs, v_pairs;
};

// Query tokens [t0, t0 + nt) of the group of KV head h into b, scaled by 1/sqrt(head_dim):
// row g * nt + t is query head h * group + g at token t0 + t. The T new tokens are the last
// T of the head's `len` keys, so each row sees the keys up to its own.
void load_queries(QueryBlock& b, const float* q, int len, int T, int t0, int nt, int h, int group,
                  int n_heads, int head_dim) {
  const float scale = 1.0f / std::sqrt(float(head_dim));
  b.rows = group * nt;
  for (int g = 0; g < group; g++)
    for (int t = 0; t < nt; t++) {
      const int r = g * nt + t;
      const float* src = q + (size_t(t0 + t) * n_heads + h * group + g) * head_dim;
      for (int d = 0; d < head_dim; d++) b.q[size_t(r) * head_dim + d] = src[d] * scale;
      b.visible[r] = len - T + t0 + t + 1;
    }
}

// The calling thread's QueryBlock, sized for this model.
QueryBlock& query_block(int group, int head_dim) {
  thread_local QueryBlock block;
  block.resize(group, head_dim);
  return block;
}

// Scores of all b's rows against keys [j0, j0 + n) as they lie in the cache: row r into
// s[r * lds, ...) (quant::dots_function: each key read and widened once for the group).
void row_scores(float* s, int lds, const QueryBlock& b, const KVHeadView& cache, int head_dim,
                int j0, int n) {
  const size_t row_bytes = size_t(head_dim) * dtype_bytes(cache.dtype);
  const auto* keys = static_cast<const uint8_t*>(cache.keys) + j0 * row_bytes;
  quant::dots_function(weight_type(cache.dtype))(keys, row_bytes, n, b.q.data(), b.rows,
                                                  head_dim, s, lds);
}

// The largest of p[0, n).
KVLM_SIMD_CLONES float block_max(const float* p, int n) {
  Vec m = simd::broadcast(-INFINITY);
  int j = 0;
  for (; j + kLanes <= n; j += kLanes) {
    const Vec v = simd::load(p + j);
    m = v > m ? v : m;
  }
  float largest = -INFINITY;
  for (int k = 0; k < kLanes; k++) largest = std::max(largest, m[k]);
  for (; j < n; j++) largest = std::max(largest, p[j]);
  return largest;
}

// p[j] = exp(p[j] - max) for j < n; returns their sum. Summed a vector at a time: one
// scalar chain of additions over a block's 64 scores took as long as the block's
// multiply-adds for that row. 16 lanes at a time (a 4K prefill spent 16% of its time here
// with 8). (p's row is whole blocks of kKeyBlock floats: the lanes past n compute values
// nobody reads.)
KVLM_SIMD_CLONES float exponentiate(float* p, int n, float max) {
  using simd::WideVec, simd::kWideLanes;
  static_assert(kKeyBlock % kWideLanes == 0);
  WideVec sums{};
  int j = 0;
  for (; j + kWideLanes <= n; j += kWideLanes) {
    const WideVec e = simd::exp(simd::load<WideVec>(p + j) - max);
    simd::store(p + j, e);
    sums += e;
  }
  float sum = simd::horizontal_sum(sums);
  if (j < n) {
    simd::store(p + j, simd::exp(simd::load<WideVec>(p + j) - max));
    for (; j < n; j++) sum += p[j];
  }
  return sum;
}

// Rows [first, first + n) of a head's keys or values as float32: float32 rows where they
// lie, 16-bit ones widened into `scratch` (n * head_dim floats).
const float* float_rows(float* scratch, const void* rows, DType dtype, int first, int n,
                        int head_dim) {
  const auto* bytes = static_cast<const uint8_t*>(rows) + size_t(first) * head_dim * dtype_bytes(dtype);
  if (dtype == DType::F32) return reinterpret_cast<const float*>(bytes);
  quant::dequantize_row(weight_type(dtype), bytes, scratch, int64_t(n) * head_dim);
  return scratch;
}

// Row r's softmax step over a block's n scores (n <= 0: it sees none of the block): the
// scores become probabilities against the row's running max, which they may raise; returns
// the factor the row's earlier output and sum are rescaled by.
float softmax_step(QueryBlock& b, int r, float* p, int n) {
  if (n <= 0) return 1.0f;
  const float new_max = std::max(b.max[r], block_max(p, n));
  const float rescale = std::exp(b.max[r] - new_max);  // 0 on the first block
  b.sum[r] = b.sum[r] * rescale + exponentiate(p, n, new_max);
  b.max[r] = new_max;
  return rescale;
}

// Every row's softmax step over the block's scores (row r's at scores[r * kKeyBlock]): the
// keys it sees become probabilities, the rest (past its own end) weigh 0, and its output so
// far is rescaled to its new max.
void softmax_rows(QueryBlock& b, int j0, int n_block, int head_dim) {
  for (int r = 0; r < b.rows; r++) {
    float* p = &b.scores[size_t(r) * kKeyBlock];
    const int n = std::clamp(b.visible[r] - j0, 0, n_block);
    const float rescale = softmax_step(b, r, p, n);
    std::fill(p + n, p + n_block, 0.0f);
    float* acc = &b.acc[size_t(r) * head_dim];
    if (rescale != 1.0f)
      for (int d = 0; d < head_dim; d++) acc[d] *= rescale;
  }
}

// float_rows into `scratch` with rows `stride` floats apart (> head_dim), so a panel reading
// 16 columns from any of a row's dimensions stays inside the row.
const float* padded_rows(float* scratch, int stride, const void* rows, DType dtype, int first,
                         int n, int head_dim) {
  for (int j = 0; j < n; j++) {
    float* dst = scratch + size_t(j) * stride;
    const float* src = float_rows(dst, rows, dtype, first + j, 1, head_dim);
    if (src != dst) std::copy_n(src, head_dim, dst);
  }
  return scratch;
}

// Keys [j0, j0 + n_block) for few rows (decode): the scores and the weighted sum of the
// values, both read from the cache where they lie.
void attend_by_rows(QueryBlock& b, const KVHeadView& cache, int head_dim, int j0, int n_block) {
  row_scores(b.scores.data(), kKeyBlock, b, cache, head_dim, j0, n_block);
  softmax_rows(b, j0, n_block, head_dim);
  const size_t row_bytes = size_t(head_dim) * dtype_bytes(cache.dtype);
  quant::weighted_sums_function(weight_type(cache.dtype))(
      static_cast<const uint8_t*>(cache.values) + j0 * row_bytes, row_bytes, n_block,
      b.scores.data(), kKeyBlock, b.rows, head_dim, b.acc.data());
}

// Keys [j0, j0 + n_block) for many rows (prefill): scores = Q.K^T and acc += P.V in strips
// of 6 rows; with `pairs`, P.V in bf16 pairs (kernels/cpu/strips.h).
void attend_by_strips(QueryBlock& b, const KVHeadView& cache, int head_dim, int j0, int n_block,
                      bool pairs) {
  const float* keys = float_rows(b.keys.data(), cache.keys, cache.dtype, j0, n_block, head_dim);
  strips::interleave(keys, n_block, head_dim, head_dim, kKeyBlock, b.k_t.data());
  strips::multiply(b.scores.data(), kKeyBlock, b.rows, n_block, b.q.data(), head_dim,
                   b.k_t.data(), kPanelColumns, kKeyBlock, head_dim, false);
  softmax_rows(b, j0, n_block, head_dim);

  if (pairs) {
    const int n_pairs = (n_block + 1) / 2;
    const float* values = float_rows(b.values.data(), cache.values, cache.dtype, j0, n_block, head_dim);
    strips::round_rows(b.scores.data(), b.rows, n_block, kKeyBlock, b.p_pairs.data(), kKeyBlock);
    strips::pair_panels_from_k_rows(values, n_block, head_dim, head_dim, b.v_pairs.data(), true);
    strips::multiply_pairs(b.acc.data(), head_dim, b.rows, head_dim, b.p_pairs.data(), kKeyBlock,
                           b.v_pairs.data(), strips::kPairPanelColumns * 2 * n_pairs, n_pairs,
                           true, true);
    return;
  }
  const int values_stride = round_up(head_dim, kPanelColumns);  // a panel reads 16 columns
  const float* values =
      values_stride == head_dim
          ? float_rows(b.values.data(), cache.values, cache.dtype, j0, n_block, head_dim)
          : padded_rows(b.values.data(), values_stride, cache.values, cache.dtype, j0, n_block, head_dim);
  strips::multiply(b.acc.data(), head_dim, b.rows, head_dim, b.scores.data(), kKeyBlock, values,
                   kPanelColumns, values_stride, n_block, true);
}

// The rows of b over keys [key_begin, key_end) (each row also stops at its visible end).
void attend_block(QueryBlock& b, const KVHeadView& cache, int head_dim, int key_begin,
                  int key_end, bool pairs) {
  std::fill(b.acc.begin(), b.acc.begin() + size_t(b.rows) * head_dim, 0.0f);
  std::fill(b.max.begin(), b.max.begin() + b.rows, -INFINITY);
  std::fill(b.sum.begin(), b.sum.begin() + b.rows, 0.0f);
  const int n_keys =
      std::min(key_end, *std::max_element(b.visible.begin(), b.visible.begin() + b.rows));
  for (int j0 = key_begin; j0 < n_keys; j0 += kKeyBlock) {
    const int n_block = std::min(kKeyBlock, n_keys - j0);
    if (b.rows < kStripsFromRows) attend_by_rows(b, cache, head_dim, j0, n_block);
    else attend_by_strips(b, cache, head_dim, j0, n_block, pairs);
  }
}

// Scores of b's rows over the keys [0, n_keys), all blocks: row r into s[r * lds, ...),
// lds a multiple of kKeyBlock. Few rows (a decode step) take dot products; many take strips
// as in attend_by_strips.
void score_rows(float* s, int lds, QueryBlock& b, const KVHeadView& cache, int head_dim,
                int n_keys) {
  for (int j0 = 0; j0 < n_keys; j0 += kKeyBlock) {
    const int n_block = std::min(kKeyBlock, n_keys - j0);
    if (b.rows < kStripsFromRows) {
      row_scores(s + j0, lds, b, cache, head_dim, j0, n_block);
      continue;
    }
    const float* keys = float_rows(b.keys.data(), cache.keys, cache.dtype, j0, n_block, head_dim);
    strips::interleave(keys, n_block, head_dim, head_dim, kKeyBlock, b.k_t.data());
    strips::multiply(s + j0, lds, b.rows, n_block, b.q.data(), head_dim, b.k_t.data(),
                     kPanelColumns, kKeyBlock, head_dim, false);
  }
}

// dst[j] += p[j] * weight for j < n.
KVLM_SIMD_CLONES void add_scaled(float* dst, const float* p, int n, float weight) {
  int j = 0;
  for (; j + kLanes <= n; j += kLanes)
    simd::store(dst + j, simd::load(dst + j) + simd::load(p + j) * weight);
  for (; j < n; j++) dst[j] += p[j] * weight;
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
  int longest = 0;
  for (const KVHeadView& h : kv) longest = std::max(longest, h.len);
  // About 4 tasks a thread, and a whole number of them per thread: 3 heads in 3 chunks on
  // 2 threads left one thread a ninth of the work idle.
  int wanted = n_blocks == 1 ? (4 * threads() + n_kv - 1) / n_kv : 1;
  while (n_blocks == 1 && n_kv * wanted % threads() != 0 && wanted < 4 * threads()) wanted++;
  const int n_chunks = std::max(1, std::min(wanted, longest / kMinChunk));
  const int chunk = round_up((longest + n_chunks - 1) / n_chunks, kKeyBlock);

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
  pool_.run(n_blocks * n_kv * n_chunks, [&](int task, int) {
    const int c = task % n_chunks, h = task / n_chunks % n_kv;
    const int blk = n_blocks - 1 - task / n_chunks / n_kv;
    QueryBlock& b = query_block(group, head_dim);
    const KVHeadView& cache = kv[h];
    const int t0 = blk * kQueryBlock, nt = std::min(kQueryBlock, T - t0);
    load_queries(b, q, cache.len, T, t0, nt, h, group, n_heads, head_dim);
    const int key_begin = n_chunks > 1 ? c * chunk : 0;
    const int key_end = n_chunks > 1 ? key_begin + chunk : cache.len;
    attend_block(b, cache, head_dim, key_begin, key_end,
                 bf16_prefill_ && cache.dtype != DType::F32);
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

// The softmax rows attention() computes, for observers, added up over the chosen rows.
// Tasks are (KV head, block of 32 tokens) as in attention(): a key block is widened once
// for the whole group's rows and multiplied by them in strips. A task keeps its rows'
// scores over all their keys (96 rows x 8K keys, 3 MiB, for SmolLM2 at 8K), so each score
// is computed once; then a row at a time, while it is in cache, its max, its sum of
// exponentials, and its probabilities added into its query head's row of the output.
// Row-at-a-time dot products with a scalar softmax, one query head per task, took as long
// as the rest of a 2K prefill when every row was observed (H2O).
//
// Where one task covers each KV head (a decode step, a window of up to 32 tokens) it adds
// into `out` directly; otherwise several tasks add to the same output rows, so each thread
// adds into its own copy and the copies are summed at the end.
void CpuBackend::attention_scores(float* out, int stride, const float* q,
                                  const std::vector<KVHeadView>& kv, int T, int first_row,
                                  int n_rows, int n_heads, int head_dim, bool average) {
  check_kv_view("attention_scores", kv, n_heads, head_dim);
  check_score_rows("attention_scores", kv, stride, T, first_row, n_rows);
  const int n_kv = int(kv.size()), group = n_heads / n_kv;
  const int n_blocks = (n_rows + kQueryBlock - 1) / kQueryBlock;
  const bool shared_rows = n_blocks > 1;
  std::vector<float> partial(shared_rows ? size_t(threads()) * n_heads * stride : 0);
  for (int h = 0; h < n_heads; h++) std::fill_n(out + size_t(h) * stride, kv[h / group].len, 0.0f);

  // Later token blocks see more keys; handing them out first balances the threads.
  pool_.run(n_blocks * n_kv, [&](int task, int thread) {
    const int h = task % n_kv, blk = n_blocks - 1 - task / n_kv;
    const KVHeadView& cache = kv[h];
    QueryBlock& b = query_block(group, head_dim);
    const int t0 = first_row + blk * kQueryBlock;
    const int nt = std::min(kQueryBlock, first_row + n_rows - t0);
    load_queries(b, q, cache.len, T, t0, nt, h, group, n_heads, head_dim);
    const int n_keys = std::clamp(b.visible[b.rows - 1], 0, cache.len);  // the last row sees most
    const int lds = round_up(n_keys, kKeyBlock);
    thread_local std::vector<float> scores;
    scores.resize(std::max(scores.size(), size_t(b.rows) * lds));
    score_rows(scores.data(), lds, b, cache, head_dim, n_keys);

    float* sums = shared_rows ? &partial[size_t(thread) * n_heads * stride] : out;
    for (int r = 0; r < b.rows; r++) {
      const int n = std::min(b.visible[r], cache.len);
      if (n <= 0) continue;  // a row that sees no keys adds nothing
      float* p = &scores[size_t(r) * lds];
      const float sum = exponentiate(p, n, block_max(p, n));
      const int head = h * group + r / nt;
      add_scaled(sums + size_t(head) * stride, p, n, 1.0f / ((average ? n_rows : 1) * sum));
    }
  });
  if (!shared_rows) return;
  pool_.run(n_heads, [&](int h, int) {
    float* row = out + size_t(h) * stride;
    for (int t = 0; t < threads(); t++)
      add_scaled(row, &partial[(size_t(t) * n_heads + h) * stride], kv[h / group].len, 1.0f);
  });
}

}  // namespace kvlm
