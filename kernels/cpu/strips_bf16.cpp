// strips.h's products in bfloat16 pairs: a scalar version and one for AVX512-BF16.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "kernels/cpu/strips.h"

namespace kvlm::strips {

namespace {

constexpr int kPairValues = 2 * kPairPanelColumns;  // one pair step of a panel
constexpr int kVectors = kPairPanelColumns / 16;    // 512-bit accumulators a row

// Where B[k][column] lies in pair panels of n_pairs pairs (strips.h's layout).
constexpr size_t pair_offset(int column, int k, int n_pairs) {
  return size_t(column / kPairPanelColumns) * kPairValues * n_pairs + size_t(k / 2) * kPairValues +
         2 * (column % kPairPanelColumns) + k % 2;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define KVLM_BF16_PRODUCTS 1
#define KVLM_AVX512_BF16 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx512bf16")))

// R rows (one or two strips) against one pair panel: R x 2 accumulators of 16 lanes.
template <int R>
KVLM_AVX512_BF16 void strip_times_pair_panel_avx512(float* out, int ldc, int rows, int columns,
                                                    const BFloat16* strip, int lda,
                                                    const BFloat16* panel, int n_pairs,
                                                    bool accumulate) {
  __m512 acc[R][kVectors];
#pragma GCC unroll 32
  for (int t = 0; t < R; t++)
    for (int v = 0; v < kVectors; v++) acc[t][v] = _mm512_setzero_ps();
  for (int q = 0; q < n_pairs; q++) {
    const BFloat16* p = panel + size_t(q) * kPairValues;
    __m512bh w[kVectors];
    for (int v = 0; v < kVectors; v++)
      w[v] = (__m512bh)_mm512_loadu_si512(p + 32 * v);
#pragma GCC unroll 12
    for (int t = 0; t < R; t++) {
      int32_t pair;  // A[t][2q], A[t][2q + 1]: one vpbroadcastd from memory
      std::memcpy(&pair, strip + size_t(t) * lda + 2 * q, sizeof(pair));
      const __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
#pragma GCC unroll 2
      for (int v = 0; v < kVectors; v++) acc[t][v] = _mm512_dpbf16_ps(acc[t][v], x, w[v]);
    }
  }
  for (int t = 0; t < rows; t++) {
    float* o = out + size_t(t) * ldc;
    if (columns == kPairPanelColumns) {
      for (int v = 0; v < kVectors; v++)
        _mm512_storeu_ps(o + 16 * v, accumulate ? _mm512_add_ps(acc[t][v], _mm512_loadu_ps(o + 16 * v))
                                                : acc[t][v]);
    } else {
      alignas(64) float row[kPairPanelColumns];
      for (int v = 0; v < kVectors; v++) _mm512_store_ps(row + 16 * v, acc[t][v]);
      for (int j = 0; j < columns; j++) o[j] = (accumulate ? o[j] : 0.0f) + row[j];
    }
  }
}

// 8 rows of 8 pairs (one 32-bit lane each) turned into 8 pairs of 8 rows: r[q] = (row 0's
// pair q, ..., row 7's pair q).
KVLM_AVX512_BF16 inline void transpose_pairs(__m256i r[8]) {
  __m256i t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);      // pairs 0 1 | 4 5 of 2 rows
    t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);  // pairs 2 3 | 6 7
  }
  for (int h = 0; h < 2; h++)  // rows 0-3, then 4-7
    for (int i = 0; i < 2; i++) {
      u[4 * h + 2 * i] = _mm256_unpacklo_epi64(t[4 * h + i], t[4 * h + 2 + i]);
      u[4 * h + 2 * i + 1] = _mm256_unpackhi_epi64(t[4 * h + i], t[4 * h + 2 + i]);
    }
  // u[j] (j < 4) holds pairs j and j + 4 of rows 0-3, u[4 + j] the same of rows 4-7.
  for (int j = 0; j < 4; j++) {
    r[j] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x20);
    r[j + 4] = _mm256_permute2x128_si256(u[j], u[4 + j], 0x31);
  }
}

// pair_panels_from_columns for whole tiles of 8 rows x 16 values (rows [0, n / 8 * 8) x
// k [0, returned)); the rest by the scalar version.
KVLM_AVX512_BF16 int column_pair_tiles_avx512(const float* rows, int n, int n_k, int row_stride,
                                              BFloat16* out) {
  const int n_pairs = (n_k + 1) / 2, whole_k = n_k / 16 * 16;
  for (int i0 = 0; i0 + 8 <= n; i0 += 8)  // 8 rows, all in one panel
    for (int k = 0; k < whole_k; k += 16) {
      __m256i r[8];
      for (int i = 0; i < 8; i++)
        r[i] = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(rows + size_t(i0 + i) * row_stride + k));
      transpose_pairs(r);
      for (int q = 0; q < 8; q++)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + pair_offset(i0, k + 2 * q, n_pairs)), r[q]);
    }
  return whole_k;
}

// pair_panels_from_k_rows for whole pairs of rows and groups of 8 columns: the two rows'
// 8 values rounded, then interleaved value by value. Returns the rows done (n_k rounded
// down to even); columns past n / 8 * 8 are left to the scalar version.
KVLM_AVX512_BF16 int k_row_pairs_avx512(const float* rows, int n_k, int n, int row_stride,
                                        BFloat16* out) {
  const int n_pairs = (n_k + 1) / 2;
  for (int q = 0; q < n_k / 2; q++) {
    const float* even = rows + size_t(2 * q) * row_stride;
    const float* odd = even + row_stride;
    for (int j = 0; j + 8 <= n; j += 8) {
      const __m128i a = (__m128i)_mm256_cvtneps_pbh(_mm256_loadu_ps(even + j));
      const __m128i b = (__m128i)_mm256_cvtneps_pbh(_mm256_loadu_ps(odd + j));
      BFloat16* dst = out + pair_offset(j, 2 * q, n_pairs);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm_unpacklo_epi16(a, b));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 8), _mm_unpackhi_epi16(a, b));
    }
  }
  return n_k / 2 * 2;
}

KVLM_AVX512_BF16 void round_row_avx512(const float* x, int n, BFloat16* out) {
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(x + i)));
  for (; i < n; i++) out[i] = simd::from_float<BFloat16>(x[i]);
}
#else
#define KVLM_BF16_PRODUCTS 0
#endif

// What vdpbf16ps computes in each lane: both products of a pair (exact in float32: 8-bit
// significands) added to the sum one after the other, the odd one first.
void strip_times_pair_panel_scalar(float* out, int ldc, int rows, int columns,
                                   const BFloat16* strip, int lda, const BFloat16* panel,
                                   int n_pairs, bool accumulate) {
  for (int t = 0; t < rows; t++) {
    float sums[kPairPanelColumns] = {};
    for (int q = 0; q < n_pairs; q++) {
      const BFloat16* x = strip + size_t(t) * lda + 2 * q;
      const BFloat16* w = panel + size_t(q) * kPairValues;
      for (int j = 0; j < kPairPanelColumns; j++) {
        sums[j] += simd::to_float(x[1]) * simd::to_float(w[2 * j + 1]);
        sums[j] += simd::to_float(x[0]) * simd::to_float(w[2 * j]);
      }
    }
    float* o = out + size_t(t) * ldc;
    for (int j = 0; j < columns; j++) o[j] = (accumulate ? o[j] : 0.0f) + sums[j];
  }
}

}  // namespace

bool cpu_has_bf16_products() {
#if KVLM_BF16_PRODUCTS
  __builtin_cpu_init();
  static const bool has = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vl");
  return has;
#else
  return false;
#endif
}

void round_rows(const float* x, int n_rows, int n, int row_stride, BFloat16* out,
                int out_stride) {
  for (int r = 0; r < n_rows; r++) {
    const float* row = x + size_t(r) * row_stride;
    BFloat16* dst = out + size_t(r) * out_stride;
#if KVLM_BF16_PRODUCTS
    if (cpu_has_bf16_products()) round_row_avx512(row, n, dst);
    else
#endif
      for (int i = 0; i < n; i++) dst[i] = simd::from_float<BFloat16>(row[i]);
    if (n % 2) dst[n] = {0};
  }
}

namespace {
// Both builders' scalar part: every value of the padded panels of B (n columns, n_k values
// of k; value(column, k) reads B) outside columns [0, wide_columns) x k [0, wide_k), which
// the wide version wrote.
template <class Read>
void fill_pair_panels(int n, int n_k, int wide_columns, int wide_k, BFloat16* out, Read value) {
  const int n_pairs = (n_k + 1) / 2;
  const int padded = (n + kPairPanelColumns - 1) / kPairPanelColumns * kPairPanelColumns;
  for (int j = 0; j < padded; j++)
    for (int k = j < wide_columns ? wide_k : 0; k < 2 * n_pairs; k++)
      out[pair_offset(j, k, n_pairs)] =
          j < n && k < n_k ? simd::from_float<BFloat16>(value(j, k)) : BFloat16{0};
}
}  // namespace

void pair_panels_from_columns(const float* rows, int n, int n_k, int row_stride, BFloat16* out,
                              bool hardware) {
  int wide_k = 0;
#if KVLM_BF16_PRODUCTS
  if (hardware) wide_k = column_pair_tiles_avx512(rows, n, n_k, row_stride, out);
#else
  (void)hardware;
#endif
  fill_pair_panels(n, n_k, n / 8 * 8, wide_k, out,
                   [&](int j, int k) { return rows[size_t(j) * row_stride + k]; });
}

void pair_panels_from_k_rows(const float* rows, int n_k, int n, int row_stride, BFloat16* out,
                             bool hardware) {
  int wide_k = 0;
#if KVLM_BF16_PRODUCTS
  if (hardware) wide_k = k_row_pairs_avx512(rows, n_k, n, row_stride, out);
#else
  (void)hardware;
#endif
  fill_pair_panels(n, n_k, n / 8 * 8, wide_k, out,
                   [&](int j, int k) { return rows[size_t(k) * row_stride + j]; });
}

void multiply_pairs(float* c, int ldc, int rows, int columns, const BFloat16* a, int lda,
                    const BFloat16* b, int panel_stride, int n_pairs, bool accumulate,
                    bool hardware) {
  for (int j0 = 0; j0 < columns; j0 += kPairPanelColumns) {
    const int n_columns = std::min(kPairPanelColumns, columns - j0);
    const BFloat16* panel = b + size_t(j0 / kPairPanelColumns) * panel_stride;
    int r0 = 0;
#if KVLM_BF16_PRODUCTS
    if (hardware) {
      for (; r0 + 2 * kStripRows <= rows; r0 += 2 * kStripRows)
        strip_times_pair_panel_avx512<2 * kStripRows>(c + size_t(r0) * ldc + j0, ldc, 2 * kStripRows,
                                                      n_columns, a + size_t(r0) * lda, lda, panel,
                                                      n_pairs, accumulate);
      for (; r0 < rows; r0 += kStripRows)
        strip_times_pair_panel_avx512<kStripRows>(c + size_t(r0) * ldc + j0, ldc,
                                                  std::min(kStripRows, rows - r0), n_columns,
                                                  a + size_t(r0) * lda, lda, panel, n_pairs, accumulate);
    }
#else
    (void)hardware;
#endif
    for (; r0 < rows; r0 += kStripRows)
      strip_times_pair_panel_scalar(c + size_t(r0) * ldc + j0, ldc, std::min(kStripRows, rows - r0),
                                    n_columns, a + size_t(r0) * lda, lda, panel, n_pairs, accumulate);
  }
}

}  // namespace kvlm::strips
