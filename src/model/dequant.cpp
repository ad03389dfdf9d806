// Half-precision conversions and block dequantisation. Quantised ggml blocks pack 32
// weights with one f16 scale (and for Q4_1 an f16 minimum), so a weight is rebuilt as
// scale * q (+ minimum). Blocks are 18/20/34 bytes, so their fields are never aligned in
// the mapping: every multi-byte field is read with memcpy.
#include "model/dequant.h"

#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#include "util/thread_pool.h"

namespace kvlm {
namespace {

constexpr size_t kBlockSize = 32;  // weights per block for Q4_0, Q4_1 and Q8_0
// Below this many blocks (or elements) thread start-up costs more than the work.
constexpr int64_t kParallelThreshold = 1 << 14;

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

void dequantize_q4_0_block(const uint8_t* block, float* out) {
  const float d = f16_to_f32(load_u16(block));
  const uint8_t* qs = block + 2;
  for (size_t i = 0; i < kBlockSize / 2; ++i) {
    out[i] = d * static_cast<float>((qs[i] & 0xF) - 8);
    out[i + kBlockSize / 2] = d * static_cast<float>((qs[i] >> 4) - 8);
  }
}

void dequantize_q4_1_block(const uint8_t* block, float* out) {
  const float d = f16_to_f32(load_u16(block));
  const float m = f16_to_f32(load_u16(block + 2));
  const uint8_t* qs = block + 4;
  for (size_t i = 0; i < kBlockSize / 2; ++i) {
    out[i] = d * static_cast<float>(qs[i] & 0xF) + m;
    out[i + kBlockSize / 2] = d * static_cast<float>(qs[i] >> 4) + m;
  }
}

void dequantize_q8_0_block(const uint8_t* block, float* out) {
  const float d = f16_to_f32(load_u16(block));
  const auto* qs = reinterpret_cast<const int8_t*>(block + 2);
  for (size_t i = 0; i < kBlockSize; ++i) out[i] = d * static_cast<float>(qs[i]);
}

// Runs `block_fn(src_block, dst_block)` over every block; blocks are independent.
template <class BlockFn>
void for_each_block(const uint8_t* src, float* dst, size_t n_blocks, size_t block_bytes,
                    size_t block_elems, BlockFn block_fn) {
  const auto n = static_cast<int64_t>(n_blocks);
  auto convert = [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) block_fn(src + b * block_bytes, dst + b * block_elems);
  };
  if (n < kParallelThreshold) return convert(0, n);
  ThreadPool(0).parallel_for(n, kParallelThreshold / 4, convert);
}

// Rounds `kept` (the high bits of a value) to nearest, ties to even, given the `n_dropped`
// low bits that were cut off. A carry out of the f16 mantissa correctly bumps the
// exponent: the largest subnormal rounds up to the smallest normal, 65520 up to inf.
uint32_t round_half_even(uint32_t kept, uint32_t dropped, int n_dropped) {
  const uint32_t half = 1u << (n_dropped - 1);
  return (dropped > half || (dropped == half && (kept & 1))) ? kept + 1 : kept;
}

}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1F;
  const uint32_t mantissa = h & 0x3FF;
  if (exponent == 0x1F) {  // inf or NaN: keep the payload
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  }
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24 is exact in f32
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  // Normal: rebias the exponent from 15 to 127 and widen the mantissa from 10 to 23 bits.
  return std::bit_cast<float>(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

float bf16_to_f32(uint16_t h) { return std::bit_cast<float>(static_cast<uint32_t>(h) << 16); }

uint16_t f32_to_f16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (bits >> 16) & 0x8000;
  const uint32_t abs = bits & 0x7FFFFFFF;
  if (abs > 0x7F800000) {  // NaN: keep the top payload bits, force quiet so it stays NaN
    return static_cast<uint16_t>(sign | 0x7E00 | ((abs >> 13) & 0x3FF));
  }
  const int exponent = static_cast<int>(abs >> 23) - 127 + 15;        // rebiased for f16
  if (exponent >= 0x1F) return static_cast<uint16_t>(sign | 0x7C00);  // too large, or inf
  if (exponent > 0) {  // normal: keep 10 of the 23 mantissa bits
    const uint32_t h = (static_cast<uint32_t>(exponent) << 10) | ((abs >> 13) & 0x3FF);
    return static_cast<uint16_t>(sign | round_half_even(h, abs & 0x1FFF, 13));
  }
  // Subnormal result: shift the mantissa, implicit 1 included, down to units of 2^-24.
  const int shift = 14 - exponent;
  if (shift > 24) return static_cast<uint16_t>(sign);  // below half of 2^-24 (or zero): rounds to 0
  const uint32_t mantissa = (abs & 0x7FFFFF) | 0x800000;
  const uint32_t h = mantissa >> shift;
  return static_cast<uint16_t>(sign | round_half_even(h, mantissa & ((1u << shift) - 1), shift));
}

uint16_t f32_to_bf16(float f) {
  const uint32_t bits = std::bit_cast<uint32_t>(f);
  if ((bits & 0x7FFFFFFF) >
      0x7F800000) {  // NaN: truncating could clear the payload, so force quiet
    return static_cast<uint16_t>((bits >> 16) | 0x0040);
  }
  // Adding 0x7FFF plus the lowest kept bit rounds to nearest, ties to even; overflow
  // past the largest finite value carries into the exponent and gives inf.
  const uint32_t rounding = 0x7FFF + ((bits >> 16) & 1);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

void dequantize(gguf::TensorType type, const uint8_t* src, float* dst, size_t n) {
  using gguf::TensorType;
  if (n == 0) return;  // an empty tensor may come with null pointers, which memcpy forbids
  const bool quantised =
      type == TensorType::Q4_0 || type == TensorType::Q4_1 || type == TensorType::Q8_0;
  if (quantised && n % kBlockSize != 0) {
    throw std::invalid_argument("dequantize: " + std::to_string(n) +
                                " elements is not a whole number of " + gguf::type_name(type) +
                                " blocks");
  }
  const size_t block_bytes = gguf::tensor_bytes(type, quantised ? kBlockSize : 1);
  switch (type) {
    case TensorType::F32: std::memcpy(dst, src, n * sizeof(float)); return;
    case TensorType::F16:
      for_each_block(src, dst, n, block_bytes, 1,
                     [](const uint8_t* s, float* d) { *d = f16_to_f32(load_u16(s)); });
      return;
    case TensorType::BF16:
      for_each_block(src, dst, n, block_bytes, 1,
                     [](const uint8_t* s, float* d) { *d = bf16_to_f32(load_u16(s)); });
      return;
    case TensorType::Q4_0:
      for_each_block(src, dst, n / kBlockSize, block_bytes, kBlockSize, dequantize_q4_0_block);
      return;
    case TensorType::Q4_1:
      for_each_block(src, dst, n / kBlockSize, block_bytes, kBlockSize, dequantize_q4_1_block);
      return;
    case TensorType::Q8_0:
      for_each_block(src, dst, n / kBlockSize, block_bytes, kBlockSize, dequantize_q8_0_block);
      return;
  }
  throw std::invalid_argument("dequantize: unsupported tensor type " +
                              std::to_string(static_cast<uint32_t>(type)));
}

}  // namespace kvlm
