// The CPU kernels of every weight type (kernels/cpu/quant.h): dequantisation against the
// gguf package's (tests/data/quant, made by tests/golden/make_quant_golden.py), activation
// quantisation within its rounding bound, the scalar dot products against the formats'
// arithmetic done in double precision, and every SIMD level against the scalar one.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_impl.h"
#include "kernels/quant_blocks.h"
#include "model/dequant.h"
#include "tests/random_weights.h"

namespace kvlm::quant {
namespace {

using test::random_weights;

constexpr WeightType kAllTypes[] = {
    WeightType::F32,  WeightType::F16,  WeightType::BF16, WeightType::Q4_0, WeightType::Q4_1,
    WeightType::Q5_0, WeightType::Q5_1, WeightType::Q8_0, WeightType::Q2_K, WeightType::Q3_K,
    WeightType::Q4_K, WeightType::Q5_K, WeightType::Q6_K,
};

// "Q4_K", as in the golden files' names and ggml's.
std::string upper_name(WeightType type) {
  std::string name = weight_type_name(type);
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return name;
}
std::string type_param_name(const testing::TestParamInfo<WeightType>& info) {
  return upper_name(info.param);
}

int block_elems(WeightType type) { return weight_type_info(type).block_elems; }

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in) << "missing " << path << " (run from the repository root)";
  return {std::istreambuf_iterator<char>(in), {}};
}

std::vector<float> gaussian_activations(int n, std::mt19937& rng) {
  std::normal_distribution<float> gaussian(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = gaussian(rng);
  return x;
}

std::vector<uint8_t> quantized(ActFormat format, const std::vector<float>& x) {
  const int n = static_cast<int>(x.size());
  std::vector<uint8_t> out(act_row_bytes(format, n));
  quantize_activations(format, x.data(), out.data(), n);
  return out;
}

// The values the dot products see: x_i as d * q_i.
std::vector<float> dequantized_activations(ActFormat format, const std::vector<uint8_t>& q,
                                           int n) {
  std::vector<float> x(n);
  switch (format) {
    case ActFormat::F32: std::memcpy(x.data(), q.data(), size_t(n) * sizeof(float)); break;
    case ActFormat::Q8_32: {
      const auto* blocks = reinterpret_cast<const BlockQ8_32*>(q.data());
      for (int i = 0; i < n; i++) x[i] = blocks[i / kBlock].d * blocks[i / kBlock].qs[i % kBlock];
      break;
    }
    case ActFormat::Q8_256: {
      const auto* blocks = reinterpret_cast<const BlockQ8_256*>(q.data());
      for (int i = 0; i < n; i++)
        x[i] = blocks[i / kSuperBlock].d * blocks[i / kSuperBlock].qs[i % kSuperBlock];
      break;
    }
  }
  return x;
}

std::vector<float> dequantized(WeightType type, const std::vector<uint8_t>& row, int n) {
  std::vector<float> w(n);
  dequantize_row(type, row.data(), w.data(), n);
  return w;
}

// sum w_i x_i in double, and sum |w_i x_i|: a dot product's rounding error in float scales
// with the latter, so tolerances are relative to it.
struct ExactDot {
  double value = 0, magnitude = 0;
};
ExactDot exact_dot(const std::vector<float>& w, const std::vector<float>& x) {
  ExactDot dot;
  for (size_t i = 0; i < w.size(); i++) {
    dot.value += double(w[i]) * x[i];
    dot.magnitude += std::fabs(double(w[i]) * x[i]);
  }
  return dot;
}

// Rows of 1, 2, 3, 7 and 40 blocks reach every tail of loops unrolled by 2 blocks. The float
// types' loops take 32 and then 8 elements a step, so they also get 75 = 64 + 8 + 3 and 576.
std::vector<int> row_lengths(WeightType type) {
  std::vector<int> blocks{1, 2, 3, 7, 40};
  if (!is_quantized(type)) blocks.insert(blocks.end(), {75, 576});
  for (int& b : blocks) b *= block_elems(type);
  return blocks;
}

// ------------------------------------------------------------------- dequantisation

class QuantGolden : public testing::TestWithParam<WeightType> {};

TEST_P(QuantGolden, DequantizeRowMatchesGgufBitForBit) {
  const WeightType type = GetParam();
  const std::string stem = "tests/data/quant/" + upper_name(type);
  const std::vector<uint8_t> blocks = read_bytes(stem + ".blocks");
  const std::vector<uint8_t> golden = read_bytes(stem + ".f32");
  const int n = static_cast<int>(golden.size() / sizeof(float));
  ASSERT_GT(n, 0);
  ASSERT_EQ(blocks.size(), weight_row_bytes(type, n));

  for (SimdLevel level : supported_levels()) {
    std::vector<float> got(n);
    dequantize_row(type, blocks.data(), got.data(), n, level);
    for (int i = 0; i < n; i++) {
      uint32_t want;
      std::memcpy(&want, &golden[size_t(i) * 4], 4);
      ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), want)
          << simd_level_name(level) << ", weight " << i << ": " << got[i] << " vs "
          << std::bit_cast<float>(want);
    }
  }
}

// F32 has no golden file: its "dequantisation" is a copy.
INSTANTIATE_TEST_SUITE_P(, QuantGolden,
                         testing::Values(WeightType::F16, WeightType::BF16, WeightType::Q4_0,
                                         WeightType::Q4_1, WeightType::Q5_0, WeightType::Q5_1,
                                         WeightType::Q8_0, WeightType::Q2_K, WeightType::Q3_K,
                                         WeightType::Q4_K, WeightType::Q5_K, WeightType::Q6_K),
                         type_param_name);

TEST(QuantF32, DequantizeRowIsACopy) {
  std::mt19937 rng(1);
  const std::vector<uint8_t> row = random_weights(WeightType::F32, 100, rng);
  const std::vector<float> w = dequantized(WeightType::F32, row, 100);
  EXPECT_EQ(std::memcmp(w.data(), row.data(), row.size()), 0);
}

TEST(QuantF32, DequantizeRowRejectsPartialBlocks) {
  std::vector<uint8_t> row(weight_row_bytes(WeightType::Q4_0, 64));
  std::vector<float> w(64);
  EXPECT_THROW(dequantize_row(WeightType::Q4_0, row.data(), w.data(), 48), std::invalid_argument);
}

// ------------------------------------------------------------------- activations

TEST(QuantActivations, FormatOfEachType) {
  EXPECT_EQ(act_format(WeightType::BF16), ActFormat::F32);
  EXPECT_EQ(act_format(WeightType::Q5_1), ActFormat::Q8_32);
  EXPECT_EQ(act_format(WeightType::Q8_0), ActFormat::Q8_32);
  EXPECT_EQ(act_format(WeightType::Q2_K), ActFormat::Q8_256);
  EXPECT_EQ(act_row_bytes(ActFormat::F32, 64), 256u);
  EXPECT_EQ(act_row_bytes(ActFormat::Q8_32, 64), 2 * sizeof(BlockQ8_32));
  EXPECT_EQ(act_row_bytes(ActFormat::Q8_256, 512), 2 * sizeof(BlockQ8_256));
}

// Four super-blocks of Gaussian activations, each at its own scale, the third all zero.
std::vector<float> activations_at_mixed_scales() {
  std::mt19937 rng(7);
  std::vector<float> x = gaussian_activations(4 * kSuperBlock, rng);
  const float scales[4] = {1.0f, 1e-3f, 0.0f, 40.0f};
  for (size_t i = 0; i < x.size(); i++) x[i] *= scales[i / kSuperBlock];
  return x;
}

// x_i ~= d * q_i within half a step, q in [-127, 127] reaching 127 in a block that is not
// all zero (d = max |x| / 127), and a zero block as d = 0 with q all zero.
void expect_block_rounds(const float* x, float d, const int8_t* q, int n) {
  float max_abs = 0;
  int max_q = 0;
  for (int i = 0; i < n; i++) {
    max_abs = std::fmax(max_abs, std::fabs(x[i]));
    max_q = std::max(max_q, std::abs(int(q[i])));
    ASSERT_LE(std::fabs(x[i] - d * q[i]), d / 2 * (1 + 1e-6f)) << "element " << i;
  }
  EXPECT_EQ(d, max_abs / 127);
  EXPECT_EQ(max_q, max_abs == 0 ? 0 : 127);
}

TEST(QuantActivations, F32IsACopy) {
  const std::vector<float> x = activations_at_mixed_scales();
  const std::vector<uint8_t> q = quantized(ActFormat::F32, x);
  EXPECT_EQ(std::memcmp(q.data(), x.data(), q.size()), 0);
}

TEST(QuantActivations, Q8_32RoundsEachBlockAndSumsIt) {
  const std::vector<float> x = activations_at_mixed_scales();
  const std::vector<uint8_t> q = quantized(ActFormat::Q8_32, x);
  const auto* blocks = reinterpret_cast<const BlockQ8_32*>(q.data());
  for (size_t b = 0; b < x.size() / kBlock; b++) {
    SCOPED_TRACE("block " + std::to_string(b));
    expect_block_rounds(&x[b * kBlock], blocks[b].d, blocks[b].qs, kBlock);
    int sum = 0;
    for (int8_t v : blocks[b].qs) sum += v;
    EXPECT_EQ(blocks[b].sum, blocks[b].d * float(sum));
  }
}

// The definition, one value at a time: d = max |x| / 127 and q = x / d rounded to nearest,
// ties to even, within +-127 (which only binds when d is subnormal). Whichever CPU level
// runs must write exactly these bytes. Returns d.
float round_by_definition(const float* x, int n, int8_t* q) {
  float max_abs = 0;
  for (int i = 0; i < n; i++) max_abs = std::max(max_abs, std::fabs(x[i]));
  const float d = max_abs / 127;
  for (int i = 0; i < n; i++)
    q[i] = static_cast<int8_t>(d == 0 ? 0 : std::nearbyint(std::clamp(x[i] / d, -127.f, 127.f)));
  return d;
}

template <class Block>
std::vector<uint8_t> bytes_of(const std::vector<Block>& blocks) {
  std::vector<uint8_t> bytes(blocks.size() * sizeof(Block));
  std::memcpy(bytes.data(), blocks.data(), bytes.size());
  return bytes;
}

std::vector<uint8_t> q8_32_by_definition(const std::vector<float>& x) {
  std::vector<BlockQ8_32> blocks(x.size() / kBlock);
  for (size_t b = 0; b < blocks.size(); b++) {
    blocks[b].d = round_by_definition(&x[b * kBlock], kBlock, blocks[b].qs);
    int sum = 0;
    for (int8_t q : blocks[b].qs) sum += q;
    blocks[b].sum = blocks[b].d * float(sum);
  }
  return bytes_of(blocks);
}

std::vector<uint8_t> q8_256_by_definition(const std::vector<float>& x) {
  std::vector<BlockQ8_256> blocks(x.size() / kSuperBlock);
  for (size_t b = 0; b < blocks.size(); b++) {
    blocks[b].d = round_by_definition(&x[b * kSuperBlock], kSuperBlock, blocks[b].qs);
    for (int j = 0; j < 16; j++) {
      int sum = 0;
      for (int i = 0; i < 16; i++) sum += blocks[b].qs[16 * j + i];
      blocks[b].bsums[j] = static_cast<int16_t>(sum);
    }
  }
  return bytes_of(blocks);
}

// Mixed scales, then a block of ties and one of subnormals, blocks of `block` values.
std::vector<float> activations_with_edge_cases(int block) {
  std::vector<float> x = activations_at_mixed_scales();
  // Ties: with max |x| = 127, d = 1 and k + 0.5 goes to the even neighbour (past 127.5
  // in a 256-block, which the clamp holds at 127).
  std::vector<float> ties(block);
  for (int i = 0; i < block; i++) ties[i] = float(i - block / 2) + 0.5f;
  ties[0] = 127;
  // Subnormal: d = 190 / 127 of the smallest subnormal rounds to 1 of it, so max |x| / d
  // is 190 and the clamp decides.
  std::vector<float> subnormal(block, 0.0f);
  subnormal[3] = -190 * std::numeric_limits<float>::denorm_min();
  subnormal[5] = 20 * std::numeric_limits<float>::denorm_min();
  x.insert(x.end(), ties.begin(), ties.end());
  x.insert(x.end(), subnormal.begin(), subnormal.end());
  return x;
}

void expect_same_bytes(const std::vector<uint8_t>& got, const std::vector<uint8_t>& want,
                       size_t block_bytes) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); i++)
    ASSERT_EQ(got[i], want[i]) << "byte " << i % block_bytes << " of block " << i / block_bytes;
}

// The format quantize_activations writes (AVX2 where the CPU has it) and the scalar
// version, which a CPU without AVX2 runs, both against the definition.
template <class Block>
void expect_both_versions_write(ActFormat format, const std::vector<float>& x,
                                const std::vector<uint8_t>& want,
                                void (*scalar_version)(const float*, void*, int)) {
  expect_same_bytes(quantized(format, x), want, sizeof(Block));
  std::vector<uint8_t> scalar(want.size());
  scalar_version(x.data(), scalar.data(), int(x.size()));
  expect_same_bytes(scalar, want, sizeof(Block));
}

TEST(QuantActivations, Q8_32IsItsDefinitionBitForBit) {
  const std::vector<float> x = activations_with_edge_cases(kBlock);
  expect_both_versions_write<BlockQ8_32>(ActFormat::Q8_32, x, q8_32_by_definition(x),
                                         detail::quantize_q8_32_scalar);
}

TEST(QuantActivations, Q8_256IsItsDefinitionBitForBit) {
  const std::vector<float> x = activations_with_edge_cases(kSuperBlock);
  expect_both_versions_write<BlockQ8_256>(ActFormat::Q8_256, x, q8_256_by_definition(x),
                                          detail::quantize_q8_256_scalar);
}

TEST(QuantActivations, Q8_256RoundsEachBlockAndSumsEvery16) {
  const std::vector<float> x = activations_at_mixed_scales();
  const std::vector<uint8_t> q = quantized(ActFormat::Q8_256, x);
  const auto* blocks = reinterpret_cast<const BlockQ8_256*>(q.data());
  for (size_t b = 0; b < x.size() / kSuperBlock; b++) {
    SCOPED_TRACE("super-block " + std::to_string(b));
    expect_block_rounds(&x[b * kSuperBlock], blocks[b].d, blocks[b].qs, kSuperBlock);
    for (int j = 0; j < 16; j++) {
      int sum = 0;
      for (int i = 0; i < 16; i++) sum += blocks[b].qs[16 * j + i];
      EXPECT_EQ(blocks[b].bsums[j], sum) << "sum " << j;
    }
  }
}

// ------------------------------------------------------------------- dot products

class QuantDot : public testing::TestWithParam<WeightType> {};

// Integer arithmetic inside blocks and float scales outside reproduce the plain dot product
// of the dequantised weights with the dequantised activations.
TEST_P(QuantDot, ScalarIsTheFormatsArithmetic) {
  const WeightType type = GetParam();
  const ActFormat format = act_format(type);
  const DotFn dot = dot_function(type, SimdLevel::Scalar);
  std::mt19937 rng(11);
  for (int n : row_lengths(type)) {
    for (int row = 0; row < 4; row++) {
      const std::vector<uint8_t> w = random_weights(type, n, rng);
      const std::vector<uint8_t> x = quantized(format, gaussian_activations(n, rng));
      const ExactDot want =
          exact_dot(dequantized(type, w, n), dequantized_activations(format, x, n));
      EXPECT_NEAR(dot(w.data(), x.data(), n), want.value, 1e-5 * want.magnitude)
          << n << " weights, row " << row;
    }
  }
}

TEST_P(QuantDot, EveryLevelMatchesScalar) {
  const WeightType type = GetParam();
  const ActFormat format = act_format(type);
  const DotFn scalar = dot_function(type, SimdLevel::Scalar);
  std::mt19937 rng(12);
  for (SimdLevel level : supported_levels()) {
    const DotFn dot = dot_function(type, level);
    for (int n : row_lengths(type)) {
      for (int row = 0; row < 4; row++) {
        const std::vector<uint8_t> w = random_weights(type, n, rng);
        const std::vector<uint8_t> x = quantized(format, gaussian_activations(n, rng));
        const double magnitude =
            exact_dot(dequantized(type, w, n), dequantized_activations(format, x, n)).magnitude;
        EXPECT_NEAR(dot(w.data(), x.data(), n), scalar(w.data(), x.data(), n), 1e-5 * magnitude)
            << simd_level_name(level) << ", " << n << " weights, row " << row;
      }
    }
  }
}

// The rows at once: each row's sum is the one-row dot product's (the same blocks, summed in
// another order), on rows that do not start where the previous one ends.
TEST_P(QuantDot, RowsAtOnceMatchOneAtATime) {
  const WeightType type = GetParam();
  const ActFormat format = act_format(type);
  const DotFn scalar = dot_function(type, SimdLevel::Scalar);
  std::mt19937 rng(14);
  for (SimdLevel level : supported_levels()) {
    const DotRowsFn dot_rows = dot_rows_function(type, level);
    if (!dot_rows) continue;
    for (int n : row_lengths(type)) {
      const size_t row_bytes = weight_row_bytes(type, n), stride = row_bytes + weight_type_info(type).block_bytes;
      std::vector<uint8_t> w(stride * kDotRows);
      for (int r = 0; r < kDotRows; r++) {
        const std::vector<uint8_t> row = random_weights(type, n, rng);
        std::copy(row.begin(), row.end(), w.begin() + r * stride);
      }
      const std::vector<uint8_t> x = quantized(format, gaussian_activations(n, rng));
      float got[kDotRows];
      dot_rows(w.data(), stride, x.data(), n, got);
      for (int r = 0; r < kDotRows; r++) {
        const std::vector<uint8_t> row(w.begin() + r * stride, w.begin() + r * stride + row_bytes);
        const double magnitude =
            exact_dot(dequantized(type, row, n), dequantized_activations(format, x, n)).magnitude;
        EXPECT_NEAR(got[r], scalar(row.data(), x.data(), n), 1e-5 * magnitude)
            << simd_level_name(level) << ", " << n << " weights, row " << r;
      }
    }
  }
}

// Rounding the activations to 8 bits is the one approximation the quantised dot products
// add. Each x_i moves by e_i, uniform within +-d/2 (variance d^2 / 12) and independent of
// w, so the error sum w_i e_i has a standard deviation of |w| d / sqrt(12), against a
// typical dot of |w| sigma. With d = max |x| / 127 and the largest of 32 Gaussians ~2.5
// sigma (of 256, ~3 sigma), the relative error's RMS is ~2.5 / 127 / 3.46 = 0.006 (256:
// 0.007). Measured here: 0.0052 to 0.0058 for the 32-block types (a numpy simulation of
// 256-blocks: 0.0065). The bound leaves room for the spread of an RMS over 64 rows (~9%).
// The float types' error is float rounding.
TEST_P(QuantDot, ActivationQuantizationErrorIsSmall) {
  const WeightType type = GetParam();
  const ActFormat format = act_format(type);
  const DotFn dot = dot_function(type);
  const int n = 1536;  // a whole number of blocks of every type
  std::mt19937 rng(13);
  double squared_error = 0;
  const int rows = 64;
  for (int row = 0; row < rows; row++) {
    const std::vector<uint8_t> w = random_weights(type, n, rng);
    const std::vector<float> x = gaussian_activations(n, rng);
    const std::vector<float> w_values = dequantized(type, w, n);
    double want = 0, squares = 0;  // the exact dot, and sum (w_i x_i)^2
    for (int i = 0; i < n; i++) {
      want += double(w_values[i]) * x[i];
      squares += std::pow(double(w_values[i]) * x[i], 2);
    }
    const double got = dot(w.data(), quantized(format, x).data(), n);
    squared_error += std::pow(got - want, 2) / squares;
  }
  const double rms = std::sqrt(squared_error / rows);
  RecordProperty("relative_rms_error", std::to_string(rms));
  EXPECT_LT(rms, is_quantized(type) ? 0.01 : 1e-5);
}

INSTANTIATE_TEST_SUITE_P(, QuantDot, testing::ValuesIn(kAllTypes), type_param_name);

// ------------------------------------------------------------------- many rows at once

// dots_function: every (x row, w row) pair is the one-row dot product. 1-9 x rows reach
// every pass of up to 4 rows and its tail; 1-17 w rows every tile of 2, 4, 6 or 8 rows
// (AVX2) or 6, 8, 12 or 16 (AVX-512) and its tail; the lengths (head dims) every tail of 8
// elements, and of 16 under AVX-512's masks. The w rows lie apart, x's rows n floats
// apart, out's rows wider than the w rows it gets.
class QuantDots : public testing::TestWithParam<WeightType> {};

TEST_P(QuantDots, EveryPairIsTheDotProduct) {
  const WeightType type = GetParam();
  const DotFn dot = dot_function(type, SimdLevel::Scalar);
  std::mt19937 rng(15);
  for (SimdLevel level : supported_levels()) {
    const DotsFn dots = dots_function(type, level);
    for (int n : {1, 7, 8, 13, 64, 75, 128}) {
      const size_t row_bytes = weight_row_bytes(type, n), stride = row_bytes + 8;  // rows apart, each aligned for its type
      for (int n_rows : {1, 2, 3, 5, 9, 13, 17}) {
        std::vector<uint8_t> w(stride * n_rows);
        for (int j = 0; j < n_rows; j++) {
          const std::vector<uint8_t> row = random_weights(type, n, rng);
          std::copy(row.begin(), row.end(), w.begin() + j * stride);
        }
        for (int n_x : {1, 2, 3, 4, 5, 8, 9}) {
          const std::vector<float> x = gaussian_activations(n * n_x, rng);
          const int ld_out = n_rows + 3;
          std::vector<float> out(size_t(n_x) * ld_out, -7.0f);
          dots(w.data(), stride, n_rows, x.data(), n_x, n, out.data(), ld_out);
          for (int i = 0; i < n_x; i++) {
            const std::vector<float> xi(x.begin() + i * n, x.begin() + (i + 1) * n);
            for (int j = 0; j < n_rows; j++) {
              const std::vector<uint8_t> row(w.begin() + j * stride, w.begin() + j * stride + row_bytes);
              const double magnitude = exact_dot(dequantized(type, row, n), xi).magnitude;
              EXPECT_NEAR(out[size_t(i) * ld_out + j], dot(row.data(), xi.data(), n), 1e-5 * magnitude)
                  << simd_level_name(level) << ", n " << n << ", x row " << i << " of " << n_x
                  << ", w row " << j << " of " << n_rows;
            }
            for (int j = n_rows; j < ld_out; j++)
              EXPECT_EQ(out[size_t(i) * ld_out + j], -7.0f) << "written past the rows";
          }
        }
      }
    }
  }
}

// weighted_sums_function: each output is acc plus the weighted sum of the rows, in double
// within float rounding of the sum of magnitudes; the same sizes as above (n: passes of
// 64, 32 and 16 columns and every tail of 8, or under AVX-512 passes of 64 and 16 and tails
// under a mask), and p's rows wider than the w rows they weigh.
TEST_P(QuantDots, WeightedSumsAddTheWeightedRows) {
  const WeightType type = GetParam();
  std::mt19937 rng(16);
  for (SimdLevel level : supported_levels()) {
    const WeightedSumsFn weighted_sums = weighted_sums_function(type, level);
    for (int n : {1, 7, 8, 13, 16, 24, 40, 64, 75}) {
      const size_t row_bytes = weight_row_bytes(type, n), stride = row_bytes + 8;  // rows apart, each aligned for its type
      for (int n_rows : {1, 2, 5, 9}) {
        std::vector<uint8_t> w(stride * n_rows);
        std::vector<std::vector<float>> rows;
        for (int j = 0; j < n_rows; j++) {
          const std::vector<uint8_t> row = random_weights(type, n, rng);
          std::copy(row.begin(), row.end(), w.begin() + j * stride);
          rows.push_back(dequantized(type, row, n));
        }
        for (int n_x : {1, 2, 3, 4, 5, 8, 9}) {
          const int ld_p = n_rows + 2;
          const std::vector<float> p = gaussian_activations(n_x * ld_p, rng);
          const std::vector<float> start = gaussian_activations(n_x * n, rng);
          std::vector<float> acc = start;
          weighted_sums(w.data(), stride, n_rows, p.data(), ld_p, n_x, n, acc.data());
          for (int i = 0; i < n_x; i++)
            for (int t = 0; t < n; t++) {
              double want = start[i * n + t], magnitude = std::fabs(want);
              for (int j = 0; j < n_rows; j++) {
                want += double(p[i * ld_p + j]) * rows[j][t];
                magnitude += std::fabs(double(p[i * ld_p + j]) * rows[j][t]);
              }
              EXPECT_NEAR(acc[i * n + t], want, 1e-5 * magnitude)
                  << simd_level_name(level) << ", n " << n << ", x row " << i << " of " << n_x
                  << ", column " << t << ", " << n_rows << " rows";
            }
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(, QuantDots,
                         testing::Values(WeightType::F32, WeightType::F16, WeightType::BF16),
                         type_param_name);

TEST(QuantDispatch, DotsAreForFloatTypesOnly) {
  EXPECT_THROW(dots_function(WeightType::Q8_0), std::invalid_argument);
  EXPECT_THROW(dots_function(WeightType::Q4_K, SimdLevel::Scalar), std::invalid_argument);
  EXPECT_THROW(weighted_sums_function(WeightType::Q4_1), std::invalid_argument);
}

TEST(QuantDispatch, LevelsStartWithScalarAndTheDefaultIsTheWidest) {
  const std::vector<SimdLevel> levels = supported_levels();
  ASSERT_FALSE(levels.empty());
  EXPECT_EQ(levels.front(), SimdLevel::Scalar);
  EXPECT_STREQ(simd_level_name(SimdLevel::Scalar), "scalar");
  for (WeightType type : kAllTypes) {
    EXPECT_EQ(dot_function(type), dot_function(type, levels.back())) << upper_name(type);
    EXPECT_EQ(dot_rows_function(type), dot_rows_function(type, levels.back())) << upper_name(type);
    EXPECT_EQ(dot_rows_function(type, SimdLevel::Scalar), nullptr) << upper_name(type);
  }
  // The types decode reads most have a version of their own where the CPU has AVX2, and
  // decode attention's products one for AVX-512 where it has that.
  if (levels.back() >= SimdLevel::Avx2) {
    for (WeightType type :
         {WeightType::Q4_0, WeightType::Q4_1, WeightType::Q5_0, WeightType::Q5_1, WeightType::Q8_0}) {
      EXPECT_NE(dot_rows_function(type), nullptr) << upper_name(type);
    }
  }
  if (levels.back() == SimdLevel::Avx512) {
    EXPECT_STREQ(simd_level_name(levels.back()), "avx512");
    for (WeightType type : {WeightType::F32, WeightType::F16, WeightType::BF16}) {
      EXPECT_NE(dots_function(type), dots_function(type, SimdLevel::Avx2)) << upper_name(type);
      EXPECT_NE(weighted_sums_function(type), weighted_sums_function(type, SimdLevel::Avx2))
          << upper_name(type);
    }
  }
}

}  // namespace
}  // namespace kvlm::quant
