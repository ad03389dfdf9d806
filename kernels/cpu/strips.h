// The register-blocked matrix product that prefill runs on the CPU, for matmul and for
// attention's Q.K^T and P.V: C = A.B, computed a strip of 6 rows of A (tokens, query rows)
// by 16 columns of B (weight rows, keys, 16 of a value row's dimensions) at a time.
//
// B is read as panels: 16 columns whose values for one k lie side by side. Each step of k
// loads a panel's 16 values as two vectors and multiplies them by each of the 6 rows' value
// for that k, broadcast from memory: an outer product into 6 x 2 vector accumulators,
// which with the two panel vectors and the broadcast fill 15 of AVX2's 16 registers. Every
// load feeds 2 to 12 multiply-adds and no output needs a horizontal sum. (4 x 3
// dot-product tiles, rows and tokens both running along k, reached 55-65% of the FMA peak
// of the AVX2 CPU they were measured on; these strips 80-100%.)
//
// Where the CPU has AVX-512, tiles are two strips (12 rows) by two panels in 512-bit
// vectors: 24 accumulators of AVX-512's 32 registers, 14 loads for 24 multiply-adds, and
// twice the multiply-adds an instruction. On a CPU that runs a 512-bit multiply-add as
// one operation (Zen 5) that is twice the rate; on one that splits it in two (Zen 4) the
// same rate with fewer loads (not measured there). Each sum is the same chain of
// multiply-adds either way.
#pragma once

#include "kernels/cpu/simd.h"

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
// Panels outer, strips inner: a panel stays in L1 while the strips pass it. `wide`: the
// AVX-512 tiles where the CPU has AVX-512F (false: the portable ones, for the tests; the
// sums are equal).
void multiply(float* c, int ldc, int rows, int columns, const float* a, int lda, const float* b,
              int panel_stride, int k_stride, int n_k, bool accumulate, bool wide = true);

// n rows of n_k floats (row_stride apart) into blocks of `width` interleaved along k:
// out[b * width * n_k + k * width + i] = rows[(b * width + i) * row_stride + k], zeros past
// the n-th row. Width 16 makes panels (panel_stride 16 n_k, k_stride 16); width 64 makes
// K^T for attention (one block: panel_stride 16, k_stride 64).
void interleave(const float* rows, int n, int n_k, int row_stride, int width, float* out);

// The same product with k in bfloat16 pairs, for prefill's matrix products where the CPU
// has AVX512-BF16: its vdpbf16ps multiplies 16 pairs of bf16 values and adds both products
// of each pair to one float32 lane, twice the multiply-adds of a float32 FMA of the same
// width. Weights and activations are rounded to bf16 (8 significant bits) once; every sum
// stays float32.
//
// Tiles are 12 rows (two strips) x 32 columns (one pair panel, two 512-bit vectors): 24
// accumulators, with the 2 panel vectors and a broadcast pair 27 of AVX-512's 32
// registers, so each step of k feeds 24 products from 14 loads and keeps 24 chains in
// flight (more than the instruction's latency x its rate). Single strips where fewer than
// 12 rows are left.
constexpr int kPairPanelColumns = 32;
using simd::BFloat16;

// Whether this CPU runs vdpbf16ps (AVX512-BF16 with AVX512-VL).
bool cpu_has_bf16_products();

// n_rows rows of n floats (row_stride apart) rounded to bf16 (nearest, ties to even) at out
// (out_stride apart), with a zero after odd n so that every row is whole pairs.
void round_rows(const float* x, int n_rows, int n, int row_stride, BFloat16* out,
                int out_stride);

// Pair panels of 32 columns from a matrix whose rows are B's columns (a weight matrix: n
// rows of n_k floats, row_stride apart), zeros past the n-th row and past n_k (rounded up to
// even): out[p * 32 n_pairs + q * 64 + 2 i + e] = rows[(32 p + i) * row_stride + 2 q + e],
// n_pairs = (n_k + 1) / 2. `hardware`: AVX-512 for the whole 8 x 16 tiles (the same bits as
// the scalar version, which does the rest).
void pair_panels_from_columns(const float* rows, int n, int n_k, int row_stride, BFloat16* out,
                              bool hardware);

// The same panels from a matrix whose rows are B's rows (attention's values: n_k rows of n
// floats, row_stride apart): out[p * 32 n_pairs + q * 64 + 2 j + e] = rows[(2 q + e) *
// row_stride + 32 p + j], zeros past n_k and past the n-th column.
void pair_panels_from_k_rows(const float* rows, int n_k, int n, int row_stride, BFloat16* out,
                             bool hardware);

// C[r][j] (+)= sum over q < n_pairs and e < 2 of A[r][2q + e] B[2q + e][j], for r < rows and
// j < columns (+= when accumulate). A: bf16 rows, lda apart, read in whole strips of 6 as in
// multiply(); B: pair panels panel_stride apart. `hardware` false runs the scalar version
// (the tests' reference; on a CPU without vdpbf16ps, the only one).
void multiply_pairs(float* c, int ldc, int rows, int columns, const BFloat16* a, int lda,
                    const BFloat16* b, int panel_stride, int n_pairs, bool accumulate,
                    bool hardware);

}  // namespace kvlm::strips
