// Random weights of every type for the kernel tests: quantised blocks of random bytes
// whose float16 scale fields hold finite random values (random bits there could be inf or
// NaN), so every bit pattern of the quants and packed scales occurs; float types Gaussian.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/quant_blocks.h"
#include "model/dequant.h"
#include "weight_type.h"

namespace kvlm::test {

// Byte offsets of the float16 scale fields in one block of a quantised type.
inline std::vector<size_t> scale_offsets(WeightType type) {
  switch (type) {
    case WeightType::Q4_0: return {offsetof(quant::BlockQ4_0, d)};
    case WeightType::Q4_1: return {offsetof(quant::BlockQ4_1, d), offsetof(quant::BlockQ4_1, m)};
    case WeightType::Q5_0: return {offsetof(quant::BlockQ5_0, d)};
    case WeightType::Q5_1: return {offsetof(quant::BlockQ5_1, d), offsetof(quant::BlockQ5_1, m)};
    case WeightType::Q8_0: return {offsetof(quant::BlockQ8_0, d)};
    case WeightType::Q2_K: return {offsetof(quant::BlockQ2_K, d), offsetof(quant::BlockQ2_K, dmin)};
    case WeightType::Q3_K: return {offsetof(quant::BlockQ3_K, d)};
    case WeightType::Q4_K: return {offsetof(quant::BlockQ4_K, d), offsetof(quant::BlockQ4_K, dmin)};
    case WeightType::Q5_K: return {offsetof(quant::BlockQ5_K, d), offsetof(quant::BlockQ5_K, dmin)};
    case WeightType::Q6_K: return {offsetof(quant::BlockQ6_K, d)};
    default: return {};
  }
}

inline void store_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, sizeof v); }

// One row of n random weights of `type`. Quantised types: random bytes with every scale
// field set to a finite float16 (random bits there could be inf or NaN). Float types:
// Gaussian values.
inline std::vector<uint8_t> random_weights(WeightType type, int n, std::mt19937& rng) {
  std::vector<uint8_t> row(weight_row_bytes(type, n));
  std::normal_distribution<float> gaussian(0.0f, 0.05f);
  switch (type) {
    case WeightType::F32:
      for (int i = 0; i < n; i++) {
        const float v = gaussian(rng);
        std::memcpy(&row[size_t(i) * 4], &v, 4);
      }
      return row;
    case WeightType::F16:
    case WeightType::BF16:
      for (int i = 0; i < n; i++) {
        const float v = gaussian(rng);
        store_u16(&row[size_t(i) * 2], type == WeightType::F16 ? f32_to_f16(v) : f32_to_bf16(v));
      }
      return row;
    default: break;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  for (uint8_t& b : row) b = static_cast<uint8_t>(byte(rng));
  std::uniform_real_distribution<float> scale(-0.08f, 0.08f);  // as the golden script draws
  const size_t block_bytes = weight_type_info(type).block_bytes;
  for (size_t block = 0; block < row.size(); block += block_bytes)
    for (size_t offset : scale_offsets(type))
      store_u16(&row[block + offset], f32_to_f16(scale(rng)));
  return row;
}

}  // namespace kvlm::test
