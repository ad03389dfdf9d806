// matmul: out[T][n_out] = x[T][n_in] . w[n_out][n_in]^T, the projection of every layer.
//
// A matrix is one or more parts of rows (backend.h), each in its own weight type.
//
// Decode and short inputs (T < 16) are matrix-vector products, bound by reading w once:
// rows are split across threads, and every row is one dot product per token (4 rows at a
// time where the type has a version for it). Against a quantised part the input rows are
// first quantised (kernels/cpu/quant.h), so each dot product is block-wise integer
// arithmetic.
//
// Prefill (T >= 16) reuses each weight row for many tokens, so it is bound by multiply-adds,
// not by reading: threads take blocks of 32 rows, rebuild each block once as panels
// (kernels/cpu/strips.h) and pass every token through them. On float32 weights, or a CPU
// without AVX512-BF16, the panels are float32 and x is read as it is (no rounding); on
// other weights, where the CPU has vdpbf16ps, weights and x are rounded to bf16 and
// multiplied in pairs at twice the rate (the README measures what the rounding changes).
#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/strips.h"

namespace kvlm {
namespace {

constexpr int kPanelsFromTokens = CpuBackend::kPanelsFromTokens;
constexpr int kRowBlock = 2 * strips::kPanelColumns;
static_assert(kRowBlock == strips::kPairPanelColumns);

// x as prefill reads it: float32 rows, and the same rounded to bf16 pairs where the
// matrix is multiplied that way (else nullptr).
struct PrefillInput {
  const float* x;
  const strips::BFloat16* pairs;
  int pairs_stride;  // n_in rounded up to even
};

// Rows [o_begin, o_end) of one part, all T tokens, through panels of the rows, 6 tokens at
// a time. Tokens go in chunks of about 192 KiB of float32 x, each passing the whole row
// block before the next: the chunk and the block (at most ~200 KiB for SmolLM2's 1536
// inputs) stay in the 512 KiB L2 together, where streaming all of a 512-token x (1.2 MB
// for 576 inputs) for every panel reads it from L3.
void panel_rows(float* out, const PrefillInput& in, WeightType type, const uint8_t* rows,
                int o_begin, int o_end, int T, int n_in, int out_stride) {
  using strips::kPanelColumns, strips::kStripRows;
  const int n_rows = o_end - o_begin, n_pairs = (n_in + 1) / 2;
  thread_local std::vector<float> rebuilt, panels;
  thread_local std::vector<strips::BFloat16> pair_panels;
  rebuilt.resize(size_t(n_rows) * n_in);
  quant::dequantize_row(type, rows, rebuilt.data(), int64_t(n_rows) * n_in);
  if (in.pairs) {
    pair_panels.resize(size_t(kRowBlock) * 2 * n_pairs);
    strips::pair_panels_from_columns(rebuilt.data(), n_rows, n_in, n_in, pair_panels.data(), true);
  } else {
    panels.resize(size_t(n_rows + kPanelColumns - 1) / kPanelColumns * kPanelColumns * n_in);
    strips::interleave(rebuilt.data(), n_rows, n_in, n_in, kPanelColumns, panels.data());
  }

  const int chunk = std::max(1, int(192 * 1024 / (n_in * sizeof(float))) / kStripRows) * kStripRows;
  auto tokens = [&](int first, int n) {
    float* c = out + size_t(first) * out_stride + o_begin;
    if (in.pairs)
      strips::multiply_pairs(c, out_stride, n, n_rows, in.pairs + size_t(first) * in.pairs_stride,
                             in.pairs_stride, pair_panels.data(), 2 * kRowBlock * n_pairs, n_pairs,
                             false, true);
    else
      strips::multiply(c, out_stride, n, n_rows, in.x + size_t(first) * n_in, n_in,
                       panels.data(), kPanelColumns * n_in, kPanelColumns, n_in, false);
  };
  for (int c0 = 0; c0 < T; c0 += chunk) {
    const int end = std::min(T, c0 + chunk), whole = (end - c0) / kStripRows * kStripRows;
    if (whole > 0) tokens(c0, whole);
    // The tokens left over end the prompt: one more strip ends at the last token (T >= 6),
    // redoing a few tokens rather than reading past x.
    if (c0 + whole < end) tokens(end - kStripRows, kStripRows);
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
  quant::DotRowsFn dot_rows;  // or nullptr
  const uint8_t* act;  // T rows of act_stride bytes
  size_t act_stride;
};

// Rows [o_begin, o_end) of one part, all T tokens.
void part_rows(float* out, const PrefillInput& prefill, const PartPlan& p, int o_begin,
               int o_end, int T, int n_in, int out_stride) {
  float* part_out = out + p.first_row;
  if (T >= kPanelsFromTokens) {
    PrefillInput in = prefill;
    if (p.type == WeightType::F32) in.pairs = nullptr;
    return panel_rows(part_out, in, p.type, p.rows + o_begin * p.row_bytes, o_begin, o_end, T,
                      n_in, out_stride);
  }
  int r = o_begin;
  if (p.dot_rows)
    for (; r + quant::kDotRows <= o_end; r += quant::kDotRows)
      for (int t = 0; t < T; t++) {
        float sums[quant::kDotRows];
        p.dot_rows(p.rows + r * p.row_bytes, p.row_bytes, p.act + t * p.act_stride, n_in, sums);
        std::copy_n(sums, quant::kDotRows, part_out + size_t(t) * out_stride + r);
      }
  for (; r < o_end; r++) {
    const uint8_t* row = p.rows + r * p.row_bytes;
    for (int t = 0; t < T; t++)
      part_out[size_t(t) * out_stride + r] = p.dot(row, p.act + t * p.act_stride, n_in);
  }
}

// The bf16 pairs of T rows of n_in inputs, each row padded to whole pairs.
size_t rounded_input_values(int T, int n_in) { return size_t(T) * ((n_in + 1) / 2 * 2); }

// Whether a call of T tokens multiplies in bf16 pairs: a prefill, on weights not all f32,
// with pairs asked for (bf16_prefill: asked for and this CPU has vdpbf16ps).
bool multiplies_in_pairs(bool bf16_prefill, int T, bool all_f32) {
  return bf16_prefill && !all_f32 && T >= kPanelsFromTokens;
}

}  // namespace

size_t CpuBackend::prefill_scratch_bytes(int tokens, int widest_input, bool bf16_prefill,
                                         bool all_f32) {
  return multiplies_in_pairs(bf16_prefill && strips::cpu_has_bf16_products(), tokens, all_f32)
             ? rounded_input_values(tokens, widest_input) * sizeof(strips::BFloat16)
             : 0;
}

void CpuBackend::matmul(float* out, const float* x, const WeightMatrix& w, int T) {
  const int n_in = w.cols, n_out = w.rows;
  // The input in every activation format the parts read (a float part reads x itself).
  const quant::ActFormat formats[] = {quant::ActFormat::Q8_32, quant::ActFormat::Q8_256};
  size_t offsets[3] = {0, 0, 0}, stride[3] = {0, 0, 0}, total = 0;
  for (quant::ActFormat f : formats) {
    const bool used = std::any_of(w.parts.begin(), w.parts.end(), [&](const WeightRows& p) {
      return quant::act_format(p.type) == f;
    });
    if (!used || T >= kPanelsFromTokens) continue;  // prefill reads x as float32 or bf16
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

  PrefillInput prefill{x, nullptr, (n_in + 1) / 2 * 2};
  const bool all_f32 = std::all_of(w.parts.begin(), w.parts.end(),
                                   [](const WeightRows& p) { return p.type == WeightType::F32; });
  if (multiplies_in_pairs(bf16_prefill_, T, all_f32)) {
    rounded_x_.resize(std::max(rounded_x_.size(), rounded_input_values(T, n_in)));
    pool_.parallel_for(T, 16, [&](int64_t begin, int64_t end) {
      strips::round_rows(x + begin * n_in, int(end - begin), n_in, n_in,
                         rounded_x_.data() + begin * prefill.pairs_stride, prefill.pairs_stride);
    });
    prefill.pairs = rounded_x_.data();
  }

  std::vector<PartPlan> plan;
  int first_row = 0;
  for (const WeightRows& p : w.parts) {
    const quant::ActFormat f = quant::act_format(p.type);
    const bool floats = f == quant::ActFormat::F32;
    plan.push_back({static_cast<const uint8_t*>(p.data), p.type, weight_row_bytes(p.type, n_in),
                    first_row, p.rows, quant::dot_function(p.type), quant::dot_rows_function(p.type),
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
      if (lo < hi) part_rows(out, prefill, p, lo, hi, T, n_in, n_out);
    }
  };
  if (T == 1) return pool_.parallel_for(n_out, 16, rows);
  // Blocks of rows stay in L2 while the token strips stream past them. 32 rows (2 panels)
  // divide the usual row counts and part boundaries (multiples of 64 or 96), so few panels
  // are partly zeros.
  pool_.run((n_out + kRowBlock - 1) / kRowBlock, [&](int b, int) {
    rows(int64_t(b) * kRowBlock, std::min<int64_t>(n_out, int64_t(b + 1) * kRowBlock));
  });
}

}  // namespace kvlm
