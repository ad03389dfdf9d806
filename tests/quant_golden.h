// The golden dequantisation files of tests/data/quant (tests/golden/make_quant_golden.py:
// random blocks of every weight type and the float32 weights the gguf package rebuilds
// from them), read for the tests of the CUDA readers and kernels.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "backend_fixture.h"
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

// A matrix of `rows` rows of `blocks_per_row` golden blocks: row r starts at golden block
// start(r) and goes on cyclically. Its bytes, and its weights as the golden files give them.
struct Tiled {
  std::vector<uint8_t> bytes;
  std::vector<float> weights;
  int rows = 0, cols = 0;
};
template <class Start>
Tiled tile(const Golden& g, int rows, int blocks_per_row, Start start) {
  Tiled t;
  t.rows = rows;
  t.cols = blocks_per_row * g.block_weights;
  for (int r = 0; r < rows; r++) {
    for (int j = 0; j < blocks_per_row; j++) {
      const int b = (start(r) + j) % g.n_blocks();
      const auto bytes = g.blocks.begin() + ptrdiff_t(b) * g.block_bytes;
      const auto weights = g.weights.begin() + ptrdiff_t(b) * g.block_weights;
      t.bytes.insert(t.bytes.end(), bytes, bytes + g.block_bytes);
      t.weights.insert(t.weights.end(), weights, weights + g.block_weights);
    }
  }
  return t;
}

// The matrices the matvec checks multiply, tiled from golden blocks, row r starting at
// golden block 5r so that neighbouring rows differ. Odd row counts leave warps of the last
// thread block idle; 1-3 blocks of 32 leave most lanes idle; 2560 weights give each lane
// several steps.
inline std::vector<Tiled> matvec_matrices(const Golden& g) {
  struct Shape {
    int rows;
    int weights_per_row;  // rounded up to whole blocks
  };
  const Shape shapes[] = {
      {7, 3 * g.block_weights}, {1, g.block_weights}, {9, 2560}, {17, 768}, {1, 256}};
  std::vector<Tiled> matrices;
  for (const Shape& shape : shapes) {
    const int blocks_per_row = (shape.weights_per_row + g.block_weights - 1) / g.block_weights;
    matrices.push_back(tile(g, shape.rows, blocks_per_row, [](int r) { return 5 * r; }));
  }
  return matrices;
}

// The random x a matrix is multiplied by.
inline std::vector<float> matvec_input(const Tiled& m) {
  return test::random_vector(m.cols, 1000 + m.rows + m.cols);
}

// Row r of m times x in float64, and how far a matvec's float32 sum may be from it. A lane
// adds its products one after another (at most cols / 32 + 8 of them), then the warp adds
// its 32 lanes in 5 levels. Each of those roundings is off by at most 2^-24 of its result,
// so |y - exact| <= (cols / 32 + 8 + 5) * 2^-24 * sum |w x| to first order; the bound is
// twice that. One wrong weight in a row is off by about sum |w x| / cols, hundreds of
// times more at these widths.
struct RowReference {
  double exact, bound;
};
inline RowReference row_reference(const Tiled& m, const std::vector<float>& x, int r) {
  double exact = 0, magnitude = 0;
  for (int c = 0; c < m.cols; c++) {
    const double term = double(m.weights[size_t(r) * m.cols + c]) * x[c];
    exact += term;
    magnitude += std::fabs(term);
  }
  return {exact, 2 * (m.cols / 32.0 + 8 + 5) * std::ldexp(1.0, -24) * magnitude};
}

}  // namespace kvlm
