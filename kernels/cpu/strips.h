// The register-blocked matrix product that prefill runs on the CPU, for matmul and for
// attention's Q.K^T and P.V: C = A.B, computed 6 rows of A (tokens, query rows) by 16
// columns of B (weight rows, keys, 16 of a value row's dimensions) at a time.
//
// B is read as panels: 16 columns whose values for one k lie side by side. Each step of k
// loads a panel's 16 values as two vectors and multiplies them by each of the 6 rows' value
// for that k, broadcast from memory: an outer product into 6 x 2 vector accumulators,
// which with the two panel vectors and the broadcast fill 15 of AVX2's 16 registers. Every
// load feeds 2 to 12 multiply-adds and no output needs a horizontal sum. (4 x 3
// dot-product tiles, rows and tokens both running along k, reached 55-65% of this CPU's
// FMA peak; these strips 80-100%.)
#pragma once

namespace kvlm::strips {

constexpr int kStripRows = 6;
constexpr int kPanelColumns = 16;

// C[r][j] = (accumulate ? C[r][j] : 0) + sum over k < n_k of A[r][k] B[k][j], for r < rows
// and j < columns.
// - A: row r at a + r * lda, k contiguous. Rows are read in whole strips of 6: those past
//   `rows` up to the strip's end must be readable (their results are dropped).
// - B: panel p (columns 16p..16p+15) has B[k][16p + i] at b[p * panel_stride + k * k_stride
//   + i]; all 16 values of a panel are read for each k, whatever `columns` says.
// - C: row r at c + r * ldc.
// Panels outer, strips inner: a panel stays in L1 while the strips pass it.
void multiply(float* c, int ldc, int rows, int columns, const float* a, int lda, const float* b,
              int panel_stride, int k_stride, int n_k, bool accumulate);

// n rows of n_k floats (row_stride apart) into blocks of `width` interleaved along k:
// out[b * width * n_k + k * width + i] = rows[(b * width + i) * row_stride + k], zeros past
// the n-th row. Width 16 makes panels (panel_stride 16 n_k, k_stride 16); width 64 makes
// K^T for attention (one block: panel_stride 16, k_stride 64).
void interleave(const float* rows, int n, int n_k, int row_stride, int width, float* out);

}  // namespace kvlm::strips
