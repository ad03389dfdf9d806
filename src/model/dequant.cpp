// Half-precision conversions, and whole tensors rebuilt as float32 with the CPU kernels'
// dequantisation (kernels/cpu/quant.h).
#include "model/dequant.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/cpu/quant.h"
#include "util/thread_pool.h"

namespace kvlm {
namespace {

// Below this many elements thread start-up costs more than the work.
constexpr int64_t kParallelThreshold = int64_t(1) << 16;

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
  if (n == 0) return;  // an empty tensor may come with null pointers
  const WeightType t = gguf::weight_type(type);
  const WeightTypeInfo info = weight_type_info(t);
  if (n % info.block_elems != 0)
    throw std::invalid_argument("dequantize: " + std::to_string(n) +
                                " elements is not a whole number of " + gguf::type_name(type) +
                                " blocks");
  // In runs of whole blocks, on every core for a large tensor.
  const int64_t blocks = int64_t(n / info.block_elems);
  const int64_t per_run = std::max<int64_t>(1, kParallelThreshold / info.block_elems);
  auto convert = [&](int64_t begin, int64_t end) {
    quant::dequantize_row(t, src + begin * info.block_bytes, dst + begin * info.block_elems,
                          (end - begin) * info.block_elems);
  };
  if (blocks <= per_run) return convert(0, blocks);
  ThreadPool(0).parallel_for(blocks, per_run, convert);
}

}  // namespace kvlm
