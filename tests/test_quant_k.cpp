// The k-quant kernels (kernels/cpu/quant_k.cpp): dequantisation against the gguf package's
// golden output, the activation quantiser's bounds, and the dot products against the
// float dot product of the dequantised operands (the scalar version) and against the
// scalar version (the AVX2 one).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <iterator>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/quant_impl.h"
#include "kernels/quant_blocks.h"
#include "model/dequant.h"
#include "tests/model_fixture.h"
#include "tests/random_weights.h"

namespace kvlm::quant {
namespace {

struct KQuant {
  WeightType type;
  const detail::TypeKernels* kernels;
};

std::string name(WeightType type) {
  std::string s = weight_type_name(type);
  for (char& c : s) c = static_cast<char>(std::toupper(c));
  return s;
}
void PrintTo(const KQuant& k, std::ostream* os) { *os << name(k.type); }

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// Writes `value()` into every f16 scale field (d, dmin) of the blocks in `bytes`.
template <class Value>
void set_scale_fields(const KQuant& k, std::vector<uint8_t>& bytes, Value value) {
  const size_t block_bytes = weight_type_info(k.type).block_bytes;
  for (size_t b = 0; b < bytes.size() / block_bytes; ++b)
    for (size_t field : test::scale_offsets(k.type)) {
      const uint16_t h = f32_to_f16(value());
      std::memcpy(&bytes[b * block_bytes + field], &h, sizeof h);
    }
}

// `count` super-blocks of random weights (tests/random_weights.h).
std::vector<uint8_t> random_blocks(const KQuant& k, int count, std::mt19937& rng) {
  return test::random_weights(k.type, count * kSuperBlock, rng);
}

std::vector<float> random_floats(int n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) v = normal(rng);
  return x;
}

std::vector<BlockQ8_256> quantized(const std::vector<float>& x) {
  std::vector<BlockQ8_256> q(x.size() / kSuperBlock);
  quantize_activations(ActFormat::Q8_256, x.data(), q.data(), static_cast<int>(x.size()));
  return q;
}

// A weight row and a row of activations, raw and both dequantised (the activations as
// the dot products see them: d * q).
struct DotCase {
  std::vector<uint8_t> w;
  std::vector<BlockQ8_256> x;
  std::vector<float> w_float, x_float;

  DotCase(const KQuant& k, std::vector<uint8_t> weights, const std::vector<float>& activations)
      : w(std::move(weights)), x(quantized(activations)), w_float(activations.size()) {
    k.kernels->dequantize(w.data(), w_float.data(), n());
    for (const BlockQ8_256& b : x)
      for (int8_t q : b.qs) x_float.push_back(b.d * q);
  }
  int n() const { return static_cast<int>(w_float.size()); }
  double float_dot() const {
    double s = 0;
    for (int i = 0; i < n(); ++i) s += double(w_float[i]) * x_float[i];
    return s;
  }
  // sum |w_i x_i|: what the rounding errors of a dot product are relative to (the dot
  // product itself can cancel to near zero).
  double magnitude() const {
    double s = 0;
    for (int i = 0; i < n(); ++i) s += std::fabs(double(w_float[i]) * x_float[i]);
    return s;
  }
};

DotCase random_case(const KQuant& k, int super_blocks, std::mt19937& rng) {
  std::vector<uint8_t> w = random_blocks(k, super_blocks, rng);
  return DotCase(k, std::move(w), random_floats(super_blocks * kSuperBlock, rng));
}

bool cpu_has_avx2() {
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
}

class QuantK : public ::testing::TestWithParam<KQuant> {};

TEST_P(QuantK, DequantizeMatchesGoldenBitForBit) {
  const std::string stem = test::data_path("quant/" + name(GetParam().type));
  const std::vector<uint8_t> blocks = read_file(stem + ".blocks");
  const std::vector<uint8_t> golden = read_file(stem + ".f32");
  ASSERT_FALSE(blocks.empty()) << stem << ".blocks";
  const int n = static_cast<int>(golden.size() / sizeof(float));
  ASSERT_EQ(blocks.size() / weight_type_info(GetParam().type).block_bytes * kSuperBlock,
            size_t(n));
  std::vector<float> got(n);
  GetParam().kernels->dequantize(blocks.data(), got.data(), n);
  for (int i = 0; i < n; ++i) {
    uint32_t want;
    std::memcpy(&want, &golden[i * sizeof(float)], sizeof want);
    ASSERT_EQ(std::bit_cast<uint32_t>(got[i]), want)
        << "weight " << i << ": got " << got[i] << ", want " << std::bit_cast<float>(want);
  }
}

TEST_P(QuantK, ScalarDotIsTheDotOfTheDequantizedRows) {
  std::mt19937 rng(7);
  for (int super_blocks : {1, 2, 5}) {
    for (int trial = 0; trial < 20; ++trial) {
      const DotCase c = random_case(GetParam(), super_blocks, rng);
      ASSERT_NEAR(GetParam().kernels->scalar(c.w.data(), c.x.data(), c.n()), c.float_dot(),
                  1e-5 * c.magnitude())
          << super_blocks << " super-blocks, trial " << trial;
    }
  }
}

TEST_P(QuantK, Avx2DotAgreesWithScalar) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "this CPU lacks AVX2, FMA or F16C";
  ASSERT_NE(GetParam().kernels->avx2, nullptr);
  std::mt19937 rng(11);
  for (int super_blocks : {1, 2, 3, 17}) {
    for (int trial = 0; trial < 20; ++trial) {
      const DotCase c = random_case(GetParam(), super_blocks, rng);
      const float scalar = GetParam().kernels->scalar(c.w.data(), c.x.data(), c.n());
      const float avx2 = GetParam().kernels->avx2(c.w.data(), c.x.data(), c.n());
      ASSERT_NEAR(avx2, scalar, 1e-5 * c.magnitude())
          << super_blocks << " super-blocks, trial " << trial;
    }
  }
}

// Every byte 0x00 or 0xFF (the smallest or largest q in every weight) against activations
// that are all +-127: the largest partial sums the integer arithmetic meets.
TEST_P(QuantK, ExtremeBlocksAgreeAcrossLevels) {
  for (uint8_t fill : {0x00, 0xFF}) {
    for (float sign : {1.0f, -1.0f}) {
      std::vector<uint8_t> w(size_t(weight_type_info(GetParam().type).block_bytes) * 2, fill);
      set_scale_fields(GetParam(), w, [] { return 0.05f; });
      const DotCase c(GetParam(), std::move(w), std::vector<float>(2 * kSuperBlock, sign));
      const std::string what = "fill " + std::to_string(fill) + ", sign " + std::to_string(sign);
      EXPECT_NEAR(GetParam().kernels->scalar(c.w.data(), c.x.data(), c.n()), c.float_dot(),
                  1e-5 * c.magnitude())
          << what;
      if (cpu_has_avx2()) {
        EXPECT_NEAR(GetParam().kernels->avx2(c.w.data(), c.x.data(), c.n()), c.float_dot(),
                    1e-5 * c.magnitude())
            << what;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    , QuantK,
    ::testing::Values(
        KQuant{WeightType::Q2_K, &detail::kQ2_K}, KQuant{WeightType::Q3_K, &detail::kQ3_K},
        KQuant{WeightType::Q4_K, &detail::kQ4_K}, KQuant{WeightType::Q5_K, &detail::kQ5_K},
        KQuant{WeightType::Q6_K, &detail::kQ6_K}),
    [](const ::testing::TestParamInfo<KQuant>& info) { return name(info.param.type); });

TEST(QuantKActivations, RoundTripWithinHalfAStep) {
  std::mt19937 rng(3);
  std::vector<float> x = random_floats(3 * kSuperBlock, rng);
  x[5] = 0.0f;
  x[300] = 40.0f;  // one outlier sets its super-block's step
  const std::vector<BlockQ8_256> q = quantized(x);
  for (int b = 0; b < 3; ++b) {
    float amax = 0;
    for (int i = 0; i < kSuperBlock; ++i) amax = std::max(amax, std::fabs(x[b * kSuperBlock + i]));
    EXPECT_EQ(q[b].d, amax / 127) << "super-block " << b;
    for (int i = 0; i < kSuperBlock; ++i) {
      const float xi = x[b * kSuperBlock + i], d = q[b].d;
      ASSERT_LE(std::fabs(xi - d * q[b].qs[i]), d / 2 * (1 + 1e-6f))
          << "element " << b * kSuperBlock + i;
    }
    for (int j = 0; j < kSuperBlock / 16; ++j) {
      int sum = 0;
      for (int l = 0; l < 16; ++l) sum += q[b].qs[16 * j + l];
      EXPECT_EQ(q[b].bsums[j], sum) << "super-block " << b << ", sum " << j;
    }
  }
  EXPECT_EQ(q[0].qs[5], 0);
  EXPECT_EQ(q[1].qs[300 - kSuperBlock], 127);
}

TEST(QuantKActivations, ZerosGiveZeroScaleAndQuants) {
  const std::vector<BlockQ8_256> q = quantized(std::vector<float>(kSuperBlock, 0.0f));
  EXPECT_EQ(q[0].d, 0.0f);
  for (int8_t v : q[0].qs) ASSERT_EQ(v, 0);
  for (int16_t s : q[0].bsums) ASSERT_EQ(s, 0);
}

}  // namespace
}  // namespace kvlm::quant
