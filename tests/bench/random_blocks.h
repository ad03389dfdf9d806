// Random weight rows for the kernel benchmarks, whose speed does not depend on the values:
// random bytes, with a small finite float16 scale (and minimum, for Q4_1) where each
// 32-block's fields begin, and every float16 weight 0.01, so that sums stay finite.
#pragma once
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "model/dequant.h"
#include "weight_type.h"

inline std::vector<uint8_t> random_blocks(kvlm::WeightType type, int rows, int cols,
                                          uint32_t seed) {
  using kvlm::WeightType;
  std::vector<uint8_t> w(kvlm::weight_row_bytes(type, cols) * rows);
  std::mt19937 rng(seed);
  for (uint8_t& b : w) b = static_cast<uint8_t>(rng());
  const int block_bytes = kvlm::weight_type_info(type).block_bytes;
  const int scale_fields = type == WeightType::Q4_1 ? 2 : 1;  // d, m lead every 32-block
  const uint16_t scale = kvlm::f32_to_f16(0.01f);
  for (size_t block = 0; block < w.size(); block += block_bytes)
    for (int f = 0; f < scale_fields; f++) std::memcpy(&w[block + 2 * f], &scale, 2);
  return w;
}
