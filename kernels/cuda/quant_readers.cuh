// The readers of kernels/cuda/quant.cu: how a CUDA thread rebuilds 8 consecutive weights
// of any weight type as floats, bit for bit as the CPU reference does (quant.cu's header
// comment says how), and a matvec lane's sum over its share of a row. They are pure
// functions of the bytes they are given, apart from CUDA's intrinsics (__ldg, __byte_perm,
// __fmul_rn, ...), so the tests also run them on the CPU with host versions of those
// intrinsics (tests/test_cuda_readers.cpp): every type's bit fields, and which lane reads
// which weights, are checked against the golden files even where no GPU is found.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <vector_functions.h>
#include <vector_types.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/quant_blocks.h"
#include "weight_type.h"

namespace kvlm::cuda_quant {

using namespace kvlm::quant;

constexpr int kChunk = 8;  // weights a reader rebuilds at once

// ---- the small integers of 8 weights, one per byte of a uint2 ----------------------------
// Each format gathers the integer parts of its 8 weights into the 8 bytes of a uint2
// (byte k: weight first + k), so that the bit fields of 4 weights are cut out at once.

// The 8 bytes at p as two little-endian words. A block whose size is a multiple of 4 lies
// 4-byte aligned in a row, and every run of 8 bytes read below starts at a multiple of 4
// inside it. The other blocks (18, 22, 34, 110, 210 bytes) are only 2-byte aligned and are
// read in 16-bit halves.
template <class Block>
__device__ inline uint2 load8(const uint8_t* p) {
  if constexpr (sizeof(Block) % 4 == 0) {
    const auto* words = reinterpret_cast<const uint32_t*>(p);
    return make_uint2(__ldg(words), __ldg(words + 1));
  } else {
    const auto* halves = reinterpret_cast<const uint16_t*>(p);
    return make_uint2(__ldg(halves) | uint32_t(__ldg(halves + 1)) << 16,
                      __ldg(halves + 2) | uint32_t(__ldg(halves + 3)) << 16);
  }
}

// The bit field at `shift` of every byte: `mask` repeats the field's mask in each byte, so
// the bits that the shift moves in from the byte above are cut off.
__device__ inline uint2 field(uint2 v, int shift, uint32_t mask) {
  return make_uint2(v.x >> shift & mask, v.y >> shift & mask);
}

// low | high << at, byte by byte (high's fields fit above `at` in their byte).
__device__ inline uint2 stack(uint2 low, uint2 high, int at) {
  return make_uint2(low.x | high.x << at, low.y | high.y << at);
}

// Bit k of `bits` (8 bits) as bit 0 of byte k. A nibble times 0x00204081 is four copies of
// it, shifted by 0, 7, 14 and 21: they do not overlap, and copy i has bit i at bit 8i.
__device__ inline uint2 spread_bits(uint32_t bits) {
  return make_uint2((bits & 0xfu) * 0x00204081u & 0x01010101u,
                    (bits >> 4) * 0x00204081u & 0x01010101u);
}

// Byte k of q, minus `zero`, as a float. The byte goes into the mantissa of 2^23 by one
// byte permute, and 2^23 + zero comes off by one exact addition. An integer-to-float
// conversion per weight would do the same on the conversion unit, which runs at a
// fraction of the float units' rate and would hold the matvec below the memory's speed.
__device__ inline float byte_minus(uint2 q, int k, float zero) {
  const uint32_t word = k < 4 ? q.x : q.y;
  const uint32_t as_float = __byte_perm(word, 0x4b000000u, 0x7440u | (k & 3));  // 0x4b0000'byte
  return __fsub_rn(__uint_as_float(as_float), 8388608.0f + zero);
}

// w[k] = d * (q[k] - zero): the types without a minimum, one rounded product as in the
// reference (q[k] - zero is a small integer, exact in float).
__device__ inline void scale(uint2 q, float d, float zero, float (&w)[kChunk]) {
#pragma unroll
  for (int k = 0; k < kChunk; k++) w[k] = __fmul_rn(d, byte_minus(q, k, zero));
}

// w[k] = d * q[k] + m, the product rounded before the sum as in the reference.
__device__ inline void scale_add(uint2 q, float d, float m, float (&w)[kChunk]) {
#pragma unroll
  for (int k = 0; k < kChunk; k++) w[k] = __fadd_rn(__fmul_rn(d, byte_minus(q, k, 0.0f)), m);
}

__device__ inline float half_at(const uint16_t& bits) {
  return __half2float(__ushort_as_half(__ldg(&bits)));
}

// ---- the formats --------------------------------------------------------------------
// dequant8(block, first, w): weights first .. first + 7 of the block (first a multiple of
// 8) as floats. kernels/quant_blocks.h describes the layouts; gguf's quants.py is the
// reference for the bit positions.

// Blocks of 32: weight i < 16 in the low nibble of qs[i], i >= 16 in the high nibble of
// qs[i - 16]; the 5-bit types keep bit 4 of weight i in bit i of qh.
template <class Block>
__device__ inline uint2 nibbles(const Block& b, int first) {
  return field(load8<Block>(b.qs + first % 16), first / 16 * 4, 0x0f0f0f0fu);
}
template <class Block>
__device__ inline uint2 five_bits(const Block& b, int first) {
  return stack(nibbles(b, first), spread_bits(__ldg(&b.qh[first / 8])), 4);
}

struct Q4_0 {
  using Block = BlockQ4_0;
  static constexpr int kWeights = kBlock;
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    scale(nibbles(b, first), half_at(b.d), 8.0f, w);
  }
};
struct Q4_1 {
  using Block = BlockQ4_1;
  static constexpr int kWeights = kBlock;
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    scale_add(nibbles(b, first), half_at(b.d), half_at(b.m), w);
  }
};
struct Q5_0 {
  using Block = BlockQ5_0;
  static constexpr int kWeights = kBlock;
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    scale(five_bits(b, first), half_at(b.d), 16.0f, w);
  }
};
struct Q5_1 {
  using Block = BlockQ5_1;
  static constexpr int kWeights = kBlock;
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    scale_add(five_bits(b, first), half_at(b.d), half_at(b.m), w);
  }
};
struct Q8_0 {
  using Block = BlockQ8_0;
  static constexpr int kWeights = kBlock;
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    const uint2 v = load8<Block>(reinterpret_cast<const uint8_t*>(b.qs) + first);
    // Flipping the sign bit of an int8 gives it plus 128, as an unsigned byte.
    scale(make_uint2(v.x ^ 0x80808080u, v.y ^ 0x80808080u), half_at(b.d), 128.0f, w);
  }
};

// The 2-bit fields of Q2_K and Q3_K: weight 128 g + 32 s + l in bits 2s, 2s + 1 of
// qs[32 g + l].
template <class Block>
__device__ inline uint2 crumbs(const Block& b, int first) {
  return field(load8<Block>(b.qs + first / 128 * 32 + first % 32), first / 32 % 4 * 2, 0x03030303u);
}

// 16 sub-blocks of 16, scales[j] = 4-bit scale | 4-bit minimum << 4.
struct Q2_K {
  using Block = BlockQ2_K;
  static constexpr int kWeights = kSuperBlock;
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    const uint32_t packed = __ldg(&b.scales[first / 16]);
    const float d = __fmul_rn(half_at(b.d), float(packed & 0xfu));
    const float m = __fmul_rn(half_at(b.dmin), float(packed >> 4));
    scale_add(crumbs(b, first), d, -m, w);
  }
};

// 16 sub-blocks of 16. Weight i's third bit is bit i / 32 of hmask[i % 32]: set means its
// two bits as they are, clear means 4 less; so it is stored plus 4.
struct Q3_K {
  using Block = BlockQ3_K;
  static constexpr int kWeights = kSuperBlock;
  // Sub-block j's 6-bit scale, stored plus 32: its low 4 bits in the nibbles of
  // scales[0..7], its high 2 bits in scales[8..11].
  __device__ static int sub_scale(const Block& b, int j) {
    const uint32_t low = j < 8 ? __ldg(&b.scales[j]) & 0xfu : __ldg(&b.scales[j - 8]) >> 4;
    const uint32_t high = __ldg(&b.scales[8 + j % 4]) >> (2 * (j / 4)) & 3u;
    return int(low | high << 4) - 32;
  }
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    const uint2 third = field(load8<Block>(b.hmask + first % 32), first / 32, 0x01010101u);
    const float d = __fmul_rn(half_at(b.d), float(sub_scale(b, first / 16)));
    scale(stack(crumbs(b, first), third, 2), d, 4.0f, w);
  }
};

// Q4_K's and Q5_K's sub-block j (8 of 32 weights): its 6-bit scale and minimum times d and
// dmin. j < 4: the low 6 bits of scales[j] and scales[j + 4]; j >= 4: the nibbles of
// scales[j + 4], topped by the high 2 bits of scales[j - 4] and scales[j].
template <class Block>
__device__ inline void scale_and_min(const Block& b, int j, float& d, float& m) {
  uint32_t sc, mn;
  if (j < 4) {
    sc = __ldg(&b.scales[j]) & 63u;
    mn = __ldg(&b.scales[j + 4]) & 63u;
  } else {
    const uint32_t both = __ldg(&b.scales[j + 4]);
    sc = (both & 0xfu) | (__ldg(&b.scales[j - 4]) >> 6) << 4;
    mn = (both >> 4) | (__ldg(&b.scales[j]) >> 6) << 4;
  }
  d = __fmul_rn(half_at(b.d), float(sc));
  m = __fmul_rn(half_at(b.dmin), float(mn));
}

// Weight 64 g + 32 h + l of Q4_K and Q5_K: nibble h of qs[32 g + l]; Q5_K's fifth bit is
// bit (64 g + 32 h) / 32 of qh[l].
template <class Block>
__device__ inline uint2 k_nibbles(const Block& b, int first) {
  return field(load8<Block>(b.qs + first / 64 * 32 + first % 32), first / 32 % 2 * 4, 0x0f0f0f0fu);
}

struct Q4_K {
  using Block = BlockQ4_K;
  static constexpr int kWeights = kSuperBlock;
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    float d, m;
    scale_and_min(b, first / 32, d, m);
    scale_add(k_nibbles(b, first), d, -m, w);
  }
};
struct Q5_K {
  using Block = BlockQ5_K;
  static constexpr int kWeights = kSuperBlock;
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    const uint2 fifth = field(load8<Block>(b.qh + first % 32), first / 32, 0x01010101u);
    float d, m;
    scale_and_min(b, first / 32, d, m);
    scale_add(stack(k_nibbles(b, first), fifth, 4), d, -m, w);
  }
};

// 16 sub-blocks of 16 with int8 scales. Weight 128 g + 64 h + l (l < 64): nibble h of
// ql[64 g + l], topped by bits 2s, 2s + 1 of qh[32 g + l % 32] with s = (64 h + l) / 32;
// stored plus 32.
struct Q6_K {
  using Block = BlockQ6_K;
  static constexpr int kWeights = kSuperBlock;
  __device__ static void dequant8(const Block& b, int first, float (&w)[kChunk]) {
    const uint2 low =
        field(load8<Block>(b.ql + first / 128 * 64 + first % 64), first / 64 % 2 * 4, 0x0f0f0f0fu);
    const uint2 high =
        field(load8<Block>(b.qh + first / 128 * 32 + first % 32), first / 32 % 4 * 2, 0x03030303u);
    const float d = __fmul_rn(half_at(b.d), float(__ldg(&b.scales[first / 16])));
    scale(stack(low, high, 4), d, 32.0f, w);
  }
};

// ---- readers ------------------------------------------------------------------------
// A reader sees a row (or any run of whole blocks) as blocks of kBlockWeights weights and
// rebuilds kWidth of them at a time: load(blocks, i, first, w) gives weights first ..
// first + kWidth - 1 of block i.

template <class Format>
struct Blocks {
  static constexpr int kBlockWeights = Format::kWeights, kWidth = kChunk;
  __device__ static void load(const uint8_t* blocks, int64_t i, int first, float (&w)[kWidth]) {
    Format::dequant8(reinterpret_cast<const typename Format::Block*>(blocks)[i], first, w);
  }
};

__device__ inline float bits_to_float(uint32_t bits, float) { return __uint_as_float(bits); }
__device__ inline float bits_to_float(uint32_t bits, __half) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
}
__device__ inline float bits_to_float(uint32_t bits, __nv_bfloat16) {
  return __uint_as_float(bits << 16);  // a bfloat16 is the top half of a float32
}

// Float values (T: float, __half or __nv_bfloat16) in "blocks" of Width: 8 when the rows
// allow 16-byte loads, else 1.
template <class T, int Width>
struct Floats {
  static constexpr int kBlockWeights = Width, kWidth = Width;
  __device__ static void load(const uint8_t* blocks, int64_t i, int, float (&w)[kWidth]) {
    using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint16_t>;
    const Bits* p = reinterpret_cast<const Bits*>(blocks) + i * kWidth;
    if constexpr (kWidth == 1) {
      w[0] = bits_to_float(__ldg(p), T{});
    } else {
      static_assert(kWidth * sizeof(T) % 16 == 0);
      constexpr int kPerWord = int(4 / sizeof(T));
#pragma unroll
      for (int v = 0; v < int(kWidth * sizeof(T) / 16); v++) {
        const uint4 packed = __ldg(reinterpret_cast<const uint4*>(p) + v);
        const uint32_t words[4] = {packed.x, packed.y, packed.z, packed.w};
#pragma unroll
        for (int k = 0; k < 4 * kPerWord; k++)
          w[4 * kPerWord * v + k] =
              bits_to_float(words[k / kPerWord] >> (32 / kPerWord * (k % kPerWord)), T{});
      }
    }
  }
};

// ---- a lane's share of a row (the matvec kernel) -----------------------------------

// Lane `lane` of the warp that multiplies one row by x: it sums chunk lane % c of blocks
// lane / c, lane / c + 32 / c, ... (c chunks per block) in float32. Consecutive lanes read
// consecutive chunks, so a warp step covers 256 weights of the row in one span.
template <class Reader>
__device__ inline float matvec_lane_sum(const uint8_t* w_row, int n_blocks, const float* x,
                                        int lane) {
  constexpr int kWidth = Reader::kWidth, kChunksPerBlock = Reader::kBlockWeights / kWidth;
  static_assert(32 % kChunksPerBlock == 0);
  const int first = lane % kChunksPerBlock * kWidth;
  float acc = 0.0f;
#pragma unroll 4
  for (int b = lane / kChunksPerBlock; b < n_blocks; b += 32 / kChunksPerBlock) {
    float wc[kWidth], xc[kWidth];
    Reader::load(w_row, b, first, wc);
    const float* xb = x + size_t(b) * Reader::kBlockWeights + first;
    if constexpr (kWidth % 4 == 0) {
#pragma unroll
      for (int v = 0; v < kWidth / 4; v++) {
        const float4 f = __ldg(reinterpret_cast<const float4*>(xb) + v);
        xc[4 * v] = f.x, xc[4 * v + 1] = f.y, xc[4 * v + 2] = f.z, xc[4 * v + 3] = f.w;
      }
    } else {
#pragma unroll
      for (int k = 0; k < kWidth; k++) xc[k] = __ldg(xb + k);
    }
#pragma unroll
    for (int k = 0; k < kWidth; k++) acc = fmaf(wc[k], xc[k], acc);
  }
  return acc;
}

// ---- dispatch -----------------------------------------------------------------------

template <class Reader>
struct ReaderTag {
  using type = Reader;
};

template <class T, class Fn>
void with_floats(bool wide, Fn& f) {
  if (wide) {
    f(ReaderTag<Floats<T, kChunk>>{});
  } else {
    f(ReaderTag<Floats<T, 1>>{});
  }
}

// Calls f(ReaderTag<R>{}) with R the reader of `type`. `wide`: float rows may be read 8 values
// (16 or 32 bytes) at a time; the block types always are.
template <class Fn>
void with_reader(WeightType type, bool wide, Fn&& f) {
  switch (type) {
    case WeightType::F32: return with_floats<float>(wide, f);
    case WeightType::F16: return with_floats<__half>(wide, f);
    case WeightType::BF16: return with_floats<__nv_bfloat16>(wide, f);
    case WeightType::Q4_0: return f(ReaderTag<Blocks<Q4_0>>{});
    case WeightType::Q4_1: return f(ReaderTag<Blocks<Q4_1>>{});
    case WeightType::Q5_0: return f(ReaderTag<Blocks<Q5_0>>{});
    case WeightType::Q5_1: return f(ReaderTag<Blocks<Q5_1>>{});
    case WeightType::Q8_0: return f(ReaderTag<Blocks<Q8_0>>{});
    case WeightType::Q2_K: return f(ReaderTag<Blocks<Q2_K>>{});
    case WeightType::Q3_K: return f(ReaderTag<Blocks<Q3_K>>{});
    case WeightType::Q4_K: return f(ReaderTag<Blocks<Q4_K>>{});
    case WeightType::Q5_K: return f(ReaderTag<Blocks<Q5_K>>{});
    case WeightType::Q6_K: return f(ReaderTag<Blocks<Q6_K>>{});
  }
  throw std::invalid_argument("cuda quant: unknown weight type " + std::to_string(int(type)));
}

}  // namespace kvlm::cuda_quant
