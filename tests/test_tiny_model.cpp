// Tiny random Llama models written as GGUF files the way llama.cpp's converter writes
// them (Q/K rows permuted for interleaved RoPE, mixed tensor types), run by kvlm and by a
// naive double-precision forward pass written here from the Hugging Face formulation
// (rotate-half RoPE on unpermuted weights). Covers what the default model does not:
// untied output, GQA group 2, F16/BF16/Q8_0/Q4_0 weights, linear and per-frequency RoPE
// scaling; and loader errors for tensors of the wrong shape.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>
#include <random>

#include "backend_fixture.h"
#include "gguf_writer.h"
#include "kernels/cpu/cpu_backend.h"
#include "model/dequant.h"
#include "model/load.h"

namespace kvlm {
namespace {

using gguf::TensorType;

struct Tiny {
  int layers = 2, dim = 64, heads = 4, kv_heads = 2, head_dim = 16, ffn = 96, vocab = 97;
  float theta = 10000, eps = 1e-5f, linear_factor = 1;
  bool tied = false;
  int claimed_ffn = 0, claimed_layers = 0;  // metadata that lies about the tensors, when set
  std::vector<float> freq_factors;  // rope_freqs.weight when non-empty
  std::optional<float> sampling_temp;  // general.sampling.temp when set
  std::optional<int32_t> sampling_top_k;
};

// Weights in Hugging Face layout, already rounded through their GGUF type.
struct Weights {
  std::vector<float> embed, out_norm, output;
  struct Layer { std::vector<float> attn_norm, q, k, v, o, ffn_norm, gate, up, down; };
  std::vector<Layer> layers;
};

std::vector<float> random_weights(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> d(0, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<float> round_trip(TensorType t, const std::vector<float>& w) {
  std::vector<float> out(w.size());
  dequantize(t, test::quantize(t, w).data(), out.data(), out.size());
  return out;
}

// What llama.cpp's converter does to Q and K: row s*half + j of a head becomes row 2j + s.
std::vector<float> permute_for_gguf(const std::vector<float>& w, int heads, int head_dim, int n_in) {
  std::vector<float> out(w.size());
  const int half = head_dim / 2;
  for (int h = 0; h < heads; h++)
    for (int s = 0; s < 2; s++)
      for (int j = 0; j < half; j++)
        std::copy_n(&w[(size_t(h) * head_dim + s * half + j) * n_in], n_in,
                    &out[(size_t(h) * head_dim + 2 * j + s) * n_in]);
  return out;
}

// Writes the model and returns the weights the reference should use.
Weights write_tiny(const Tiny& m, const std::string& path, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  test::GGUFWriter w;
  w.set("general.architecture", "llama");
  w.set("general.name", "tiny");
  w.set("llama.block_count", uint32_t(m.claimed_layers ? m.claimed_layers : m.layers));
  w.set("llama.embedding_length", uint32_t(m.dim));
  w.set("llama.attention.head_count", uint32_t(m.heads));
  w.set("llama.attention.head_count_kv", uint32_t(m.kv_heads));
  w.set("llama.feed_forward_length", uint32_t(m.claimed_ffn ? m.claimed_ffn : m.ffn));
  w.set("llama.context_length", uint32_t(128));
  w.set("llama.attention.layer_norm_rms_epsilon", m.eps);
  if (m.sampling_temp) w.set("general.sampling.temp", *m.sampling_temp);
  if (m.sampling_top_k) w.set("general.sampling.top_k", *m.sampling_top_k);
  w.set("llama.rope.freq_base", m.theta);
  if (m.linear_factor != 1) {
    w.set("llama.rope.scaling.type", "linear");
    w.set("llama.rope.scaling.factor", m.linear_factor);
  }
  // A byte-level vocabulary of printable ASCII, "Ġ" (space), "Ġa" and one control token.
  std::vector<std::string> tokens;
  for (char c = 33; c < 127; c++) tokens.push_back(std::string(1, c));
  tokens.push_back("\xC4\xA0");
  tokens.push_back("\xC4\xA0" "a");  // split: "\xA0a" would be one hex escape
  tokens.push_back("<|endoftext|>");
  std::vector<int32_t> types(tokens.size(), 1);
  types.back() = 3;
  w.set("tokenizer.ggml.model", "gpt2");
  w.set("tokenizer.ggml.pre", "gpt2");
  w.set("tokenizer.ggml.tokens", tokens);
  w.set("tokenizer.ggml.token_type", types);
  w.set("tokenizer.ggml.merges", std::vector<std::string>{"\xC4\xA0 a"});
  w.set("tokenizer.ggml.eos_token_id", uint32_t(tokens.size() - 1));

  Weights out;
  auto add = [&](const std::string& name, uint64_t rows, uint64_t cols, TensorType type,
                 float scale, int rope_heads = 0) {
    std::vector<float> hf = round_trip(type, random_weights(rows * cols, rng, scale));
    std::vector<float> stored = rope_heads ? permute_for_gguf(hf, rope_heads, m.head_dim, int(cols)) : hf;
    w.add_tensor(name, cols > 1 ? std::vector<uint64_t>{cols, rows} : std::vector<uint64_t>{rows},
                 type, stored);
    return hf;
  };
  const int q = m.heads * m.head_dim, kv = m.kv_heads * m.head_dim;
  out.embed = add("token_embd.weight", m.vocab, m.dim, TensorType::F16, 1.0f);
  out.out_norm = add("output_norm.weight", m.dim, 1, TensorType::F32, 1.0f);
  out.output = m.tied ? out.embed : add("output.weight", m.vocab, m.dim, TensorType::Q4_0, 0.2f);
  if (!m.freq_factors.empty()) w.add_tensor("rope_freqs.weight", {uint64_t(m.freq_factors.size())}, TensorType::F32, m.freq_factors);
  for (int l = 0; l < m.layers; l++) {
    const std::string p = "blk." + std::to_string(l) + ".";
    Weights::Layer L;
    L.attn_norm = add(p + "attn_norm.weight", m.dim, 1, TensorType::F32, 1.0f);
    L.q = add(p + "attn_q.weight", q, m.dim, TensorType::Q8_0, 0.3f, m.heads);
    L.k = add(p + "attn_k.weight", kv, m.dim, TensorType::BF16, 0.3f, m.kv_heads);
    L.v = add(p + "attn_v.weight", kv, m.dim, TensorType::F16, 0.3f);
    L.o = add(p + "attn_output.weight", m.dim, q, TensorType::Q4_1, 0.2f);
    L.ffn_norm = add(p + "ffn_norm.weight", m.dim, 1, TensorType::F32, 1.0f);
    L.gate = add(p + "ffn_gate.weight", m.ffn, m.dim, TensorType::Q8_0, 0.2f);
    L.up = add(p + "ffn_up.weight", m.ffn, m.dim, TensorType::F32, 0.2f);
    L.down = add(p + "ffn_down.weight", m.dim, m.ffn, TensorType::Q4_0, 0.2f);
    out.layers.push_back(L);
  }
  w.write(path);
  return out;
}

using Vec = std::vector<double>;

Vec matvec(const std::vector<float>& w, const Vec& x, int n_out) {
  Vec y(n_out, 0.0);
  const size_t n_in = x.size();
  for (int o = 0; o < n_out; o++)
    for (size_t i = 0; i < n_in; i++) y[o] += w[o * n_in + i] * x[i];
  return y;
}

Vec rmsnorm(const Vec& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  double s = 1 / std::sqrt(ss / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); i++) y[i] = x[i] * s * w[i];
  return y;
}

// Hugging Face's rotate_half: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin) per half.
void rope(Vec& x, int heads, int head_dim, double pos, const Tiny& m) {
  const int half = head_dim / 2;
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < half; i++) {
      double inv = std::pow(double(m.theta), -2.0 * i / head_dim) / m.linear_factor;
      if (!m.freq_factors.empty()) inv /= m.freq_factors[i];
      double a = pos * inv, c = std::cos(a), s = std::sin(a);
      double& x1 = x[h * head_dim + i];
      double& x2 = x[h * head_dim + i + half];
      double r1 = x1 * c - x2 * s, r2 = x2 * c + x1 * s;
      x1 = r1, x2 = r2;
    }
}

// Logits of the last token of `ids`, computed from scratch.
Vec reference_logits(const Tiny& m, const Weights& w, const std::vector<int32_t>& ids) {
  const int T = int(ids.size()), q_dim = m.heads * m.head_dim, kv_dim = m.kv_heads * m.head_dim;
  std::vector<Vec> x(T);
  for (int t = 0; t < T; t++) x[t] = Vec(w.embed.begin() + ids[t] * m.dim, w.embed.begin() + (ids[t] + 1) * m.dim);
  for (const Weights::Layer& L : w.layers) {
    std::vector<Vec> qs(T), ks(T), vs(T);
    for (int t = 0; t < T; t++) {
      Vec xn = rmsnorm(x[t], L.attn_norm, m.eps);
      qs[t] = matvec(L.q, xn, q_dim), ks[t] = matvec(L.k, xn, kv_dim), vs[t] = matvec(L.v, xn, kv_dim);
      rope(qs[t], m.heads, m.head_dim, t, m);
      rope(ks[t], m.kv_heads, m.head_dim, t, m);
    }
    for (int t = 0; t < T; t++) {
      Vec att(q_dim, 0.0);
      for (int h = 0; h < m.heads; h++) {
        const int g = h / (m.heads / m.kv_heads);
        Vec score(t + 1);
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= t; j++) {
          double s = 0;
          for (int d = 0; d < m.head_dim; d++) s += qs[t][h * m.head_dim + d] * ks[j][g * m.head_dim + d];
          score[j] = s / std::sqrt(double(m.head_dim));
          mx = std::max(mx, score[j]);
        }
        for (double& s : score) sum += s = std::exp(s - mx);
        for (int j = 0; j <= t; j++)
          for (int d = 0; d < m.head_dim; d++) att[h * m.head_dim + d] += score[j] / sum * vs[j][g * m.head_dim + d];
      }
      Vec o = matvec(L.o, att, m.dim);
      for (int i = 0; i < m.dim; i++) x[t][i] += o[i];
      Vec xn = rmsnorm(x[t], L.ffn_norm, m.eps);
      Vec gate = matvec(L.gate, xn, m.ffn), up = matvec(L.up, xn, m.ffn);
      for (int i = 0; i < m.ffn; i++) gate[i] = gate[i] / (1 + std::exp(-gate[i])) * up[i];
      Vec down = matvec(L.down, gate, m.dim);
      for (int i = 0; i < m.dim; i++) x[t][i] += down[i];
    }
  }
  return matvec(w.output, rmsnorm(x[T - 1], w.out_norm, m.eps), m.vocab);
}

void expect_same_logits(const Tiny& m, const std::string& name, const std::string& device = "cpu") {
  test::TempFile file(name);
  Weights w = write_tiny(m, file.path());
  auto backend = make_backend(device, "f32", 2);
  ModelFile f(file.path());
  EXPECT_EQ(f.config().tied_embeddings, m.tied);
  auto model = f.load(*backend);
  auto cache = model->make_cache(64);
  std::vector<int32_t> ids = {5, 17, 94, 3, 60, 60, 11, 42, 7};
  std::vector<float> got = model->forward(ids, *cache);
  Vec want = reference_logits(m, w, ids);
  for (int i = 0; i < m.vocab; i++) ASSERT_NEAR(got[i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << name << " logit " << i;
  // One decode step continues the same sequence.
  got = model->forward({33}, *cache);
  ids.push_back(33);
  want = reference_logits(m, w, ids);
  for (int i = 0; i < m.vocab; i++) ASSERT_NEAR(got[i], want[i], 1e-4 * (1 + std::fabs(want[i]))) << name << " decode logit " << i;
}

TEST(TinyModel, UntiedGqaMixedTypesMatchesReference) { expect_same_logits(Tiny{}, "untied.gguf"); }

TEST(TinyModel, TiedEmbeddingsMatchReference) {
  Tiny m;
  m.tied = true;
  expect_same_logits(m, "tied.gguf");
}

TEST(TinyModel, LinearAndPerFrequencyRopeScalingMatchReference) {
  Tiny m;
  m.linear_factor = 4;
  m.freq_factors = {1, 1, 1.5f, 2, 4, 8, 8, 8};
  expect_same_logits(m, "rope_scaled.gguf");
}

// The CUDA kernels (float32 weights) against the same double-precision reference.
TEST(CudaTinyModel, UntiedTiedAndScaledRopeMatchReference) {
  KVLM_REQUIRE_CUDA();
  expect_same_logits(Tiny{}, "untied_cuda.gguf", "cuda");
  Tiny m;
  m.tied = true;
  m.linear_factor = 4;
  m.freq_factors = {1, 1, 1.5f, 2, 4, 8, 8, 8};
  expect_same_logits(m, "tied_scaled_cuda.gguf", "cuda");
}

std::string load_error(const std::string& path) {
  try {
    CpuBackend backend(1);
    ModelFile(path).load(backend);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "no error";
}

TEST(TinyModel, MetadataThatContradictsTheTensorsIsAClearError) {
  test::TempFile file("lies.gguf");
  Tiny m;
  m.claimed_ffn = 192;  // the tensors hold 96
  write_tiny(m, file.path());
  EXPECT_EQ(load_error(file.path()),
            file.path() + ": tensor 'blk.0.ffn_gate.weight' has shape [96, 64], expected [192, 64]");
}

// llama.cpp's general.sampling.* keys are the file's recommended sampling (run and chat use
// them for the flags not given).
TEST(TinyModel, SamplingHintsFromGgufMetadata) {
  test::TempFile file("sampling.gguf");
  Tiny m;
  write_tiny(m, file.path());
  EXPECT_EQ(ModelFile(file.path()).config().sampling.source, "") << "none declared";
  m.sampling_temp = 0.3f;
  m.sampling_top_k = 20;
  write_tiny(m, file.path());
  const SamplingHints h = ModelFile(file.path()).config().sampling;
  EXPECT_EQ(h.temperature, 0.3f);
  EXPECT_EQ(h.top_k, 20);
  EXPECT_FALSE(h.top_p.has_value());
  EXPECT_EQ(h.source, "GGUF general.sampling.*");
  m.sampling_temp = 150.0f;
  write_tiny(m, file.path());
  EXPECT_EQ(load_error(file.path()), file.path() + ": general.sampling.temp = 150 is outside [0, 100]");
}

TEST(TinyModel, AbsurdDimensionsAreRefusedBeforeAllocating) {
  test::TempFile file("absurd.gguf");
  Tiny m;
  m.claimed_layers = 1 << 20;
  write_tiny(m, file.path());
  EXPECT_NE(load_error(file.path()).find("layers = 1048576 is outside"), std::string::npos);
}

}  // namespace
}  // namespace kvlm
