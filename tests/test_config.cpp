// RoPE frequencies (plain, linear, Llama-3 scaling) and config validation.
#include <gtest/gtest.h>

#include <cmath>

#include "model/config.h"

namespace kvlm {
namespace {

ModelConfig tiny() {
  ModelConfig c;
  c.n_layers = 2, c.dim = 64, c.n_heads = 4, c.n_kv_heads = 2, c.head_dim = 16, c.ffn_dim = 128;
  c.vocab_size = 100, c.context_length = 256, c.rope_dim = 16, c.rope_theta = 10000;
  return c;
}

TEST(Rope, PlainFrequenciesAreThetaPowers) {
  ModelConfig c = tiny();
  std::vector<float> f = rope_inv_frequencies(c);
  ASSERT_EQ(f.size(), 8u);
  EXPECT_FLOAT_EQ(f[0], 1.0f);
  EXPECT_NEAR(f[1], std::pow(10000.0, -2.0 / 16), 1e-7);
  EXPECT_NEAR(f[7], std::pow(10000.0, -14.0 / 16), 1e-9);
}

TEST(Rope, LinearScalingDividesEveryFrequency) {
  ModelConfig c = tiny();
  std::vector<float> plain = rope_inv_frequencies(c);
  c.rope_scaling = RopeScaling::Linear;
  c.rope_factor = 4;
  std::vector<float> scaled = rope_inv_frequencies(c);
  for (size_t i = 0; i < plain.size(); i++) EXPECT_FLOAT_EQ(scaled[i], plain[i] / 4);
}

// Llama-3.1 rule with factor 8, low 1, high 4, original context 8192, theta 500000,
// head dim 128: wavelengths below 8192/4 = 2048 keep their frequency, above 8192 are
// divided by 8, in between blend linearly in (original / wavelength).
TEST(Rope, Llama3ScalingKeepsHighFrequenciesAndSlowsLowOnes) {
  ModelConfig c = tiny();
  c.head_dim = c.rope_dim = 128, c.dim = 512, c.rope_theta = 500000;
  ModelConfig s = c;
  s.rope_scaling = RopeScaling::Llama3;
  s.rope_factor = 8, s.rope_low_freq_factor = 1, s.rope_high_freq_factor = 4;
  s.rope_original_context = 8192;
  std::vector<float> plain = rope_inv_frequencies(c), scaled = rope_inv_frequencies(s);
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < plain.size(); i++) {
    double wavelen = 2 * M_PI / plain[i];
    if (wavelen < 2048) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i]);
      kept++;
    } else if (wavelen > 8192) {
      EXPECT_FLOAT_EQ(scaled[i], plain[i] / 8);
      divided++;
    } else {
      double smooth = (8192 / wavelen - 1) / 3;
      EXPECT_NEAR(scaled[i], (1 - smooth) * plain[i] / 8 + smooth * plain[i], 1e-6 * plain[i]);
      blended++;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
}

TEST(Config, ValidateNamesTheBadField) {
  EXPECT_NO_THROW(validate(tiny(), "m.gguf"));
  auto message = [](ModelConfig c) {
    try {
      validate(c, "m.gguf");
    } catch (const std::runtime_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  ModelConfig c = tiny();
  c.n_kv_heads = 3;
  EXPECT_NE(message(c).find("not a multiple of kv heads"), std::string::npos);
  c = tiny();
  c.n_layers = 1 << 20;
  EXPECT_NE(message(c).find("m.gguf: layers"), std::string::npos);
  c = tiny();
  c.vocab_size = 0;
  EXPECT_NE(message(c).find("vocab size"), std::string::npos);
  c = tiny();
  c.rms_eps = 0;
  EXPECT_NE(message(c).find("epsilon"), std::string::npos);
}

}  // namespace
}  // namespace kvlm
