#include "kernels/cpu/strips.h"

#include <algorithm>
#include <cstddef>
#include <type_traits>

#include "kernels/cpu/simd.h"

namespace kvlm::strips {

using simd::kLanes;
using simd::load;
using simd::Vec;
static_assert(kPanelColumns == 2 * kLanes);

namespace {

// out[t][j] (+)= sum over k of strip[t][k] panel[k][j] for one strip of 6 rows and one
// panel (rows t < rows and columns j < columns written).
KVLM_SIMD_CLONES void strip_times_panel(float* out, int ldc, int rows, int columns,
                                        const float* strip, int lda, const float* panel,
                                        int k_stride, int n_k, bool accumulate) {
  static_assert(kLanes == 8);
  // A plain array, fully unrolled: GCC keeps it in registers (indexed through a pointer
  // array or a runtime count, it moved to the stack on every step).
  Vec acc[kStripRows][2] = {};
  for (int k = 0; k < n_k; k++) {
    const float* p = panel + size_t(k) * k_stride;
    const Vec p0 = load(p), p1 = load(p + kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < kStripRows; t++) {
      // Braced here, from memory: one vbroadcastss load. (simd::broadcast shuffles a
      // register, on a pipe one of the FMA units shares; the same braces inside a helper
      // function became eight inserts.)
      const float v = strip[size_t(t) * lda + k];
      const Vec s = {v, v, v, v, v, v, v, v};
      acc[t][0] += s * p0;
      acc[t][1] += s * p1;
    }
  }
  for (int t = 0; t < rows; t++) {
    float* o = out + size_t(t) * ldc;
    if (columns == kPanelColumns) {
      if (accumulate) {
        acc[t][0] += load(o);
        acc[t][1] += load(o + kLanes);
      }
      simd::store(o, acc[t][0]);
      simd::store(o + kLanes, acc[t][1]);
    } else {
      for (int j = 0; j < columns; j++) o[j] = (accumulate ? o[j] : 0.0f) + acc[t][j / kLanes][j % kLanes];
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define KVLM_AVX512_STRIPS 1
// R rows (one or two strips) against P panels (one or two), a panel's 16 values for one k
// in one 512-bit vector: each step of k feeds R x P multiply-adds from P loads and R
// broadcasts. Every sum is the chain of multiply-adds strip_times_panel's clones for
// AVX2 and AVX-512 make, so the two give equal results.
template <int R, int P>
__attribute__((target("avx512f"))) void strips_times_panels_avx512(
    float* out, int ldc, int rows, int columns, const float* strip, int lda, const float* panels,
    int panel_stride, int k_stride, int n_k, bool accumulate) {
  __m512 acc[R][P];
#pragma GCC unroll 32
  for (int t = 0; t < R; t++)
    for (int p = 0; p < P; p++) acc[t][p] = _mm512_setzero_ps();
  for (int k = 0; k < n_k; k++) {
    __m512 panel[P];
    for (int p = 0; p < P; p++)
      panel[p] = _mm512_loadu_ps(panels + size_t(p) * panel_stride + size_t(k) * k_stride);
#pragma GCC unroll 12
    for (int t = 0; t < R; t++) {
      const __m512 s = _mm512_set1_ps(strip[size_t(t) * lda + k]);
#pragma GCC unroll 2
      for (int p = 0; p < P; p++) acc[t][p] = _mm512_fmadd_ps(s, panel[p], acc[t][p]);
    }
  }
  for (int t = 0; t < rows; t++) {
    float* o = out + size_t(t) * ldc;
    for (int p = 0; p < P; p++) {
      const int n = std::min(kPanelColumns, columns - kPanelColumns * p);
      const __mmask16 lanes = __mmask16((1u << n) - 1);
      __m512 sum = acc[t][p];
      if (accumulate) sum = _mm512_add_ps(sum, _mm512_maskz_loadu_ps(lanes, o + kPanelColumns * p));
      _mm512_mask_storeu_ps(o + kPanelColumns * p, lanes, sum);
    }
  }
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}
#else
#define KVLM_AVX512_STRIPS 0
#endif

// Lanes I... of the 16 in (a, b), a's first.
template <int... I>
inline Vec shuffle(Vec a, Vec b) {
#if defined(__clang__)
  return __builtin_shufflevector(a, b, I...);
#else
  using Index = int __attribute__((vector_size(kLanes * sizeof(int))));
  return __builtin_shuffle(a, b, Index{I...});
#endif
}

// Rows r[0..8) of 8 floats turned into their columns: r[j] = (r[0][j], ..., r[7][j]).
// Pairs of rows interleaved, then pairs of pairs, then 128-bit halves swapped: AVX2's
// unpack, shuffle and permute, 24 instructions for 64 values.
inline void transpose8(Vec r[8]) {
  Vec t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = shuffle<0, 8, 1, 9, 4, 12, 5, 13>(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = shuffle<2, 10, 3, 11, 6, 14, 7, 15>(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; i++)
    for (int h = 0; h < 2; h++) {
      u[4 * i + 2 * h] = shuffle<0, 1, 8, 9, 4, 5, 12, 13>(t[4 * i + h], t[4 * i + 2 + h]);
      u[4 * i + 2 * h + 1] = shuffle<2, 3, 10, 11, 6, 7, 14, 15>(t[4 * i + h], t[4 * i + 2 + h]);
    }
  for (int i = 0; i < 4; i++) {
    r[i] = shuffle<0, 1, 2, 3, 8, 9, 10, 11>(u[i], u[i + 4]);
    r[i + 4] = shuffle<4, 5, 6, 7, 12, 13, 14, 15>(u[i], u[i + 4]);
  }
}

}  // namespace

void multiply(float* c, int ldc, int rows, int columns, const float* a, int lda, const float* b,
              int panel_stride, int k_stride, int n_k, bool accumulate, bool wide) {
#if KVLM_AVX512_STRIPS
  if (wide && cpu_has_avx512()) {
    for (int j0 = 0; j0 < columns; j0 += 2 * kPanelColumns) {
      const int n_columns = std::min(2 * kPanelColumns, columns - j0);
      const float* panels = b + size_t(j0 / kPanelColumns) * panel_stride;
      auto tile = [&](auto R, int r0, int n_rows) {
        float* out = c + size_t(r0) * ldc + j0;
        const float* strip = a + size_t(r0) * lda;
        if (n_columns > kPanelColumns)
          strips_times_panels_avx512<R(), 2>(out, ldc, n_rows, n_columns, strip, lda, panels,
                                             panel_stride, k_stride, n_k, accumulate);
        else
          strips_times_panels_avx512<R(), 1>(out, ldc, n_rows, n_columns, strip, lda, panels,
                                             panel_stride, k_stride, n_k, accumulate);
      };
      int r0 = 0;
      for (; r0 + 2 * kStripRows <= rows; r0 += 2 * kStripRows)
        tile(std::integral_constant<int, 2 * kStripRows>{}, r0, 2 * kStripRows);
      for (; r0 < rows; r0 += kStripRows)
        tile(std::integral_constant<int, kStripRows>{}, r0, std::min(kStripRows, rows - r0));
    }
    return;
  }
#else
  (void)wide;
#endif
  for (int j0 = 0; j0 < columns; j0 += kPanelColumns)
    for (int r0 = 0; r0 < rows; r0 += kStripRows)
      strip_times_panel(c + size_t(r0) * ldc + j0, ldc, std::min(kStripRows, rows - r0),
                        std::min(kPanelColumns, columns - j0), a + size_t(r0) * lda, lda,
                        b + size_t(j0 / kPanelColumns) * panel_stride, k_stride, n_k, accumulate);
}

// 8 x 8 tiles where 8 rows and 8 values of k are left (a short prefill's panels cost as much
// to build as to use, one value at a time), one value at a time elsewhere.
KVLM_SIMD_CLONES void interleave(const float* rows, int n, int n_k, int row_stride, int width,
                                 float* out) {
  for (int b0 = 0; b0 < n; b0 += width) {
    float* block = out + size_t(b0) * n_k;
    const float* first = rows + size_t(b0) * row_stride;
    const int in_block = std::min(width, n - b0);
    int i0 = 0;
    for (; i0 + kLanes <= in_block && width % kLanes == 0; i0 += kLanes) {
      int k = 0;
      for (; k + kLanes <= n_k; k += kLanes) {
        Vec r[kLanes];
        for (int i = 0; i < kLanes; i++) r[i] = load(first + size_t(i0 + i) * row_stride + k);
        transpose8(r);
        for (int j = 0; j < kLanes; j++) simd::store(block + size_t(k + j) * width + i0, r[j]);
      }
      for (; k < n_k; k++)
        for (int i = i0; i < i0 + kLanes; i++) block[size_t(k) * width + i] = first[size_t(i) * row_stride + k];
    }
    for (int k = 0; k < n_k; k++) {
      float* dst = block + size_t(k) * width;
      for (int i = i0; i < in_block; i++) dst[i] = first[size_t(i) * row_stride + k];
      for (int i = in_block; i < width; i++) dst[i] = 0.0f;
    }
  }
}

}  // namespace kvlm::strips
