// Random weight rows for the kernel benchmarks, whose speed does not depend on the values:
// random bytes, with a small finite float16 in each block's float16 fields (its scale, and
// its minimum where it has one), and every float16 weight 0.01, so that sums stay finite
// and no denormal slows a product down.
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
  // Byte offsets of the float16 fields in a block (kernels/quant_blocks.h): the 32-blocks
  // and Q4_K/Q5_K lead with theirs, Q2_K, Q3_K and Q6_K end with theirs.
  std::vector<int> fields = {0};
  switch (type) {
    case WeightType::Q4_1: case WeightType::Q5_1: case WeightType::Q4_K: case WeightType::Q5_K:
      fields = {0, 2};
      break;
    case WeightType::Q2_K: case WeightType::Q3_K: case WeightType::Q6_K:
      fields = {block_bytes - (type == WeightType::Q2_K ? 4 : 2)};
      if (type == WeightType::Q2_K) fields.push_back(block_bytes - 2);
      break;
    default:
      break;
  }
  const uint16_t scale = kvlm::f32_to_f16(0.01f);
  for (size_t block = 0; block < w.size(); block += block_bytes)
    for (int f : fields) std::memcpy(&w[block + f], &scale, 2);
  return w;
}
