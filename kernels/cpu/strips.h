// The register-blocked product both prefill matmul and prefill attention run on the CPU:
// out (6 rows x 16 columns) = strip . panel, where the strip is 6 rows of the left operand
// (tokens, query rows) and the panel 16 columns of the right one (weight rows, keys, 16 of
// a value row's dimensions), both along the dimension k they share.
//
// Each step of k loads the panel's 16 values (contiguous) as two vectors and multiplies
// them by each of the strip's 6 values, broadcast from memory: an outer product into 6 x 2
// vector accumulators, which with the two panel vectors and the broadcast fill 15 of AVX2's
// 16 registers. Every load feeds 2 to 12 multiply-adds and no output needs a horizontal
// sum. (4 x 3 dot-product tiles, rows and tokens both running along k, reached 55-65% of
// this CPU's FMA peak; strips reach 80-100%.)
#pragma once

namespace kvlm::strips {

constexpr int kStripRows = 6;
constexpr int kPanelColumns = 16;

// Element (t, k) of a strip is at data[t * row_stride + k * k_stride]: rows as they lie
// (k_stride 1) or interleaved by k (row_stride 1, k_stride 6).
struct Strip {
  const float* data;
  int row_stride, k_stride;
};
// Element (k, r) of a panel is at data[k * k_stride + r]; the 16 values of each k are read
// whole, whatever `columns` below says.
struct Panel {
  const float* data;
  int k_stride;
};

// out[t * out_stride + r] = (accumulate ? out[...] : 0) + sum over k < n_k of
// strip(t, k) * panel(k, r), for t < rows and r < columns (the strip's rows past `rows`
// are read and ignored, so they must be readable).
void multiply(float* out, int out_stride, int rows, int columns, Strip strip, Panel panel,
              int n_k, bool accumulate);

// n rows of n_k floats (row_stride apart) into blocks of `width` interleaved along k:
// out[b * width * n_k + k * width + i] = rows[(b * width + i) * row_stride + k], zeros past
// the n-th row: panels of width 16 (k_stride 16), K^T for attention (width 64).
void interleave(const float* rows, int n, int n_k, int row_stride, int width, float* out);

}  // namespace kvlm::strips
