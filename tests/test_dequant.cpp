// Dequantisation: hand-built blocks with hand-computed weights, half-precision edge
// cases, and quantise -> dequantise round trips within each format's error bound.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>

#include "model/dequant.h"
#include "tests/gguf_writer.h"

namespace kvlm {
namespace {

using gguf::TensorType;

constexpr float kInf = std::numeric_limits<float>::infinity();

std::vector<float> dequantized(TensorType type, const std::vector<uint8_t>& bytes, size_t n) {
  std::vector<float> out(n);
  dequantize(type, bytes.data(), out.data(), n);
  return out;
}

void append_u16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v & 0xFF));
  out.push_back(static_cast<uint8_t>(v >> 8));
}

// ---------------------------------------------------------------- f16 / bf16

TEST(Half, F16KnownValues) {
  EXPECT_EQ(f16_to_f32(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xC000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x3555), 0.333251953125f);
  EXPECT_EQ(f16_to_f32(0x7BFF), 65504.0f);               // largest finite
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03FF), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x7C00), kInf);
  EXPECT_EQ(f16_to_f32(0xFC00), -kInf);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7E00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7C01)));  // signalling NaN is still NaN
  EXPECT_EQ(std::bit_cast<uint32_t>(f16_to_f32(0x8000)), 0x80000000u);  // -0 keeps its sign
}

TEST(Half, F32ToF16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3C00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xC000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  // 1 + 2^-11 is halfway between 1 and the next f16 (1 + 2^-10): ties go to the even one.
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(f32_to_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3C01);
  // Overflow: 65520 is halfway between 65504 and the first value past f16's range.
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7BFF);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7C00);
  EXPECT_EQ(f32_to_f16(1e10f), 0x7C00);
  EXPECT_EQ(f32_to_f16(-kInf), 0xFC00);
  // Subnormals and underflow, in units of 2^-24.
  const float unit = std::ldexp(1.0f, -24);
  EXPECT_EQ(f32_to_f16(unit), 0x0001);
  EXPECT_EQ(f32_to_f16(0.5f * unit), 0x0000);  // tie with 0 rounds to even 0
  EXPECT_EQ(f32_to_f16(0.500001f * unit), 0x0001);
  EXPECT_EQ(f32_to_f16(1.5f * unit), 0x0002);     // tie between 1 and 2 goes to 2
  EXPECT_EQ(f32_to_f16(2.5f * unit), 0x0002);     // tie between 2 and 3 goes to 2
  EXPECT_EQ(f32_to_f16(1023.5f * unit), 0x0400);  // largest subnormal rounds up to a normal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -30)), 0x8000);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::denorm_min()), 0x0000);
  const uint16_t nan = f32_to_f16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
  // A NaN whose payload sits only in the low bits must not turn into inf.
  EXPECT_NE(f32_to_f16(std::bit_cast<float>(0x7F800001u)), 0x7C00);
}

TEST(Half, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f)))) << h;
    } else {
      EXPECT_EQ(f32_to_f16(f), h) << h;
    }
  }
}

#ifdef __FLT16_MAX__
// The compiler's _Float16 conversion is IEEE round-to-nearest-even: a second opinion.
TEST(Half, F32ToF16MatchesCompilerConversion) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 1'000'000; ++i) {
    // Random bit patterns cover every exponent; shifting the exponent toward f16's
    // range keeps most of them out of the trivially-inf/zero cases.
    uint32_t x = bits(rng);
    if (i % 2) x = (x & 0x807FFFFF) | ((100 + (x >> 23) % 50) << 23);
    const float f = std::bit_cast<float>(x);
    if (std::isnan(f)) continue;
    const auto expected = std::bit_cast<uint16_t>(static_cast<_Float16>(f));
    ASSERT_EQ(f32_to_f16(f), expected) << std::hexfloat << f;
  }
}
#endif

TEST(Half, Bf16) {
  EXPECT_EQ(bf16_to_f32(0x3F80), 1.0f);
  EXPECT_EQ(bf16_to_f32(0xC040), -3.0f);
  EXPECT_EQ(bf16_to_f32(0x7F80), kInf);
  EXPECT_EQ(bf16_to_f32(0x0001), std::bit_cast<float>(0x00010000u));  // subnormal
  EXPECT_TRUE(std::isnan(bf16_to_f32(0x7FC0)));
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3F80);
  // bf16 keeps 7 mantissa bits: 1 + 2^-8 is a tie between 1 and 1 + 2^-7.
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7F80);  // rounds past the top: inf
  EXPECT_EQ(f32_to_bf16(-kInf), 0xFF80);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(std::bit_cast<float>(0x7F800001u)))));
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    if (!std::isnan(f)) {
      EXPECT_EQ(f32_to_bf16(f), h) << h;
    }
  }
}

// ---------------------------------------------------------------- hand-built blocks

TEST(Dequant, Q4_0Block) {
  // d = 0.5 (f16 0x3800); byte i holds q = i in its low nibble and q = 15 - i in its high one.
  std::vector<uint8_t> block;
  append_u16(block, 0x3800);
  for (int i = 0; i < 16; ++i) block.push_back(static_cast<uint8_t>(i | ((15 - i) << 4)));
  const std::vector<float> w = dequantized(TensorType::Q4_0, block, 32);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(w[i], 0.5f * (i - 8)) << i;            // low nibbles are weights 0..15
    EXPECT_EQ(w[i + 16], 0.5f * (15 - i - 8)) << i;  // high nibbles are weights 16..31
  }
  EXPECT_EQ(w[0], -4.0f);
  EXPECT_EQ(w[15], 3.5f);
  EXPECT_EQ(w[16], 3.5f);
}

TEST(Dequant, Q4_1Block) {
  // d = 0.25 (0x3400), m = -1 (0xBC00): weight = 0.25 q - 1.
  std::vector<uint8_t> block;
  append_u16(block, 0x3400);
  append_u16(block, 0xBC00);
  for (int i = 0; i < 16; ++i) block.push_back(static_cast<uint8_t>(i | ((15 - i) << 4)));
  const std::vector<float> w = dequantized(TensorType::Q4_1, block, 32);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(w[i], 0.25f * i - 1) << i;
    EXPECT_EQ(w[i + 16], 0.25f * (15 - i) - 1) << i;
  }
  EXPECT_EQ(w[0], -1.0f);
  EXPECT_EQ(w[15], 2.75f);
}

TEST(Dequant, Q8_0Block) {
  // d = 0.125 (0x3000); q runs over -128, -120, ..., 120 (signed bytes).
  std::vector<uint8_t> block;
  append_u16(block, 0x3000);
  for (int i = 0; i < 32; ++i) {
    block.push_back(static_cast<uint8_t>(static_cast<int8_t>(i * 8 - 128)));
  }
  const std::vector<float> w = dequantized(TensorType::Q8_0, block, 32);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(w[i], 0.125f * (i * 8 - 128)) << i;
  EXPECT_EQ(w[0], -16.0f);
  EXPECT_EQ(w[31], 15.0f);
}

TEST(Dequant, ConsecutiveBlocksUseTheirOwnScale) {
  // Two Q8_0 blocks (34 bytes each, so the second scale is not 2-byte aligned in memory).
  std::vector<uint8_t> bytes;
  append_u16(bytes, 0x3C00);  // 1.0
  for (int i = 0; i < 32; ++i) bytes.push_back(1);
  append_u16(bytes, 0xC000);  // -2.0
  for (int i = 0; i < 32; ++i) bytes.push_back(3);
  std::vector<uint8_t> shifted(1);  // start at an odd address
  shifted.insert(shifted.end(), bytes.begin(), bytes.end());
  std::vector<float> w(64);
  dequantize(TensorType::Q8_0, shifted.data() + 1, w.data(), w.size());
  for (int i = 0; i < 32; ++i) EXPECT_EQ(w[i], 1.0f) << i;
  for (int i = 32; i < 64; ++i) EXPECT_EQ(w[i], -6.0f) << i;
}

TEST(Dequant, HalfAndFloatTensors) {
  std::vector<uint8_t> f16, bf16, f32(8);
  for (uint16_t h : {0x3C00, 0xC000, 0x7C00, 0x0001}) append_u16(f16, h);
  for (uint16_t h : {0x3F80, 0xC040}) append_u16(bf16, h);
  const float floats[2] = {1.25f, -7.0f};
  std::memcpy(f32.data(), floats, sizeof floats);
  EXPECT_EQ(dequantized(TensorType::F16, f16, 4),
            (std::vector<float>{1, -2, kInf, std::ldexp(1.0f, -24)}));
  EXPECT_EQ(dequantized(TensorType::BF16, bf16, 2), (std::vector<float>{1, -3}));
  EXPECT_EQ(dequantized(TensorType::F32, f32, 2), (std::vector<float>{1.25f, -7.0f}));
}

TEST(Dequant, EmptyTensorsAreANoOp) {
  for (TensorType type : {TensorType::F32, TensorType::F16, TensorType::Q4_1}) {
    dequantize(type, nullptr, nullptr, 0);
  }
}

TEST(Dequant, RejectsPartialBlocks) {
  std::vector<uint8_t> bytes(64);
  std::vector<float> out(48);
  EXPECT_THROW(dequantize(TensorType::Q4_0, bytes.data(), out.data(), 48), std::invalid_argument);
}

// ---------------------------------------------------------------- writer quantisers

TEST(Quantize, MatchesHandBuiltBlocks) {
  // The value of largest magnitude, -4, sets d = -4 / -8 = 0.5 and every value is an exact
  // multiple of it, so Q4_0 reproduces the hand-built block of the Q4_0Block test.
  std::vector<float> values(32);
  for (int i = 0; i < 16; ++i) {
    values[i] = 0.5f * (i - 8);
    values[i + 16] = 0.5f * (7 - i);
  }
  std::vector<uint8_t> expected;
  append_u16(expected, 0x3800);
  for (int i = 0; i < 16; ++i) expected.push_back(static_cast<uint8_t>(i | ((15 - i) << 4)));
  EXPECT_EQ(test::quantize(TensorType::Q4_0, values), expected);

  // Multiples of 0.125 whose largest magnitude is 127 * 0.125, so d = 0.125 exactly and
  // every q is exact.
  std::vector<float> ramp(32);
  for (int i = 0; i < 32; ++i) ramp[i] = 0.125f * static_cast<float>(i == 31 ? 127 : i * 8 - 124);
  const std::vector<uint8_t> q8 = test::quantize(TensorType::Q8_0, ramp);
  ASSERT_EQ(q8.size(), 34u);
  EXPECT_EQ(q8[0] | (q8[1] << 8), 0x3000);
  EXPECT_EQ(static_cast<int8_t>(q8[2]), -124);
  EXPECT_EQ(static_cast<int8_t>(q8[33]), 127);
  EXPECT_EQ(dequantized(TensorType::Q8_0, q8, 32), ramp);

  // An all-zero block has d = 0 and dequantises to zeros, not NaN.
  for (TensorType type : {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q8_0}) {
    EXPECT_EQ(dequantized(type, test::quantize(type, std::vector<float>(32)), 32),
              std::vector<float>(32));
  }
}

// Largest error a format may make on a block of 32 values: half a quantisation step, plus
// the error from storing d (and m) as f16 (relative 2^-11 on values up to the block's range).
float error_bound(TensorType type, const float* block) {
  float amax = 0, min = block[0], max = block[0];
  for (int i = 0; i < 32; ++i) {
    amax = std::max(amax, std::fabs(block[i]));
    min = std::min(min, block[i]);
    max = std::max(max, block[i]);
  }
  const float f16_error = amax * 0x1p-10f;
  switch (type) {
    case TensorType::Q8_0: return amax / 127 * 0.5f + f16_error;
    case TensorType::Q4_0: return amax / 8 + f16_error;  // -max lands one step past q = 15
    case TensorType::Q4_1: return (max - min) / 15 * 0.5f + 2 * f16_error;
    case TensorType::F16: return amax * 0x1p-11f;
    case TensorType::BF16: return amax * 0x1p-8f;
    case TensorType::F32: return 0;
    default: break;  // test::quantize writes only the types above
  }
  ADD_FAILURE() << "no error bound for " << gguf::type_name(type);
  return 0;
}

TEST(Quantize, RoundTripWithinErrorBound) {
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 0.02f);  // typical weight scale
  // Large enough that dequantize takes its multi-threaded path.
  std::vector<float> values(32 * 40000);
  for (float& v : values) v = normal(rng);
  values[5] = 0.5f;  // an outlier in one block
  for (TensorType type : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0,
                          TensorType::Q4_0, TensorType::Q4_1}) {
    const std::vector<uint8_t> bytes = test::quantize(type, values);
    ASSERT_EQ(bytes.size(), gguf::tensor_bytes(type, values.size()));
    const std::vector<float> back = dequantized(type, bytes, values.size());
    size_t failures = 0;
    for (size_t b = 0; b < values.size(); b += 32) {
      const float bound = error_bound(type, &values[b]);
      for (size_t i = b; i < b + 32; ++i) {
        if (std::fabs(back[i] - values[i]) > bound && failures++ < 5) {
          ADD_FAILURE() << gguf::type_name(type) << " weight " << i << ": " << values[i] << " -> "
                        << back[i] << ", bound " << bound;
        }
      }
    }
    EXPECT_EQ(failures, 0u) << gguf::type_name(type);
  }
}

}  // namespace
}  // namespace kvlm
