#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace kvlm {

namespace {

// transformers' dynamic NTK rule: base * (factor * L / L0 - (factor - 1)) ^ (d / (d - 2))
// with L = max(seq_len, L0), so theta is unchanged up to the original context L0.
double dynamic_theta(const ModelConfig& c, int seq_len) {
  const double original = c.rope_original_context;
  const double len = std::max<double>(seq_len, original);
  const double d = c.rope_dim;
  return c.rope_theta * std::pow(c.rope_factor * len / original - (c.rope_factor - 1), d / (d - 2));
}

}  // namespace

std::vector<float> rope_inv_frequencies(const ModelConfig& c, int seq_len) {
  const int pairs = c.rope_dim / 2;
  const double theta = c.rope_scaling == RopeScaling::Dynamic ? dynamic_theta(c, seq_len) : c.rope_theta;
  std::vector<float> inv_freq(pairs);
  for (int i = 0; i < pairs; i++) {
    double f = std::pow(theta, -2.0 * i / c.rope_dim);
    switch (c.rope_scaling) {
      case RopeScaling::None:
      case RopeScaling::Dynamic:  // all in theta
        break;
      case RopeScaling::Linear:  // positions squeezed by the factor: same as slower rotations
        f /= c.rope_factor;
        break;
      case RopeScaling::Llama3: {  // slow the low frequencies only, blend in between
        const double wavelen = 2 * M_PI / f;
        const double low_wavelen = c.rope_original_context / c.rope_low_freq_factor;
        const double high_wavelen = c.rope_original_context / c.rope_high_freq_factor;
        if (wavelen > low_wavelen) {
          f /= c.rope_factor;
        } else if (wavelen >= high_wavelen) {
          double smooth = (c.rope_original_context / wavelen - c.rope_low_freq_factor) /
                          (c.rope_high_freq_factor - c.rope_low_freq_factor);
          f = (1 - smooth) * f / c.rope_factor + smooth * f;
        }
        break;
      }
    }
    if (!c.rope_freq_factors.empty()) f /= c.rope_freq_factors[i];
    inv_freq[i] = float(f);
  }
  return inv_freq;
}

const char* rope_scaling_name(RopeScaling s) {
  switch (s) {
    case RopeScaling::None: return "none";
    case RopeScaling::Linear: return "linear";
    case RopeScaling::Dynamic: return "dynamic";
    case RopeScaling::Llama3: return "llama3";
  }
  return "unknown";
}

void validate(const ModelConfig& c, const std::string& source) {
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(source + ": " + what);
  };
  auto check_range = [&](const char* field, long value, long lo, long hi) {
    if (value < lo || value > hi)
      fail(std::string(field) + " = " + std::to_string(value) + " is outside [" +
           std::to_string(lo) + ", " + std::to_string(hi) + "]");
  };
  check_range("layers", c.n_layers, 1, 1024);
  check_range("hidden size", c.dim, 1, 1 << 16);
  check_range("attention heads", c.n_heads, 1, 1024);
  check_range("kv heads", c.n_kv_heads, 1, c.n_heads);
  check_range("head dim", c.head_dim, 2, 1024);
  check_range("ffn size", c.ffn_dim, 1, 1 << 18);
  check_range("vocab size", c.vocab_size, 1, 1 << 22);
  check_range("context length", c.context_length, 1, 1 << 24);
  check_range("rope dim", c.rope_dim, 2, c.head_dim);
  if (c.n_heads % c.n_kv_heads != 0)
    fail("attention heads (" + std::to_string(c.n_heads) + ") are not a multiple of kv heads (" +
         std::to_string(c.n_kv_heads) + ")");
  if (c.rope_dim % 2 != 0) fail("rope dim " + std::to_string(c.rope_dim) + " is odd");
  if (!(c.rms_eps > 0 && c.rms_eps < 1)) fail("rms norm epsilon is not in (0, 1)");
  if (!(c.rope_theta > 1)) fail("rope theta must be > 1");
  if (c.rope_scaling != RopeScaling::None && !(c.rope_factor >= 1))
    fail("rope scaling factor must be >= 1");
  if (c.rope_scaling == RopeScaling::Llama3 || c.rope_scaling == RopeScaling::Dynamic)
    check_range("rope original context", c.rope_original_context, 1, 1 << 24);
  if (c.rope_scaling == RopeScaling::Dynamic && c.rope_dim <= 2)
    fail("dynamic rope scaling needs more than 2 rotated dims");
  if (c.rope_scaling == RopeScaling::Llama3 && !(c.rope_high_freq_factor > c.rope_low_freq_factor))
    fail("llama3 rope scaling needs high_freq_factor > low_freq_factor");
  if (c.rope_scaling == RopeScaling::Llama3 || c.rope_scaling == RopeScaling::Dynamic)
    check_range("rope original context", c.rope_original_context, 1, 1 << 24);
  if (c.rope_scaling == RopeScaling::Dynamic && c.rope_dim <= 2)
    fail("dynamic rope scaling needs more than 2 rotated dims");
  if (c.rope_scaling == RopeScaling::Llama3 && !(c.rope_high_freq_factor > c.rope_low_freq_factor))
    fail("llama3 rope scaling needs high_freq_factor > low_freq_factor");
  if (!c.rope_freq_factors.empty() && int(c.rope_freq_factors.size()) != c.rope_dim / 2)
    fail("rope frequency factors: " + std::to_string(c.rope_freq_factors.size()) +
         " values, expected rope dim / 2 = " + std::to_string(c.rope_dim / 2));
}

}  // namespace kvlm
