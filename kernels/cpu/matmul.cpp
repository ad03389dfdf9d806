// matmul: out[T][n_out] = x[T][n_in] . w[n_out][n_in]^T, the projection of every layer.
//
// A matrix is one or more parts of rows (backend.h), each in its own weight type. Against
// a quantised part in decode the input rows are quantised once per call
// (kernels/cpu/quant.h) and every weight row is one block-wise integer dot product; float
// parts read x as it is, and so does a quantised part in a prefill of 16 tokens or more,
// whose row blocks are rebuilt as float32 first (below).
//
// Decode (T = 1) is a matrix-vector product, bound by reading w once: rows are split
// across threads. Prefill (T > 1) reuses each weight row for many tokens: threads take
// blocks of 24 rows, which stay in cache while every token passes them. Float32, float16
// and bfloat16 rows go through 4-token x 3-row tiles of 12 vector accumulators, so each
// element loaded feeds 3 or 4 multiply-adds instead of 1.
#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/simd.h"

namespace kvlm {
namespace {


using simd::kLanes;
using simd::load;
using simd::Vec;

// out[t][o] for t in [t0, t0 + NT), o in [o0, o0 + NO); w holds float rows of type W.
// 4 tokens x 3 rows: 12 accumulators, 3 weight vectors and 1 input vector fill AVX2's 16
// registers (a 4 x 4 tile spilled to the stack: 7 GFLOP/s, a tenth of this CPU's peak),
// and every weight or input loaded feeds 3 or 4 multiply-adds.
template <class W, int NT, int NO>
KVLM_SIMD_CLONES void tile(float* out, const float* x, const W* w, int t0, int o0, int n_in,
                           int out_stride) {
  Vec acc[NT][NO] = {};
  int i = 0;
  for (; i + kLanes <= n_in; i += kLanes) {
    Vec wv[NO];
    for (int o = 0; o < NO; o++) wv[o] = load(w + size_t(o0 + o) * n_in + i);
    for (int t = 0; t < NT; t++) {
      const Vec xv = load(x + size_t(t0 + t) * n_in + i);
      for (int o = 0; o < NO; o++) acc[t][o] += xv * wv[o];
    }
  }
  for (int t = 0; t < NT; t++)
    for (int o = 0; o < NO; o++) {
      float s = simd::horizontal_sum(acc[t][o]);
      for (int r = i; r < n_in; r++)
        s += x[size_t(t0 + t) * n_in + r] * simd::to_float(w[size_t(o0 + o) * n_in + r]);
      out[size_t(t0 + t) * out_stride + o0 + o] = s;
    }
}

// One part of a matrix as matmul reads it: its rows, its dot product, and the input rows
// in the format that dot product reads.
struct PartPlan {
  const uint8_t* rows;
  WeightType type;
  size_t row_bytes;
  int first_row, n_rows;  // within the whole matrix (= the column of out)
  quant::DotFn dot;
  const uint8_t* act;  // T rows of act_stride bytes
  size_t act_stride;
};

// From this many tokens on, a quantised or 16-bit row block is rebuilt as float32 once and
// multiplied in tiles like a float32 matrix (16-bit loads inside the tiles cost a
// conversion per multiply-add, and F16C is not available to every clone): the rebuilding
// is paid once per row for all the tokens, and the tiles do 4 multiply-adds per load where
// the block dot products do 1.
constexpr int kDequantizeFromTokens = 16;
constexpr int kTileTokens = 4, kTileRows = 3;

// The tiles of rows [o_begin, o_end) (a whole number of kTileRows from o_begin; returns
// where they end) and tokens [0, T / kTileTokens * kTileTokens). Tokens go in chunks of
// about 128 KiB of x, each passing the whole row block before the next: a chunk and the
// block (24 rows, at most ~150 KiB) stay in the 512 KiB L2 together, where streaming all
// of a 512-token x (1.2 MB for SmolLM2's 576 inputs) for every 3 rows would read it from L3.
template <class W>
int tiles(float* out, const float* x, const W* w, int o_begin, int o_end, int T, int n_in,
          int out_stride) {
  const int tokens = T / kTileTokens * kTileTokens;
  const int chunk = std::max(kTileTokens, int(128 * 1024 / (n_in * sizeof(float))) / kTileTokens * kTileTokens);
  const int o_tiled = o_begin + (o_end - o_begin) / kTileRows * kTileRows;
  for (int c0 = 0; c0 < tokens; c0 += chunk)
    for (int o = o_begin; o < o_tiled; o += kTileRows)
      for (int t0 = c0; t0 < std::min(tokens, c0 + chunk); t0 += kTileTokens)
        tile<W, kTileTokens, kTileRows>(out, x, w, t0, o, n_in, out_stride);
  return o_tiled;
}

// Rows [o_begin, o_end) of one part, all T tokens: dot products, or tiles for float rows.
void part_rows(float* out, const float* x, const PartPlan& p, int o_begin, int o_end, int T,
               int n_in, int out_stride) {
  float* part_out = out + p.first_row;
  int o = o_begin;
  if (p.type != WeightType::F32 && T >= kDequantizeFromTokens) {
    thread_local std::vector<float> rebuilt;
    rebuilt.resize(size_t(o_end - o_begin) * n_in);
    quant::dequantize_row(p.type, p.rows + o_begin * p.row_bytes, rebuilt.data(),
                          int64_t(o_end - o_begin) * n_in);
    // The block's own rows, now float32, against x itself (no activation rounding).
    const float* w = rebuilt.data() - size_t(o_begin) * n_in;
    const quant::DotFn dot = quant::dot_function(WeightType::F32);
    o = tiles(part_out, x, w, o_begin, o_end, T, n_in, out_stride);
    for (int r = o_begin; r < o_end; r++)
      for (int t = r < o ? T / kTileTokens * kTileTokens : 0; t < T; t++)
        part_out[size_t(t) * out_stride + r] = dot(w + size_t(r) * n_in, x + size_t(t) * n_in, n_in);
    return;
  }
  if (!is_quantized(p.type) && T >= kTileTokens) {
    simd::with_storage_type(float_dtype(p.type), [&](auto tag) {
      using W = decltype(tag);
      o = tiles(part_out, x, reinterpret_cast<const W*>(p.rows), o_begin, o_end, T, n_in, out_stride);
    });
    // Tiles covered the tokens [0, T / kTileTokens * kTileTokens) of rows [o_begin, o); the rest below.
    for (int r = o_begin; r < o; r++)
      for (int t = T / kTileTokens * kTileTokens; t < T; t++)
        part_out[size_t(t) * out_stride + r] =
            p.dot(p.rows + r * p.row_bytes, p.act + t * p.act_stride, n_in);
  }
  for (int r = o; r < o_end; r++) {
    const uint8_t* row = p.rows + r * p.row_bytes;
    for (int t = 0; t < T; t++)
      part_out[size_t(t) * out_stride + r] = p.dot(row, p.act + t * p.act_stride, n_in);
  }
}

}  // namespace

void CpuBackend::matmul(float* out, const float* x, const WeightMatrix& w, int T) {
  const int n_in = w.cols, n_out = w.rows;
  // The input in every activation format the parts read (a float part reads x itself).
  const quant::ActFormat formats[] = {quant::ActFormat::Q8_32, quant::ActFormat::Q8_256};
  size_t offsets[3] = {0, 0, 0}, stride[3] = {0, 0, 0}, total = 0;
  for (quant::ActFormat f : formats) {
    const bool used = std::any_of(w.parts.begin(), w.parts.end(), [&](const WeightRows& p) {
      return quant::act_format(p.type) == f;
    });
    if (!used || T >= kDequantizeFromTokens) continue;  // prefill reads x unrounded
    stride[int(f)] = quant::act_row_bytes(f, n_in);
    offsets[int(f)] = total;
    total += stride[int(f)] * T;
  }
  if (activations_.size() < total) activations_.resize(total);
  auto quantize = [&](int64_t begin, int64_t end) {
    for (quant::ActFormat f : formats)
      if (stride[int(f)])
        for (int64_t t = begin; t < end; t++)
          quant::quantize_activations(f, x + t * n_in,
                                      activations_.data() + offsets[int(f)] + t * stride[int(f)], n_in);
  };
  // A decode step's one row is not worth waking the threads for.
  if (total > 0 && T == 1) quantize(0, 1);
  else if (total > 0) pool_.parallel_for(T, 16, quantize);

  std::vector<PartPlan> plan;
  int first_row = 0;
  for (const WeightRows& p : w.parts) {
    const quant::ActFormat f = quant::act_format(p.type);
    const bool floats = f == quant::ActFormat::F32;
    plan.push_back({static_cast<const uint8_t*>(p.data), p.type, weight_row_bytes(p.type, n_in),
                    first_row, p.rows, quant::dot_function(p.type),
                    floats || !stride[int(f)] ? reinterpret_cast<const uint8_t*>(x)
                                              : activations_.data() + offsets[int(f)],
                    floats || !stride[int(f)] ? size_t(n_in) * sizeof(float) : stride[int(f)]});
    first_row += p.rows;
  }
  // Rows [begin, end) of the whole matrix, part by part.
  auto rows = [&](int64_t begin, int64_t end) {
    for (const PartPlan& p : plan) {
      const int lo = std::max<int64_t>(begin, p.first_row) - p.first_row;
      const int hi = std::min<int64_t>(end, p.first_row + p.n_rows) - p.first_row;
      if (lo < hi) part_rows(out, x, p, lo, hi, T, n_in, n_out);
    }
  };
  if (T == 1) return pool_.parallel_for(n_out, 16, rows);
  // Blocks of rows stay in L2 while the token tiles stream past them. 24 is a multiple of
  // the tiles' 3 rows (a block's leftover rows take the slower dot products) that divides
  // the usual row counts and part boundaries (multiples of 64 or 96).
  constexpr int kRowBlock = 24;
  pool_.run((n_out + kRowBlock - 1) / kRowBlock, [&](int b, int) {
    rows(int64_t(b) * kRowBlock, std::min<int64_t>(n_out, int64_t(b + 1) * kRowBlock));
  });
}

}  // namespace kvlm
