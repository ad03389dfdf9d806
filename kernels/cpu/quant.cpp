// CPU kernels of the float types and the 32-weight block types (kernels/cpu/quant.h is the
// interface; the k-quants live in quant_k.cpp), and the dispatch of every type.
//
// A 32-block's dot product with a block of quantised activations x_i ~= dx * p_i splits
// into integer multiply-adds and one float multiply: with w_i = dw * q_i (+ m),
//   sum w_i x_i = dw * dx * sum q_i p_i  (+ m * dx * sum p_i),
// where dx * sum p_i is the activation block's precomputed `sum`.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/cpu/quant_impl.h"
#include "kernels/quant_blocks.h"
#include "model/dequant.h"

namespace kvlm::quant {
namespace {

// ------------------------------------------------------------------- float types

template <WeightType T>
using FloatBits = std::conditional_t<T == WeightType::F32, float, uint16_t>;

template <WeightType T>
float to_f32(FloatBits<T> v) {
  if constexpr (T == WeightType::F32) return v;
  else if constexpr (T == WeightType::F16) return f16_to_f32(v);
  else return bf16_to_f32(v);
}

template <WeightType T>
void dequantize_float(const void* src, float* dst, int64_t n) {
  const auto* w = static_cast<const FloatBits<T>*>(src);
  for (int64_t i = 0; i < n; i++) dst[i] = to_f32<T>(w[i]);
}

template <WeightType T>
float dot_float_scalar(const void* w_row, const void* x_row, int n) {
  const auto* w = static_cast<const FloatBits<T>*>(w_row);
  const auto* x = static_cast<const float*>(x_row);
  float sum = 0;
  for (int i = 0; i < n; i++) sum += to_f32<T>(w[i]) * x[i];
  return sum;
}

// Row j of rows of a float type lying row_bytes apart.
template <WeightType T>
const FloatBits<T>* row_at(const void* rows, size_t row_bytes, int j) {
  return reinterpret_cast<const FloatBits<T>*>(static_cast<const uint8_t*>(rows) + j * row_bytes);
}

template <WeightType T>
void dots_float_scalar(const void* w, size_t row_bytes, int n_rows, const float* x, int n_x,
                       int n, float* out, int ld_out) {
  for (int i = 0; i < n_x; i++)
    for (int j = 0; j < n_rows; j++)
      out[size_t(i) * ld_out + j] = dot_float_scalar<T>(row_at<T>(w, row_bytes, j), x + size_t(i) * n, n);
}

template <WeightType T>
void weighted_sums_float_scalar(const void* w, size_t row_bytes, int n_rows, const float* p,
                                int ld_p, int n_x, int n, float* acc) {
  for (int i = 0; i < n_x; i++)
    for (int j = 0; j < n_rows; j++) {
      const FloatBits<T>* wj = row_at<T>(w, row_bytes, j);
      const float weight = p[size_t(i) * ld_p + j];
      for (int t = 0; t < n; t++) acc[size_t(i) * n + t] += weight * to_f32<T>(wj[t]);
    }
}

// ------------------------------------------------------------------- 32-weight blocks

// How a block type stores its integers: weight i = d * (field_i - offset), or
// d * field_i + m for the types with a minimum, where field_i is unsigned with `bits` bits
// (Q8_0's fields are the signed integers themselves).
template <class Block>
struct Layout;
template <>
struct Layout<BlockQ4_0> {
  static constexpr int bits = 4, offset = 8;
  static constexpr bool has_min = false;
};
template <>
struct Layout<BlockQ4_1> {
  static constexpr int bits = 4, offset = 0;
  static constexpr bool has_min = true;
};
template <>
struct Layout<BlockQ5_0> {
  static constexpr int bits = 5, offset = 16;
  static constexpr bool has_min = false;
};
template <>
struct Layout<BlockQ5_1> {
  static constexpr int bits = 5, offset = 0;
  static constexpr bool has_min = true;
};
template <>
struct Layout<BlockQ8_0> {
  static constexpr int bits = 8, offset = 0;
  static constexpr bool has_min = false;
};

uint32_t high_bits(const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);
  return bits;
}

// Weight i's integer q_i (before d, and m where there is one).
int weight_int(const BlockQ8_0& b, int i) { return b.qs[i]; }
template <class Block>
int weight_int(const Block& b, int i) {
  const int half = kBlock / 2;
  int field = (i < half ? b.qs[i] : b.qs[i - half] >> 4) & 0xF;
  if constexpr (Layout<Block>::bits == 5) field |= ((high_bits(b.qh) >> i) & 1) << 4;
  return field - Layout<Block>::offset;
}

template <class Block>
void dequantize_blocks(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const Block*>(src);
  for (int64_t b = 0; b < n / kBlock; b++, dst += kBlock) {
    const float d = f16_to_f32(blocks[b].d);
    if constexpr (Layout<Block>::has_min) {
      const float m = f16_to_f32(blocks[b].m);
      for (int i = 0; i < kBlock; i++) dst[i] = d * float(weight_int(blocks[b], i)) + m;
    } else {
      for (int i = 0; i < kBlock; i++) dst[i] = d * float(weight_int(blocks[b], i));
    }
  }
}

// The reference: the format's arithmetic written out, one weight at a time.
template <class Block>
float dot_blocks_scalar(const void* w_row, const void* x_row, int n) {
  const auto* w = static_cast<const Block*>(w_row);
  const auto* x = static_cast<const BlockQ8_32*>(x_row);
  float sum = 0;
  for (int b = 0; b < n / kBlock; b++) {
    int products = 0;
    for (int i = 0; i < kBlock; i++) products += weight_int(w[b], i) * x[b].qs[i];
    sum += f16_to_f32(w[b].d) * x[b].d * float(products);
    if constexpr (Layout<Block>::has_min) sum += f16_to_f32(w[b].m) * x[b].sum;
  }
  return sum;
}

// ------------------------------------------------------------------- AVX2

#define KVLM_AVX2 __attribute__((target("avx2,fma,f16c")))

KVLM_AVX2 inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 weights of a float type as float32.
template <WeightType T>
KVLM_AVX2 inline __m256 load8(const FloatBits<T>* p) {
  if constexpr (T == WeightType::F32) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i bits = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (T == WeightType::F16) return _mm256_cvtph_ps(bits);
    else return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bits), 16));
  }
}

template <WeightType T>
KVLM_AVX2 void dequantize_float_avx2(const void* src, float* dst, int64_t n) {
  const auto* w = static_cast<const FloatBits<T>*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8<T>(w + i));
  for (; i < n; i++) dst[i] = to_f32<T>(w[i]);
}

template <WeightType T>
KVLM_AVX2 float dot_float_avx2(const void* w_row, const void* x_row, int n) {
  const auto* w = static_cast<const FloatBits<T>*>(w_row);
  const auto* x = static_cast<const float*>(x_row);
  __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                   _mm256_setzero_ps()};
  int i = 0;
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; k++)
      acc[k] = _mm256_fmadd_ps(load8<T>(w + i + 8 * k), _mm256_loadu_ps(x + i + 8 * k), acc[k]);
  for (; i + 8 <= n; i += 8)
    acc[0] = _mm256_fmadd_ps(load8<T>(w + i), _mm256_loadu_ps(x + i), acc[0]);
  float sum = horizontal_sum(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]),
                                           _mm256_add_ps(acc[2], acc[3])));
  for (; i < n; i++) sum += to_f32<T>(w[i]) * x[i];
  return sum;
}

// Lane k: the sum of v[k]'s 8 lanes. Three rounds of pairwise sums, where summing each
// vector on its own takes a chain of dependent additions per vector.
KVLM_AVX2 inline __m256 lane_sums(const __m256 v[8]) {
  const __m256 pairs01 = _mm256_hadd_ps(v[0], v[1]), pairs23 = _mm256_hadd_ps(v[2], v[3]);
  const __m256 pairs45 = _mm256_hadd_ps(v[4], v[5]), pairs67 = _mm256_hadd_ps(v[6], v[7]);
  // Lanes 0-3: the low halves' sums of v[0..3] (of v[4..7] below); lanes 4-7 the high halves'.
  const __m256 quads0123 = _mm256_hadd_ps(pairs01, pairs23);
  const __m256 quads4567 = _mm256_hadd_ps(pairs45, pairs67);
  return _mm256_add_ps(_mm256_permute2f128_ps(quads0123, quads4567, 0x20),
                       _mm256_permute2f128_ps(quads0123, quads4567, 0x31));
}

// R rows of x against K rows of w: each 8 weights of a w row are loaded (and widened) once
// for the R rows, each 8 numbers of an x row once for the K rows; the R x K sums stay in
// registers until the end. The R x K sums, R vectors of x and one w vector fill AVX2's 16
// vector registers at most: 3 rows x 4 keys (a GQA group of 3) uses them all.
template <WeightType T, int R, int K>
KVLM_AVX2 void dots_tile_avx2(const uint8_t* w, size_t row_bytes, const float* x, int n,
                              float* out, int ld_out) {
  __m256 acc[R * K];
  // Unrolled, so that the sums start in registers (GCC zeroes an array of 12 in memory).
#pragma GCC unroll 16
  for (__m256& a : acc) a = _mm256_setzero_ps();
  // Decode reads the keys from memory (at 2K tokens, 23 MB of SmolLM2's keys per step, after
  // the weights have passed through the caches): each row asks for the bytes 2 KiB on.
  for (int j = 0; j < K; j++)
    for (size_t b = 0; b < row_bytes; b += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w + j * row_bytes + b) + detail::kPrefetchBytes,
                   _MM_HINT_T0);
  int d = 0;
  for (; d + 8 <= n; d += 8) {
    __m256 xs[R];
    for (int i = 0; i < R; i++) xs[i] = _mm256_loadu_ps(x + size_t(i) * n + d);
    for (int j = 0; j < K; j++) {
      const __m256 row = load8<T>(row_at<T>(w, row_bytes, j) + d);
      for (int i = 0; i < R; i++) acc[i * K + j] = _mm256_fmadd_ps(row, xs[i], acc[i * K + j]);
    }
  }
  // Reduced 8 sums at a time, the last group padded with zeros.
  constexpr int kGroups = (R * K + 7) / 8;
  float sums[8 * kGroups];
  for (int g = 0; g < kGroups; g++) {
    __m256 group[8];
    for (int k = 0; k < 8; k++)
      group[k] = 8 * g + k < R * K ? acc[8 * g + k] : _mm256_setzero_ps();
    _mm256_storeu_ps(sums + 8 * g, lane_sums(group));
  }
  for (int i = 0; i < R; i++)
    for (int j = 0; j < K; j++) {
      float sum = sums[i * K + j];
      if (d < n) {  // head dims that are not a multiple of 8
        const FloatBits<T>* wj = row_at<T>(w, row_bytes, j);
        for (int t = d; t < n; t++) sum += to_f32<T>(wj[t]) * x[size_t(i) * n + t];
      }
      out[size_t(i) * ld_out + j] = sum;
    }
}

// R rows of x against every row of w, K rows of w at a time: as many as keep the R x K
// sums, R vectors of x and a w vector in registers.
template <WeightType T, int R>
KVLM_AVX2 void dots_rows_avx2(const uint8_t* w, size_t row_bytes, int n_rows, const float* x,
                              int n, float* out, int ld_out) {
  constexpr int K = R == 1 ? 8 : R == 2 ? 6 : R == 3 ? 4 : 2;
  int j = 0;
  for (; j + K <= n_rows; j += K)
    dots_tile_avx2<T, R, K>(w + j * row_bytes, row_bytes, x, n, out + j, ld_out);
  for (; j < n_rows; j++) dots_tile_avx2<T, R, 1>(w + j * row_bytes, row_bytes, x, n, out + j, ld_out);
}

// pass(R, i) for the passes over n_x rows, 4 rows at a time and then the rest: i the
// pass's first row, R its number of rows as a compile-time constant.
template <class Pass>
KVLM_AVX2 inline void in_passes_of_4(int n_x, Pass&& pass) {
  for (int i = 0; i < n_x; i += 4) {
    switch (std::min(4, n_x - i)) {
      case 1: pass(std::integral_constant<int, 1>{}, i); break;
      case 2: pass(std::integral_constant<int, 2>{}, i); break;
      case 3: pass(std::integral_constant<int, 3>{}, i); break;
      default: pass(std::integral_constant<int, 4>{}, i);
    }
  }
}

template <WeightType T>
KVLM_AVX2 void dots_float_avx2(const void* w, size_t row_bytes, int n_rows, const float* x,
                               int n_x, int n, float* out, int ld_out) {
  in_passes_of_4(n_x, [&](auto rows, int i) KVLM_AVX2 {
    dots_rows_avx2<T, rows()>(static_cast<const uint8_t*>(w), row_bytes, n_rows,
                              x + size_t(i) * n, n, out + size_t(i) * ld_out, ld_out);
  });
}

// R rows of acc, columns [d, d + 8 * V), over every row of w: the R x V sums stay in
// registers while the w rows pass, each 8 weights widened once for the R rows. The R x V
// sums, R broadcast weights and one w vector fill the 16 vector registers at most.
template <WeightType T, int R, int V>
KVLM_AVX2 inline void weighted_sums_columns_avx2(const uint8_t* w, size_t row_bytes, int n_rows,
                                                 const float* p, int ld_p, int n, float* acc, int d) {
  __m256 sums[R][V];
  for (int i = 0; i < R; i++)
    for (int k = 0; k < V; k++) sums[i][k] = _mm256_loadu_ps(acc + size_t(i) * n + d + 8 * k);
  for (int j = 0; j < n_rows; j++) {
    const FloatBits<T>* wj = row_at<T>(w, row_bytes, j) + d;
    __m256 weights[R];
    for (int i = 0; i < R; i++) weights[i] = _mm256_broadcast_ss(p + size_t(i) * ld_p + j);
    for (int k = 0; k < V; k++) {
      const __m256 row = load8<T>(wj + 8 * k);
      for (int i = 0; i < R; i++) sums[i][k] = _mm256_fmadd_ps(row, weights[i], sums[i][k]);
    }
  }
  for (int i = 0; i < R; i++)
    for (int k = 0; k < V; k++) _mm256_storeu_ps(acc + size_t(i) * n + d + 8 * k, sums[i][k]);
}

template <WeightType T, int R>
KVLM_AVX2 void weighted_sums_rows_avx2(const uint8_t* w, size_t row_bytes, int n_rows,
                                       const float* p, int ld_p, int n, float* acc) {
  constexpr int V = R == 1 ? 8 : R <= 3 ? 4 : 2;
  int d = 0;
  for (; d + 8 * V <= n; d += 8 * V)
    weighted_sums_columns_avx2<T, R, V>(w, row_bytes, n_rows, p, ld_p, n, acc, d);
  for (; d + 8 <= n; d += 8)
    weighted_sums_columns_avx2<T, R, 1>(w, row_bytes, n_rows, p, ld_p, n, acc, d);
  for (; d < n; d++)
    for (int i = 0; i < R; i++)
      for (int j = 0; j < n_rows; j++)
        acc[size_t(i) * n + d] += p[size_t(i) * ld_p + j] * to_f32<T>(row_at<T>(w, row_bytes, j)[d]);
}

template <WeightType T>
KVLM_AVX2 void weighted_sums_float_avx2(const void* w, size_t row_bytes, int n_rows, const float* p,
                                        int ld_p, int n_x, int n, float* acc) {
  in_passes_of_4(n_x, [&](auto rows, int i) KVLM_AVX2 {
    weighted_sums_rows_avx2<T, rows()>(static_cast<const uint8_t*>(w), row_bytes, n_rows,
                                       p + size_t(i) * ld_p, ld_p, n, acc + size_t(i) * n);
  });
}

// Byte i of the result is 0x10 where bit i of qh is set (the 5th bit of weight i).
KVLM_AVX2 inline __m256i fifth_bits(const uint8_t qh[4]) {
  // Byte i takes qh's byte i / 8, then keeps only its bit i % 8.
  const __m256i spread = _mm256_shuffle_epi8(
      _mm256_set1_epi32(static_cast<int>(high_bits(qh))),
      _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0));
  const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201));
  const __m256i is_set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
  return _mm256_and_si256(is_set, _mm256_set1_epi8(0x10));
}

// The products u_i * s_i of unsigned bytes u and signed bytes s, summed 4 neighbours at a
// time into 8 lanes, as floats.
KVLM_AVX2 inline __m256 multiply_add_bytes(__m256i u, __m256i s) {
  const __m256i pairs = _mm256_maddubs_epi16(u, s);  // |pair| <= 2 * 128 * 127: no saturation
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// The integer products of one block with the activations p, in 8 float lanes. The byte
// multiply-add takes one unsigned operand: the 4- and 5-bit types give it their unsigned
// fields and leave the offset to the caller; Q8_0 moves q's signs onto p.
KVLM_AVX2 inline __m256 block_products(const BlockQ8_0& w, __m256i p) {
  const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qs));
  return multiply_add_bytes(_mm256_sign_epi8(q, q), _mm256_sign_epi8(p, q));
}
template <class Block>
KVLM_AVX2 inline __m256 block_products(const Block& w, __m256i p) {
  // Low nibbles are weights 0..15, high nibbles 16..31: the 16 bytes in both halves, the
  // upper one shifted right by 4.
  const __m256i packed =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.qs)));
  __m256i fields = _mm256_and_si256(_mm256_srlv_epi64(packed, _mm256_set_epi64x(4, 4, 0, 0)),
                                    _mm256_set1_epi8(0x0F));
  if constexpr (Layout<Block>::bits == 5) fields = _mm256_or_si256(fields, fifth_bits(w.qh));
  return multiply_add_bytes(fields, p);
}

// A block's 32 integers q_i as signed bytes (the fields less the offset).
template <class Block>
KVLM_AVX2 inline __m256i block_ints(const Block& w) {
  if constexpr (std::is_same_v<Block, BlockQ8_0>) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.qs));
  } else {
    const __m256i packed =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.qs)));
    __m256i fields = _mm256_and_si256(_mm256_srlv_epi64(packed, _mm256_set_epi64x(4, 4, 0, 0)),
                                      _mm256_set1_epi8(0x0F));
    if constexpr (Layout<Block>::bits == 5) fields = _mm256_or_si256(fields, fifth_bits(w.qh));
    return _mm256_sub_epi8(fields, _mm256_set1_epi8(Layout<Block>::offset));
  }
}

// The prefill's rebuild of quantised rows as float32 (scalar: ~7% of a 512-token prefill of
// the default model). A multiply, then an add: the same two roundings as the scalar
// version, so the floats are the same. The scales are widened by F16C in registers: a call
// to f16_to_f32 for every 8 weights made the rebuild 8.6% of the time `perf` saw in the
// prefill's matrix products, against 1.5% now (Q4_1, 512 tokens).
template <class Block>
KVLM_AVX2 void dequantize_blocks_avx2(const void* src, float* dst, int64_t n) {
  const auto* blocks = static_cast<const Block*>(src);
  for (int64_t b = 0; b < n / kBlock; b++, dst += kBlock) {
    const __m256i q = block_ints(blocks[b]);
    const __m128i halves[2] = {_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1)};
    const __m256 d = _mm256_set1_ps(_cvtsh_ss(blocks[b].d));
    __m256 m = _mm256_setzero_ps();
    if constexpr (Layout<Block>::has_min) m = _mm256_set1_ps(_cvtsh_ss(blocks[b].m));
    for (int k = 0; k < 4; k++) {
      const __m128i eight = k % 2 ? _mm_srli_si128(halves[k / 2], 8) : halves[k / 2];
      __m256 w = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(eight)));
      if constexpr (Layout<Block>::has_min) w = _mm256_add_ps(w, m);
      _mm256_storeu_ps(dst + 8 * k, w);
    }
  }
}

// [dw * dx, c * x.sum, 0, 0], c being m for the types with a minimum and dw for the others:
// the scale of the block's integer products, and the term that does not depend on the
// weights (the minimum's, or the offset's that the unsigned fields left out:
// sum (f_i - offset) p_i = sum f_i p_i - offset * sum p_i), which the row adds up once.
template <class Block>
KVLM_AVX2 inline __m128 block_scales(const Block& w, const BlockQ8_32& x) {
  __m128i halves;
  if constexpr (Layout<Block>::has_min) {
    static_assert(offsetof(Block, m) == offsetof(Block, d) + 2);
    uint32_t d_and_m;
    std::memcpy(&d_and_m, &w.d, sizeof d_and_m);
    halves = _mm_cvtsi32_si128(static_cast<int>(d_and_m));
  } else {
    halves = _mm_set1_epi16(static_cast<int16_t>(w.d));
  }
  static_assert(offsetof(BlockQ8_32, sum) == offsetof(BlockQ8_32, d) + 4);
  const __m128 d_and_sum = _mm_castpd_ps(_mm_load_sd(reinterpret_cast<const double*>(&x.d)));
  return _mm_mul_ps(_mm_cvtph_ps(halves), d_and_sum);
}

template <class Block>
KVLM_AVX2 inline void add_block(const Block& w, const BlockQ8_32& x, __m256& acc,
                                __m128& constants) {
  const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qs));
  const __m128 scales = block_scales(w, x);
  acc = _mm256_fmadd_ps(_mm256_broadcastss_ps(scales), block_products(w, p), acc);
  constants = _mm_add_ps(constants, scales);
}

// A row's sum from its products' accumulator and its constants ([_, c * x.sum] summed).
template <class Block>
KVLM_AVX2 inline float row_sum(__m256 products, __m128 constants) {
  const float p = horizontal_sum(products);
  const float constant = _mm_cvtss_f32(_mm_movehdup_ps(constants));
  if constexpr (Layout<Block>::has_min) return p + constant;
  else if constexpr (Layout<Block>::offset != 0) return p - Layout<Block>::offset * constant;
  else return p;
}

// Two blocks per step into separate accumulators, so that neither waits on the other's
// additions; one horizontal sum per row. (Measured on Zen 3, Q4_1 at 576 columns: 27 ns
// per row, against 35 for one block per step with scalar scales and 128-bit unpacking.)
template <class Block>
KVLM_AVX2 float dot_blocks_avx2(const void* w_row, const void* x_row, int n) {
  const auto* w = static_cast<const Block*>(w_row);
  const auto* x = static_cast<const BlockQ8_32*>(x_row);
  const int blocks = n / kBlock;
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m128 constants0 = _mm_setzero_ps(), constants1 = _mm_setzero_ps();
  int b = 0;
  for (; b + 2 <= blocks; b += 2) {
    _mm_prefetch(reinterpret_cast<const char*>(&w[b]) + detail::kPrefetchBytes, _MM_HINT_T0);
    add_block(w[b], x[b], acc0, constants0);
    add_block(w[b + 1], x[b + 1], acc1, constants1);
  }
  if (b < blocks) add_block(w[b], x[b], acc0, constants0);
  return row_sum<Block>(_mm256_add_ps(acc0, acc1), _mm_add_ps(constants0, constants1));
}

// kDotRows rows: the rows' accumulators are the independent chains that two blocks per
// step give one row, and x's block is loaded once for all. (Measured on this Zen CPU, Q4_1
// at 576 columns, one thread: 22 ns per row against 27 one row at a time.)
//
// The rows lie back to back, but read side by side they are four streams, which the
// hardware prefetcher follows less well than one: from memory, four Q8_0 rows, each asking
// for its own bytes ahead, ran at 2/3 of the speed of one row at a time. So each step asks
// for its share of the next group of rows, in order, and the group ahead arrives as one
// stream. Q8_0 from memory (tests/bench/quant_dot.cpp, five runs): two threads 25-28 GB/s
// against 21-27 one row at a time, one thread about even (14-17 against 16-17); decode of
// the Q8_0 file, which runs both threads, +9%. The group asked for is the first at least
// detail::kPrefetchBytes ahead.
template <class Block>
KVLM_AVX2 void dot_rows_avx2(const void* w_rows, size_t row_bytes, const void* x_row, int n,
                             float* out) {
  const auto* x = static_cast<const BlockQ8_32*>(x_row);
  const Block* w[kDotRows];
  for (int r = 0; r < kDotRows; r++)
    w[r] = reinterpret_cast<const Block*>(static_cast<const uint8_t*>(w_rows) + r * row_bytes);
  __m256 acc[kDotRows];
  __m128 constants[kDotRows];
  for (int r = 0; r < kDotRows; r++) {
    acc[r] = _mm256_setzero_ps();
    constants[r] = _mm_setzero_ps();
  }
  const int blocks = n / kBlock;
  const size_t group_bytes = kDotRows * row_bytes;
  const size_t groups_ahead = (detail::kPrefetchBytes + group_bytes - 1) / group_bytes;
  const char* next_group = static_cast<const char*>(w_rows) + groups_ahead * group_bytes;
  for (int b = 0; b < blocks; b++) {
    const size_t ahead_end = (b + 1) * group_bytes / blocks;
    for (size_t line = b * group_bytes / blocks / 64 * 64; line < ahead_end; line += 64)
      _mm_prefetch(next_group + line, _MM_HINT_T0);
#pragma GCC unroll 4
    for (int r = 0; r < kDotRows; r++) add_block(w[r][b], x[b], acc[r], constants[r]);
  }
  for (int r = 0; r < kDotRows; r++) out[r] = row_sum<Block>(acc[r], constants[r]);
}

// ------------------------------------------------------------------- AVX-512

// Decode attention's products again (dots_function, weighted_sums_function), in 16-float
// vectors: half the instructions a value of the AVX2 versions, and with twice the
// registers, tiles of twice the keys. Where the keys and values are in cache that is what
// bounds attention: one layer's cache attended again and again took 1.17-1.18x less time
// at 1K-4K keys on a Zen 5 (tests/bench/decode_attention, best of 6 alternating runs);
// from memory, about the same time. Every other kernel at this level is the AVX2 one
// (decode's weight products already read memory as fast as it delivers).
#define KVLM_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

// The first n (< 16) lanes, or all 16.
inline __mmask16 first_lanes(int n) {
  return n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
}

// 16 weights of a float type as float32; with `lanes`, only those are read (the rest 0).
template <WeightType T>
KVLM_AVX512 inline __m512 load16(const FloatBits<T>* p, __mmask16 lanes = 0xFFFF) {
  if constexpr (T == WeightType::F32) {
    return lanes == 0xFFFF ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes, p);
  } else {
    const __m256i bits = lanes == 0xFFFF ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
                                         : _mm256_maskz_loadu_epi16(lanes, p);
    // The zero-masking forms with every lane set compile to the plain instructions, whose
    // intrinsics start from GCC 12's "undefined" vector, which -Wmaybe-uninitialized flags.
    if constexpr (T == WeightType::F16) return _mm512_maskz_cvtph_ps(0xFFFF, bits);
    const __m512i widened = _mm512_maskz_cvtepu16_epi32(0xFFFF, bits);
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, widened, 16));
  }
}

// dots_tile_avx2 in 16 lanes: R rows of x against K rows of w, the R x K sums in registers
// (3 rows x 8 keys: 24 of the 32, with 3 of x and one of w), the last 16 columns or fewer
// read under a mask.
template <WeightType T, int R, int K>
KVLM_AVX512 void dots_tile_avx512(const uint8_t* w, size_t row_bytes, const float* x, int n,
                                  float* out, int ld_out) {
  __m512 acc[R * K];
#pragma GCC unroll 32
  for (__m512& a : acc) a = _mm512_setzero_ps();
  for (int j = 0; j < K; j++)
    for (size_t b = 0; b < row_bytes; b += 64)
      _mm_prefetch(reinterpret_cast<const char*>(w + j * row_bytes + b) + detail::kPrefetchBytes,
                   _MM_HINT_T0);
  auto columns = [&](int d, __mmask16 lanes) KVLM_AVX512 {
    __m512 xs[R];
    for (int i = 0; i < R; i++) xs[i] = load16<WeightType::F32>(x + size_t(i) * n + d, lanes);
    for (int j = 0; j < K; j++) {
      const __m512 row = load16<T>(row_at<T>(w, row_bytes, j) + d, lanes);
      for (int i = 0; i < R; i++) acc[i * K + j] = _mm512_fmadd_ps(row, xs[i], acc[i * K + j]);
    }
  };
  int d = 0;
  for (; d + 16 <= n; d += 16) columns(d, 0xFFFF);
  if (d < n) columns(d, first_lanes(n - d));
  // Each sum's halves added, then reduced 8 sums at a time as in AVX2. (The halves taken
  // by masked extracts: GCC 12's plain cast and extract start from an "undefined" vector
  // that -Wuninitialized flags; the low one compiles to no instruction all the same.)
  constexpr int kGroups = (R * K + 7) / 8;
  float sums[8 * kGroups];
  for (int g = 0; g < kGroups; g++) {
    __m256 group[8];
    for (int k = 0; k < 8; k++) {
      const __m512 a = 8 * g + k < R * K ? acc[8 * g + k] : _mm512_setzero_ps();
      group[k] = _mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, a, 0),
                               _mm512_maskz_extractf32x8_ps(0xFF, a, 1));
    }
    _mm256_storeu_ps(sums + 8 * g, lane_sums(group));
  }
  for (int i = 0; i < R; i++)
    for (int j = 0; j < K; j++) out[size_t(i) * ld_out + j] = sums[i * K + j];
}

template <WeightType T, int R>
KVLM_AVX512 void dots_rows_avx512(const uint8_t* w, size_t row_bytes, int n_rows, const float* x,
                                  int n, float* out, int ld_out) {
  constexpr int K = R == 1 ? 16 : R == 2 ? 12 : R == 3 ? 8 : 6;
  int j = 0;
  for (; j + K <= n_rows; j += K)
    dots_tile_avx512<T, R, K>(w + j * row_bytes, row_bytes, x, n, out + j, ld_out);
  for (; j < n_rows; j++)
    dots_tile_avx512<T, R, 1>(w + j * row_bytes, row_bytes, x, n, out + j, ld_out);
}

template <WeightType T>
KVLM_AVX512 void dots_float_avx512(const void* w, size_t row_bytes, int n_rows, const float* x,
                                   int n_x, int n, float* out, int ld_out) {
  in_passes_of_4(n_x, [&](auto rows, int i) KVLM_AVX512 {
    dots_rows_avx512<T, rows()>(static_cast<const uint8_t*>(w), row_bytes, n_rows,
                                x + size_t(i) * n, n, out + size_t(i) * ld_out, ld_out);
  });
}

// R rows of acc, columns [d, d + 16 * V), the last vector's `last_lanes` of them, over
// every row of w: weighted_sums_columns_avx2 in 16 lanes (4 rows x 64 columns: 16 sums, 4
// broadcast weights and a w vector in registers).
template <WeightType T, int R, int V>
KVLM_AVX512 inline void weighted_sums_columns_avx512(const uint8_t* w, size_t row_bytes,
                                                     int n_rows, const float* p, int ld_p, int n,
                                                     float* acc, int d, __mmask16 last_lanes) {
  auto lanes = [&](int k) { return k == V - 1 ? last_lanes : __mmask16(0xFFFF); };
  __m512 sums[R][V];
  for (int i = 0; i < R; i++)
    for (int k = 0; k < V; k++)
      sums[i][k] = load16<WeightType::F32>(acc + size_t(i) * n + d + 16 * k, lanes(k));
  for (int j = 0; j < n_rows; j++) {
    const FloatBits<T>* wj = row_at<T>(w, row_bytes, j) + d;
    __m512 weights[R];
    for (int i = 0; i < R; i++) weights[i] = _mm512_set1_ps(p[size_t(i) * ld_p + j]);
    for (int k = 0; k < V; k++) {
      const __m512 row = load16<T>(wj + 16 * k, lanes(k));
      for (int i = 0; i < R; i++) sums[i][k] = _mm512_fmadd_ps(row, weights[i], sums[i][k]);
    }
  }
  for (int i = 0; i < R; i++)
    for (int k = 0; k < V; k++)
      _mm512_mask_storeu_ps(acc + size_t(i) * n + d + 16 * k, lanes(k), sums[i][k]);
}

template <WeightType T, int R>
KVLM_AVX512 void weighted_sums_rows_avx512(const uint8_t* w, size_t row_bytes, int n_rows,
                                           const float* p, int ld_p, int n, float* acc) {
  constexpr int V = 4;
  int d = 0;
  for (; d + 16 * V <= n; d += 16 * V)
    weighted_sums_columns_avx512<T, R, V>(w, row_bytes, n_rows, p, ld_p, n, acc, d, 0xFFFF);
  for (; d < n; d += 16)
    weighted_sums_columns_avx512<T, R, 1>(w, row_bytes, n_rows, p, ld_p, n, acc, d,
                                          first_lanes(n - d));
}

template <WeightType T>
KVLM_AVX512 void weighted_sums_float_avx512(const void* w, size_t row_bytes, int n_rows,
                                            const float* p, int ld_p, int n_x, int n, float* acc) {
  in_passes_of_4(n_x, [&](auto rows, int i) KVLM_AVX512 {
    weighted_sums_rows_avx512<T, rows()>(static_cast<const uint8_t*>(w), row_bytes, n_rows,
                                         p + size_t(i) * ld_p, ld_p, n, acc + size_t(i) * n);
  });
}

// ------------------------------------------------------------------- activations

// Q8_32 and Q8_256: per block d = max |x| / 127 and q_i = x_i / d rounded to nearest (ties
// to even, the default rounding mode), so the largest value maps to +-127 and no q is -128.
// The scalar and AVX2 versions do the same IEEE operations, so they write the same bytes.
// The clamp only acts when d is subnormal, too coarse to divide max |x| back to 127.

// One block of n values into q; returns d.
float round_block(const float* x, int n, int8_t* q) {
  float max_abs = 0;
  for (int i = 0; i < n; i++) max_abs = std::max(max_abs, std::fabs(x[i]));
  const float d = max_abs / 127;
  for (int i = 0; i < n; i++)
    q[i] = static_cast<int8_t>(d == 0 ? 0 : std::nearbyint(std::clamp(x[i] / d, -127.0f, 127.0f)));
  return d;
}

// max |x_i| over n values, n a multiple of 8.
KVLM_AVX2 inline float max_abs_avx2(const float* x, int n) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f);
  __m256 max_abs = _mm256_setzero_ps();
  for (int i = 0; i < n; i += 8)
    max_abs = _mm256_max_ps(max_abs, _mm256_andnot_ps(sign_bit, _mm256_loadu_ps(x + i)));
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(max_abs), _mm256_extractf128_ps(max_abs, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// 32 values divided by d (d > 0), rounded and written as bytes to out; the rounded values
// stay in q[4] as int32, 8 each, for the caller's sums.
KVLM_AVX2 inline void round_32_avx2(const float* x, float d, int8_t* out, __m256i q[4]) {
  const __m256 step = _mm256_set1_ps(d), lo = _mm256_set1_ps(-127), hi = _mm256_set1_ps(127);
  for (int k = 0; k < 4; k++) {  // the conversion rounds in the current (default) mode
    const __m256 scaled = _mm256_div_ps(_mm256_loadu_ps(x + 8 * k), step);
    q[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(scaled, lo), hi));
  }
  // Narrowing packs interleave the 128-bit halves; the permute puts them back in order.
  const __m256i bytes =
      _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
  const __m256i in_order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm256_permutevar8x32_epi32(bytes, in_order));
}

// The scalar version takes ~700 ns per 576 inputs (tests/bench/quant_dot.cpp), 8% of the
// time of a 192 x 576 Q4_1 matrix-vector product on one core; this one takes ~190 ns.
KVLM_AVX2 void quantize_q8_32_avx2(const float* x, BlockQ8_32* out, int n) {
  for (int b = 0; b < n / kBlock; b++, x += kBlock) {
    const float d = max_abs_avx2(x, kBlock) / 127;
    out[b].d = d;
    if (d == 0) {
      std::memset(out[b].qs, 0, sizeof out[b].qs);
      out[b].sum = 0;
      continue;
    }
    __m256i q[4];
    round_32_avx2(x, d, out[b].qs, q);
    const __m256i sums =
        _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(sums), _mm256_extracti128_si256(sums, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    out[b].sum = d * float(_mm_cvtsi128_si32(s));
  }
}

// The 8 sums of a[0] .. a[7] (eight vectors of 8 int32), in that order.
KVLM_AVX2 inline __m256i sums_of_8_avx2(const __m256i a[8]) {
  const __m256i u0 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(a[0], a[1]), _mm256_hadd_epi32(a[2], a[3]));
  const __m256i u1 =
      _mm256_hadd_epi32(_mm256_hadd_epi32(a[4], a[5]), _mm256_hadd_epi32(a[6], a[7]));
  return _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20),
                          _mm256_permute2x128_si256(u0, u1, 0x31));
}

// Q8_256 rounds the input of every k-quant matrix-vector product, on one thread while the
// others wait: the scalar version took ~0.2 ms of a 15 ms decode step of a 1.1B Q4_K_M
// model; this one is ~4x faster (tests/bench/quant_dot.cpp).
KVLM_AVX2 void quantize_q8_256_avx2(const float* x, BlockQ8_256* out, int n) {
  for (int b = 0; b < n / kSuperBlock; b++, x += kSuperBlock) {
    const float d = max_abs_avx2(x, kSuperBlock) / 127;
    out[b].d = d;
    if (d == 0) {
      std::memset(out[b].qs, 0, sizeof out[b].qs);
      std::memset(out[b].bsums, 0, sizeof out[b].bsums);
      continue;
    }
    __m256i sub_block_sums[16];  // 8 partial sums of each sub-block of 16 values
    for (int g = 0; g < kSuperBlock / 32; g++) {
      __m256i q[4];
      round_32_avx2(x + 32 * g, d, out[b].qs + 32 * g, q);
      sub_block_sums[2 * g] = _mm256_add_epi32(q[0], q[1]);
      sub_block_sums[2 * g + 1] = _mm256_add_epi32(q[2], q[3]);
    }
    // 16 int32 sums to int16, the halves put back in order as in round_32_avx2.
    const __m256i words =
        _mm256_packs_epi32(sums_of_8_avx2(sub_block_sums), sums_of_8_avx2(sub_block_sums + 8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out[b].bsums),
                        _mm256_permute4x64_epi64(words, _MM_SHUFFLE(3, 1, 2, 0)));
  }
}

}  // namespace

void detail::quantize_q8_32_scalar(const float* x, void* out, int n) {
  auto* blocks = static_cast<BlockQ8_32*>(out);
  for (int b = 0; b < n / kBlock; b++, x += kBlock) {
    blocks[b].d = round_block(x, kBlock, blocks[b].qs);
    int sum = 0;
    for (int8_t q : blocks[b].qs) sum += q;
    blocks[b].sum = blocks[b].d * float(sum);
  }
}

void detail::quantize_q8_256_scalar(const float* x, void* out, int n) {
  auto* blocks = static_cast<BlockQ8_256*>(out);
  for (int b = 0; b < n / kSuperBlock; b++, x += kSuperBlock) {
    blocks[b].d = round_block(x, kSuperBlock, blocks[b].qs);
    for (int j = 0; j < 16; j++) {
      int sum = 0;
      for (int i = 0; i < 16; i++) sum += blocks[b].qs[16 * j + i];
      blocks[b].bsums[j] = static_cast<int16_t>(sum);
    }
  }
}

namespace {

// ------------------------------------------------------------------- dispatch

template <WeightType T>
constexpr detail::TypeKernels kFloat{dequantize_float<T>,         dot_float_scalar<T>,
                                     dot_float_avx2<T>,            dequantize_float_avx2<T>,
                                     nullptr,                      dots_float_scalar<T>,
                                     dots_float_avx2<T>,           dots_float_avx512<T>,
                                     weighted_sums_float_scalar<T>, weighted_sums_float_avx2<T>,
                                     weighted_sums_float_avx512<T>};
template <class Block>
constexpr detail::TypeKernels kBlocks{dequantize_blocks<Block>, dot_blocks_scalar<Block>,
                                      dot_blocks_avx2<Block>, dequantize_blocks_avx2<Block>,
                                      dot_rows_avx2<Block>};

const detail::TypeKernels& kernels(WeightType type) {
  static const detail::TypeKernels* const table[kWeightTypes] = {
      &kFloat<WeightType::F32>, &kFloat<WeightType::F16>, &kFloat<WeightType::BF16>,
      &kBlocks<BlockQ4_0>,      &kBlocks<BlockQ4_1>,      &kBlocks<BlockQ5_0>,
      &kBlocks<BlockQ5_1>,      &kBlocks<BlockQ8_0>,      &detail::kQ2_K,
      &detail::kQ3_K,           &detail::kQ4_K,           &detail::kQ5_K,
      &detail::kQ6_K,
  };
  return *table[static_cast<int>(type)];
}

}  // namespace

void dequantize_row(WeightType type, const void* src, float* dst, int64_t n, SimdLevel level) {
  const int block_elems = weight_type_info(type).block_elems;
  if (n % block_elems != 0) {
    throw std::invalid_argument(std::string("dequantize_row: ") + std::to_string(n) + " " +
                                weight_type_name(type) + " weights are not whole blocks");
  }
  // The kernels read fields and values as typed members, which needs their alignment (4
  // bytes for f32, 2 for the rest). A GGUF file's tensors have it (they start on 32 bytes,
  // every block size is even); bytes from anywhere else (a safetensors offset, a caller's
  // buffer) are copied first.
  if (reinterpret_cast<uintptr_t>(src) % weight_alignment(type) != 0) {
    std::vector<uint8_t> aligned(size_t(n / block_elems) * weight_type_info(type).block_bytes);
    std::memcpy(aligned.data(), src, aligned.size());
    return dequantize_row(type, aligned.data(), dst, n, level);
  }
  const detail::TypeKernels& k = kernels(type);
  (level >= SimdLevel::Avx2 && k.dequantize_avx2 ? k.dequantize_avx2 : k.dequantize)(src, dst, n);
}

void dequantize_row(WeightType type, const void* src, float* dst, int64_t n) {
  static const SimdLevel widest = supported_levels().back();
  dequantize_row(type, src, dst, n, widest);
}

ActFormat act_format(WeightType type) {
  if (!is_quantized(type)) return ActFormat::F32;
  return weight_type_info(type).block_elems == kBlock ? ActFormat::Q8_32 : ActFormat::Q8_256;
}

size_t act_row_bytes(ActFormat format, int n) {
  switch (format) {
    case ActFormat::F32: return size_t(n) * sizeof(float);
    case ActFormat::Q8_32: return size_t(n / kBlock) * sizeof(BlockQ8_32);
    case ActFormat::Q8_256: return size_t(n / kSuperBlock) * sizeof(BlockQ8_256);
  }
  std::abort();
}

void quantize_activations(ActFormat format, const float* x, void* out, int n) {
  static const bool avx2 = supported_levels().back() >= SimdLevel::Avx2;
  switch (format) {
    case ActFormat::F32: std::memcpy(out, x, size_t(n) * sizeof(float)); return;
    case ActFormat::Q8_32:
      if (avx2) return quantize_q8_32_avx2(x, static_cast<BlockQ8_32*>(out), n);
      return detail::quantize_q8_32_scalar(x, out, n);
    case ActFormat::Q8_256:
      if (avx2) return quantize_q8_256_avx2(x, static_cast<BlockQ8_256*>(out), n);
      return detail::quantize_q8_256_scalar(x, out, n);
  }
}

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::Scalar: return "scalar";
    case SimdLevel::Avx2: return "avx2";
    case SimdLevel::Avx512: return "avx512";
  }
  std::abort();
}

std::vector<SimdLevel> supported_levels() {
  std::vector<SimdLevel> levels{SimdLevel::Scalar};
  __builtin_cpu_init();
  // The AVX2 kernels also convert scales with F16C, which every CPU with AVX2 and FMA has
  // (and which clang's __builtin_cpu_supports cannot name).
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) return levels;
  levels.push_back(SimdLevel::Avx2);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    levels.push_back(SimdLevel::Avx512);
  return levels;
}

DotFn dot_function(WeightType type, SimdLevel level) {
  const detail::TypeKernels& k = kernels(type);
  return level >= SimdLevel::Avx2 && k.avx2 ? k.avx2 : k.scalar;
}

DotFn dot_function(WeightType type) {
  static const SimdLevel widest = supported_levels().back();
  return dot_function(type, widest);
}

DotRowsFn dot_rows_function(WeightType type, SimdLevel level) {
  return level >= SimdLevel::Avx2 ? kernels(type).avx2_rows : nullptr;
}

// A float type's kernel at `level`: the widest of its versions (members of TypeKernels)
// that the level runs.
template <class Fn>
Fn float_kernel(const char* name, WeightType type, SimdLevel level,
                Fn detail::TypeKernels::*scalar, Fn detail::TypeKernels::*avx2,
                Fn detail::TypeKernels::*avx512) {
  const detail::TypeKernels& k = kernels(type);
  if (!(k.*scalar))
    throw std::invalid_argument(std::string(name) + ": " + weight_type_name(type) +
                                " is not a float type");
  if (level >= SimdLevel::Avx512 && k.*avx512) return k.*avx512;
  return level >= SimdLevel::Avx2 && k.*avx2 ? k.*avx2 : k.*scalar;
}

DotsFn dots_function(WeightType type, SimdLevel level) {
  return float_kernel("dots_function", type, level, &detail::TypeKernels::dots_scalar,
                      &detail::TypeKernels::dots_avx2, &detail::TypeKernels::dots_avx512);
}

DotsFn dots_function(WeightType type) {
  static const SimdLevel widest = supported_levels().back();
  return dots_function(type, widest);
}

WeightedSumsFn weighted_sums_function(WeightType type, SimdLevel level) {
  return float_kernel("weighted_sums_function", type, level,
                      &detail::TypeKernels::weighted_sums_scalar,
                      &detail::TypeKernels::weighted_sums_avx2,
                      &detail::TypeKernels::weighted_sums_avx512);
}

WeightedSumsFn weighted_sums_function(WeightType type) {
  static const SimdLevel widest = supported_levels().back();
  return weighted_sums_function(type, widest);
}

DotRowsFn dot_rows_function(WeightType type) {
  static const SimdLevel widest = supported_levels().back();
  return dot_rows_function(type, widest);
}

}  // namespace kvlm::quant
