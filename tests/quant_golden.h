// The golden dequantisation files of tests/data/quant (tests/golden/make_quant_golden.py:
// random blocks of every weight type and the float32 weights the gguf package rebuilds
// from them), read for the tests of the CUDA readers and kernels.
#pragma once
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "weight_type.h"

namespace kvlm {

// F32 has no golden file of its own: F16's float32 values serve as its blocks and as its
// expected values.
struct TypeCase {
  WeightType type;
  const char* golden;  // tests/data/quant/<golden>.blocks and .f32
};

inline constexpr TypeCase kTypes[] = {
    {WeightType::F32, "F16"},   {WeightType::F16, "F16"},   {WeightType::BF16, "BF16"},
    {WeightType::Q4_0, "Q4_0"}, {WeightType::Q4_1, "Q4_1"}, {WeightType::Q5_0, "Q5_0"},
    {WeightType::Q5_1, "Q5_1"}, {WeightType::Q8_0, "Q8_0"}, {WeightType::Q2_K, "Q2_K"},
    {WeightType::Q3_K, "Q3_K"}, {WeightType::Q4_K, "Q4_K"}, {WeightType::Q5_K, "Q5_K"},
    {WeightType::Q6_K, "Q6_K"},
};

// gtest's names and printing of the cases.
inline std::string type_param_name(const ::testing::TestParamInfo<TypeCase>& info) {
  return weight_type_name(info.param.type);
}
inline void PrintTo(const TypeCase& c, std::ostream* os) { *os << weight_type_name(c.type); }

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("missing " + path + " (run from the repository root)");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The golden blocks of one type and the float32 weights they hold.
struct Golden {
  std::vector<uint8_t> blocks;
  std::vector<float> weights;
  int block_weights = 0, block_bytes = 0;
  int n_blocks() const { return int(blocks.size()) / block_bytes; }

  explicit Golden(const TypeCase& c) {
    const std::string stem = std::string("tests/data/quant/") + c.golden;
    const std::vector<uint8_t> f32 = read_bytes(stem + ".f32");
    weights.resize(f32.size() / sizeof(float));
    std::memcpy(weights.data(), f32.data(), weights.size() * sizeof(float));
    blocks = c.type == WeightType::F32 ? f32 : read_bytes(stem + ".blocks");
    block_weights = weight_type_info(c.type).block_elems;
    block_bytes = weight_type_info(c.type).block_bytes;
    if (blocks.size() % block_bytes != 0 || size_t(n_blocks()) * block_weights != weights.size())
      throw std::runtime_error(stem + ": blocks and weights disagree");
  }
};

}  // namespace kvlm
