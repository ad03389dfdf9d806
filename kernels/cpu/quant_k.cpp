// The k-quants (Q2_K .. Q6_K): dequantisation, and dot products of a weight row with a row
// of BlockQ8_256 activations.
//
// All five share one shape. A super-block of 256 weights is 16 sub-blocks of 16 (Q4_K and
// Q5_K have 8 of 32; we treat them as 16 of 16 with every scale twice), and weight i is
//     w_i = d * scale_j * (q_i - offset) - dmin * min_j          (sub-block j = i / 16)
// where q_i is the unsigned number the block stores, `offset` is 4 for Q3_K, 32 for Q6_K and
// 0 otherwise, and only Q2_K, Q4_K and Q5_K have minimums. Against activations x_i = e * y_i
// (e is the BlockQ8_256's d, y_i its int8 qs, bsum_j the sum of y over sub-block j):
//     sum_i w_i x_i = e * (d * sum_j scale_j * (sum_{i in j} q_i y_i - offset * bsum_j)
//                          - dmin * sum_j min_j * bsum_j)
// which is integer arithmetic up to the last few multiplies of each super-block.
//
// Each type below says where its q_i, scales and minimums lie (its *Layout struct); the
// kernels are written once over those layouts.
#include <immintrin.h>

#include <cstring>

#include "kernels/cpu/quant_impl.h"
#include "kernels/quant_blocks.h"
#include "model/dequant.h"

#define KVLM_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace kvlm::quant::detail {
namespace {

constexpr int kSubBlock = 16;
constexpr int kSubBlocks = kSuperBlock / kSubBlock;

// The integer scale and minimum of each sub-block of 16 (minimums stay 0 in the types
// without them).
struct SubBlockScales {
  int scale[kSubBlocks];
  int min[kSubBlocks] = {};
};

template <class Block>
constexpr bool kHasMin = requires(const Block& b) { b.dmin; };
template <class Block>
float dmin_of(const Block& b) {
  if constexpr (kHasMin<Block>) return f16_to_f32(b.dmin);
  return 0;
}

// ---------------------------------------------------------------- bit layouts

// Byte k of a little-endian word.
inline int byte_of(uint32_t word, int k) { return (word >> (8 * k)) & 0xFF; }
inline uint32_t load_u32(const uint8_t* p) {
  uint32_t word;
  std::memcpy(&word, p, sizeof word);
  return word;
}

// 2-bit fields (Q2_K's and Q3_K's qs, Q6_K's qh): each 32-byte row serves a 128-weight
// half of the super-block, byte l holding weights l, l + 32, l + 64, l + 96 from the low
// bits up.
inline int crumb(const uint8_t* bits, int i) {
  return (bits[32 * (i / 128) + i % 32] >> (2 * (i / 32 % 4))) & 3;
}
// 1-bit fields (Q3_K's hmask, Q5_K's qh): bit k of byte l is weight 32k + l.
inline int high_bit(const uint8_t* bits, int i) { return (bits[i % 32] >> (i / 32)) & 1; }

// Q4_K and Q5_K pack eight 6-bit scales and eight 6-bit minimums into 12 bytes: scales
// 0-3 and minimums 0-3 are the low 6 bits of bytes 0-3 and 4-7; numbers 4-7 take their low
// 4 bits from the nibbles of bytes 8-11 (scales low, minimums high) and their high 2 bits
// from the top of bytes 0-3 (scales) and 4-7 (minimums). Byte k of the pair of words
// unpacked here is the value of sub-block k of 32.
struct SixBitScalesAndMins {
  uint32_t scales[2], mins[2];
};
inline SixBitScalesAndMins unpack_scales_and_mins(const uint8_t* packed) {
  const uint32_t w[3] = {load_u32(packed), load_u32(packed + 4), load_u32(packed + 8)};
  return {{w[0] & 0x3F3F3F3F, (w[2] & 0x0F0F0F0F) | ((w[0] >> 2) & 0x30303030)},
          {w[1] & 0x3F3F3F3F, ((w[2] >> 4) & 0x0F0F0F0F) | ((w[1] >> 2) & 0x30303030)}};
}

// Q3_K packs sixteen 6-bit scales, stored plus 32, into 12 bytes: the low 4 bits of scale
// j are the low nibble of byte j (j < 8) or the high nibble of byte j - 8; its high 2 bits
// are bits 2 * (j / 4) of byte 8 + j % 4. Byte k of the four words unpacked here is scale
// k plus 32.
struct BiasedSixBitScales {
  uint32_t words[4];
};
inline BiasedSixBitScales unpack_q3_k_scales(const uint8_t* packed) {
  const uint32_t low[2] = {load_u32(packed), load_u32(packed + 4)};
  const uint32_t high = load_u32(packed + 8);
  return {{(low[0] & 0x0F0F0F0F) | ((high << 4) & 0x30303030),
           (low[1] & 0x0F0F0F0F) | ((high << 2) & 0x30303030),
           ((low[0] >> 4) & 0x0F0F0F0F) | (high & 0x30303030),
           ((low[1] >> 4) & 0x0F0F0F0F) | ((high >> 2) & 0x30303030)}};
}
constexpr int kQ3ScaleBias = 32;

// ---------------------------------------------------------------- AVX2 building blocks

// The bits [from, from + width) of every byte of v moved to [to, to + width), all other
// bits cleared. The shifts are 16-bit ones: bits that cross into the neighbouring byte
// fall outside the mask.
KVLM_AVX2 inline __m256i byte_bits(__m256i v, int from, int to, int width) {
  const __m256i shifted =
      from >= to ? _mm256_srli_epi16(v, from - to) : _mm256_slli_epi16(v, to - from);
  return _mm256_and_si256(shifted, _mm256_set1_epi8(static_cast<char>(((1 << width) - 1) << to)));
}

KVLM_AVX2 inline __m256i load32(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

// The int16 scales of group g's two sub-blocks (2g and 2g + 1) across the low and the high
// 128-bit lane, where vpmaddubsw leaves those sub-blocks' products. halves[h] holds scales
// 8h .. 8h + 7 in both lanes, so that an in-lane byte shuffle can pick them.
KVLM_AVX2 inline __m256i pair_scales(const __m256i halves[2], int g) {
  const auto bytes_of_word = [](int k) {  // vpshufb's indices of int16 k, 8 times
    return _mm_set1_epi16(static_cast<short>(2 * k | (2 * k + 1) << 8));
  };
  const __m256i pick = _mm256_set_m128i(bytes_of_word((2 * g + 1) % 8), bytes_of_word(2 * g % 8));
  return _mm256_shuffle_epi8(halves[g / 4], pick);
}

KVLM_AVX2 inline float horizontal_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---------------------------------------------------------------- the five layouts
//
// Each has, for the scalar kernels, quant(block, i) (the stored q_i) and scales(block);
// for the AVX2 kernel, quants(block, q) (q[g] = the stored q_i of weights 32g .. 32g + 31,
// one per byte), scales16(block) (the int8 scale of each sub-block of 16) and, where the
// type has minimums, mins16(block).

struct Q2KLayout {  // scales[j] = scale | min << 4
  using Block = BlockQ2_K;
  static constexpr int kOffset = 0;

  static int quant(const Block& b, int i) { return crumb(b.qs, i); }
  static SubBlockScales scales(const Block& b) {
    SubBlockScales s;
    for (int j = 0; j < kSubBlocks; ++j) {
      s.scale[j] = b.scales[j] & 0xF;
      s.min[j] = b.scales[j] >> 4;
    }
    return s;
  }

  KVLM_AVX2 static void quants(const Block& b, __m256i q[8]) {
    for (int half = 0; half < 2; ++half) {
      const __m256i bits = load32(b.qs + 32 * half);
      for (int k = 0; k < 4; ++k) q[4 * half + k] = byte_bits(bits, 2 * k, 0, 2);
    }
  }
  KVLM_AVX2 static __m128i scales16(const Block& b) {
    return _mm_and_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)),
                         _mm_set1_epi8(0xF));
  }
  KVLM_AVX2 static __m128i mins16(const Block& b) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
    return _mm_and_si128(_mm_srli_epi16(packed, 4), _mm_set1_epi8(0xF));
  }
};

struct Q3KLayout {  // q = 2 bits of qs + 4 * the hmask bit; stored minus 4
  using Block = BlockQ3_K;
  static constexpr int kOffset = 4;

  static int quant(const Block& b, int i) { return crumb(b.qs, i) | high_bit(b.hmask, i) << 2; }
  static SubBlockScales scales(const Block& b) {
    const BiasedSixBitScales packed = unpack_q3_k_scales(b.scales);
    SubBlockScales s;
    for (int j = 0; j < kSubBlocks; ++j)
      s.scale[j] = byte_of(packed.words[j / 4], j % 4) - kQ3ScaleBias;
    return s;
  }

  KVLM_AVX2 static void quants(const Block& b, __m256i q[8]) {
    const __m256i hmask = load32(b.hmask);
    for (int half = 0; half < 2; ++half) {
      const __m256i bits = load32(b.qs + 32 * half);
      for (int k = 0; k < 4; ++k) {
        const int g = 4 * half + k;
        q[g] = _mm256_or_si256(byte_bits(bits, 2 * k, 0, 2), byte_bits(hmask, g, 2, 1));
      }
    }
  }
  KVLM_AVX2 static __m128i scales16(const Block& b) {
    const BiasedSixBitScales p = unpack_q3_k_scales(b.scales);
    return _mm_sub_epi8(_mm_set_epi32(p.words[3], p.words[2], p.words[1], p.words[0]),
                        _mm_set1_epi8(kQ3ScaleBias));
  }
};

// Q4_K and Q5_K: sub-blocks of 32 with 6-bit scales and minimums; the low 4 bits of q in
// qs, whose 32-byte row c holds sub-block 2c in its low nibbles and 2c + 1 in its high ones.
template <class BlockType>
struct SixBitScaledLayout {
  using Block = BlockType;
  static constexpr int kOffset = 0;

  static int low_nibble(const Block& b, int i) {
    return (b.qs[32 * (i / 64) + i % 32] >> (4 * (i / 32 % 2))) & 0xF;
  }
  static SubBlockScales scales(const Block& b) {
    const SixBitScalesAndMins packed = unpack_scales_and_mins(b.scales);
    SubBlockScales s;
    for (int j = 0; j < kSubBlocks; ++j) {
      const int sub32 = j / 2;
      s.scale[j] = byte_of(packed.scales[sub32 / 4], sub32 % 4);
      s.min[j] = byte_of(packed.mins[sub32 / 4], sub32 % 4);
    }
    return s;
  }

  KVLM_AVX2 static void low_nibbles(const Block& b, __m256i q[8]) {
    for (int c = 0; c < 4; ++c) {
      const __m256i bits = load32(b.qs + 32 * c);
      q[2 * c] = byte_bits(bits, 0, 0, 4);
      q[2 * c + 1] = byte_bits(bits, 4, 0, 4);
    }
  }
  // Each of the eight values twice: one per sub-block of 16.
  KVLM_AVX2 static __m128i twice(uint32_t low, uint32_t high) {
    const __m128i v = _mm_set_epi32(0, 0, high, low);
    return _mm_unpacklo_epi8(v, v);
  }
  KVLM_AVX2 static __m128i scales16(const Block& b) {
    const SixBitScalesAndMins p = unpack_scales_and_mins(b.scales);
    return twice(p.scales[0], p.scales[1]);
  }
  KVLM_AVX2 static __m128i mins16(const Block& b) {
    const SixBitScalesAndMins p = unpack_scales_and_mins(b.scales);
    return twice(p.mins[0], p.mins[1]);
  }
};

struct Q4KLayout : SixBitScaledLayout<BlockQ4_K> {
  static int quant(const Block& b, int i) { return low_nibble(b, i); }
  KVLM_AVX2 static void quants(const Block& b, __m256i q[8]) { low_nibbles(b, q); }
};

struct Q5KLayout : SixBitScaledLayout<BlockQ5_K> {  // the 5th bit in qh
  static int quant(const Block& b, int i) { return low_nibble(b, i) | high_bit(b.qh, i) << 4; }
  KVLM_AVX2 static void quants(const Block& b, __m256i q[8]) {
    low_nibbles(b, q);
    const __m256i high = load32(b.qh);
    for (int g = 0; g < 8; ++g) q[g] = _mm256_or_si256(q[g], byte_bits(high, g, 4, 1));
  }
};

// Q6_K: the low 4 bits of q in ql, whose 64-byte row serves a 128-weight half (weights l
// and l + 64 of the half in byte l's low and high nibble), the high 2 bits in qh; stored
// minus 32.
struct Q6KLayout {
  using Block = BlockQ6_K;
  static constexpr int kOffset = 32;

  static int quant(const Block& b, int i) {
    const int low = (b.ql[64 * (i / 128) + i % 64] >> (4 * (i / 64 % 2))) & 0xF;
    return low | crumb(b.qh, i) << 4;
  }
  static SubBlockScales scales(const Block& b) {
    SubBlockScales s;
    for (int j = 0; j < kSubBlocks; ++j) s.scale[j] = b.scales[j];
    return s;
  }

  KVLM_AVX2 static void quants(const Block& b, __m256i q[8]) {
    for (int half = 0; half < 2; ++half) {
      const __m256i low[2] = {load32(b.ql + 64 * half), load32(b.ql + 64 * half + 32)};
      const __m256i high = load32(b.qh + 32 * half);
      for (int k = 0; k < 4; ++k)
        q[4 * half + k] =
            _mm256_or_si256(byte_bits(low[k % 2], 4 * (k / 2), 0, 4), byte_bits(high, 2 * k, 4, 2));
    }
  }
  KVLM_AVX2 static __m128i scales16(const Block& b) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales));
  }
};

// ---------------------------------------------------------------- kernels

template <class Layout>
void dequantize(const void* src, float* dst, int64_t n) {
  using Block = typename Layout::Block;
  const auto* blocks = static_cast<const Block*>(src);
  for (int64_t b = 0; b < n / kSuperBlock; ++b) {
    const Block& block = blocks[b];
    const SubBlockScales s = Layout::scales(block);
    const float d = f16_to_f32(block.d), dmin = dmin_of(block);
    for (int j = 0; j < kSubBlocks; ++j) {
      // Rounded where the reference (gguf's numpy) rounds: the sub-block's scale and
      // minimum become floats of their own before q meets them.
      const float scale = d * static_cast<float>(s.scale[j]);
      const float min = dmin * static_cast<float>(s.min[j]);
      for (int l = 0; l < kSubBlock; ++l) {
        const int i = kSubBlock * j + l;
        float w = scale * static_cast<float>(Layout::quant(block, i) - Layout::kOffset);
        if constexpr (kHasMin<Block>) w -= min;
        dst[kSuperBlock * b + i] = w;
      }
    }
  }
}

template <class Layout>
float dot_scalar(const void* w, const void* x, int n) {
  using Block = typename Layout::Block;
  const auto* blocks = static_cast<const Block*>(w);
  const auto* acts = static_cast<const BlockQ8_256*>(x);
  float sum = 0;
  for (int b = 0; b < n / kSuperBlock; ++b) {
    const Block& block = blocks[b];
    const BlockQ8_256& y = acts[b];
    const SubBlockScales s = Layout::scales(block);
    int scaled_dots = 0, scaled_mins = 0;
    for (int j = 0; j < kSubBlocks; ++j) {
      int dot = 0;
      for (int l = 0; l < kSubBlock; ++l) {
        const int i = kSubBlock * j + l;
        dot += (Layout::quant(block, i) - Layout::kOffset) * y.qs[i];
      }
      scaled_dots += s.scale[j] * dot;
      scaled_mins += s.min[j] * y.bsums[j];
    }
    const float block_sum = f16_to_f32(block.d) * static_cast<float>(scaled_dots) -
                            dmin_of(block) * static_cast<float>(scaled_mins);
    sum += y.d * block_sum;
  }
  return sum;
}

// Per super-block: for each group g of 32 weights (two sub-blocks), vpmaddubsw multiplies
// the unsigned q by the int8 activations and adds neighbours (at most 2 * 63 * 127, no
// saturation), vpmaddwd applies the two sub-blocks' scales and adds neighbours again into
// int32 lanes. The offset and the minimums come from bsums; the int32 lanes become floats
// once per super-block.
template <class Layout>
KVLM_AVX2 float dot_avx2(const void* w, const void* x, int n) {
  using Block = typename Layout::Block;
  const auto* blocks = static_cast<const Block*>(w);
  const auto* acts = static_cast<const BlockQ8_256*>(x);
  __m256 acc = _mm256_setzero_ps();
  for (int b = 0; b < n / kSuperBlock; ++b) {
    const Block& block = blocks[b];
    const BlockQ8_256& y = acts[b];
    for (size_t line = 0; line < sizeof(Block); line += 64)
      _mm_prefetch(reinterpret_cast<const char*>(&block) + kPrefetchBytes + line, _MM_HINT_T0);
    const __m256i scales = _mm256_cvtepi8_epi16(Layout::scales16(block));
    const __m256i scale_halves[2] = {_mm256_permute2x128_si256(scales, scales, 0x00),
                                     _mm256_permute2x128_si256(scales, scales, 0x11)};
    __m256i q[8];
    Layout::quants(block, q);
    __m256i dots = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int g = 0; g < 8; ++g) {
      const __m256i products = _mm256_maddubs_epi16(q[g], load32(y.qs + 32 * g));
      dots = _mm256_add_epi32(dots, _mm256_madd_epi16(products, pair_scales(scale_halves, g)));
    }
    const __m256i bsums = load32(y.bsums);
    if constexpr (Layout::kOffset != 0) {
      const __m256i scaled_bsums = _mm256_madd_epi16(bsums, scales);
      dots = _mm256_sub_epi32(dots,
                              _mm256_mullo_epi32(scaled_bsums, _mm256_set1_epi32(Layout::kOffset)));
    }
    const __m256 e_d = _mm256_set1_ps(y.d * _cvtsh_ss(block.d));
    acc = _mm256_fmadd_ps(e_d, _mm256_cvtepi32_ps(dots), acc);
    if constexpr (kHasMin<Block>) {
      const __m256i mins = _mm256_madd_epi16(bsums, _mm256_cvtepu8_epi16(Layout::mins16(block)));
      const __m256 e_dmin = _mm256_set1_ps(y.d * _cvtsh_ss(block.dmin));
      acc = _mm256_fnmadd_ps(e_dmin, _mm256_cvtepi32_ps(mins), acc);
    }
  }
  return horizontal_sum(acc);
}

// The rebuild as float32 (prefill's panels of k-quant rows), bit for bit dequantize's:
// each sub-block's scale and minimum rounded to floats as there, then per weight a multiply
// and a subtraction, not a fused multiply-add. On the Q4_K_M file (ffn_down in Q4_K and
// Q6_K) the scalar rebuild took 1.0% of a 2048-token prefill's samples in `perf`, this one
// 0.13%: a small gain, too small to see in this machine's prefill timings.
template <class Layout>
KVLM_AVX2 void dequantize_avx2(const void* src, float* dst, int64_t n) {
  using Block = typename Layout::Block;
  const auto* blocks = static_cast<const Block*>(src);
  // 16 int16 as two vectors of 8 floats.
  const auto to_floats = [](__m256i ints16, __m256 out[2]) KVLM_AVX2 {
    out[0] = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_castsi256_si128(ints16)));
    out[1] = _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(_mm256_extracti128_si256(ints16, 1)));
  };
  for (int64_t b = 0; b < n / kSuperBlock; ++b, dst += kSuperBlock) {
    const Block& block = blocks[b];
    alignas(32) float scale[kSubBlocks], min[kSubBlocks];
    __m256 ints[2];
    to_floats(_mm256_cvtepi8_epi16(Layout::scales16(block)), ints);
    const __m256 d = _mm256_set1_ps(f16_to_f32(block.d));
    _mm256_store_ps(scale, _mm256_mul_ps(d, ints[0]));
    _mm256_store_ps(scale + 8, _mm256_mul_ps(d, ints[1]));
    if constexpr (kHasMin<Block>) {
      to_floats(_mm256_cvtepu8_epi16(Layout::mins16(block)), ints);
      const __m256 dmin = _mm256_set1_ps(dmin_of(block));
      _mm256_store_ps(min, _mm256_mul_ps(dmin, ints[0]));
      _mm256_store_ps(min + 8, _mm256_mul_ps(dmin, ints[1]));
    }
    __m256i q[8];
    Layout::quants(block, q);
    for (int g = 0; g < 8; ++g) {
      // Sub-block 2g is the low 128-bit lane of q[g], 2g + 1 the high one.
      const __m256i offset = _mm256_set1_epi16(Layout::kOffset);
      const __m256i halves[2] = {
          _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_castsi256_si128(q[g])), offset),
          _mm256_sub_epi16(_mm256_cvtepu8_epi16(_mm256_extracti128_si256(q[g], 1)), offset)};
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * g + h;
        to_floats(halves[h], ints);
        for (int k = 0; k < 2; ++k) {
          __m256 w = _mm256_mul_ps(_mm256_set1_ps(scale[j]), ints[k]);
          if constexpr (kHasMin<Block>) w = _mm256_sub_ps(w, _mm256_set1_ps(min[j]));
          _mm256_storeu_ps(dst + kSubBlock * j + 8 * k, w);
        }
      }
    }
  }
}

template <class Layout>
constexpr TypeKernels kernels_of() {
  return {dequantize<Layout>, dot_scalar<Layout>, dot_avx2<Layout>, dequantize_avx2<Layout>};
}

}  // namespace

const TypeKernels kQ2_K = kernels_of<Q2KLayout>(), kQ3_K = kernels_of<Q3KLayout>(),
                  kQ4_K = kernels_of<Q4KLayout>(), kQ5_K = kernels_of<Q5KLayout>(),
                  kQ6_K = kernels_of<Q6KLayout>();

}  // namespace kvlm::quant::detail
