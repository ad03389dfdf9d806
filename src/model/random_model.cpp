#include "model/random_model.h"

#include <cmath>
#include <initializer_list>
#include <stdexcept>

#include "util/text_format.h"
#include "util/thread_pool.h"

namespace kvlm {

namespace {

constexpr const char* kPrefix = "random:";
constexpr uint64_t kSeed = 20240229;
constexpr float kWeightSpread = 0.02f;  // Hugging Face's initializer_range for Llama

struct Shape {
  const char* name;
  const char* source;  // the checkpoint whose config.json this is
  int layers, dim, heads, kv_heads, ffn, vocab, context;
  float rope_theta;
  bool tied;
};

const Shape kShapes[] = {
    {"llama2-7b", "meta-llama/Llama-2-7b-hf", 32, 4096, 32, 32, 11008, 32000, 4096, 10000, false},
    {"llama3-8b", "meta-llama/Meta-Llama-3-8B", 32, 4096, 32, 8, 14336, 128256, 8192, 500000, false},
    {"tinyllama-1.1b", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", 22, 2048, 32, 4, 5632, 32000, 2048,
     10000, false},
    {"smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", 30, 576, 9, 3, 1536, 49152, 8192,
     100000, true},
};

// SplitMix64: a good 64-bit mix of a counter, so element i of tensor k is a pure function
// of (seed, k, i) and tensors fill in parallel.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Mean 0, standard deviation `spread`: the sum of four uniforms (Irwin-Hall), close enough
// to a normal for weights whose values do not matter, and four times cheaper than
// Box-Muller for the billions of them a 7B model needs.
std::vector<float> random_matrix(uint64_t tensor, size_t n, float spread) {
  std::vector<float> w(n);
  const float scale = spread / std::sqrt(4.0f / 12.0f) / 65536.0f;
  ThreadPool(0).parallel_for(int64_t(n), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      const uint64_t bits = mix(kSeed ^ mix(tensor * 0x100000001b3ull + i));
      const float sum = float(bits & 0xffff) + float((bits >> 16) & 0xffff) +
                        float((bits >> 32) & 0xffff) + float(bits >> 48);
      w[i] = (sum - 2.0f * 65535.0f) * scale;
    }
  });
  return w;
}

// 0 = <s>, 1 = </s>, 2..257 = the bytes, then unused special tokens up to the vocab size.
class ByteTokenizer final : public Tokenizer {
 public:
  explicit ByteTokenizer(int vocab) : vocab_(vocab) {
    TokenizerSetup setup;
    setup.bos_id = 0;
    setup.eos_id = 1;
    setup.add_bos = true;
    setup.source = "random:<shape> (no tokenizer file)";
    apply_setup(setup, {"<s>", "</s>"});
  }
  std::vector<int32_t> encode(const std::string& text, bool add_bos, bool) const override {
    std::vector<int32_t> ids;
    if (add_bos) ids.push_back(bos_id_);
    for (unsigned char c : text) ids.push_back(kFirstByte + c);
    return ids;
  }
  std::string token_bytes(int32_t id) const override {
    if (id == 0) return "<s>";
    if (id == 1) return "</s>";
    if (id < kFirstByte + 256) return std::string(1, char(id - kFirstByte));
    return "<|unused_" + std::to_string(id) + "|>";
  }
  int vocab_size() const override { return vocab_; }
  bool is_special(int32_t id) const override { return id < kFirstByte || id >= kFirstByte + 256; }
  std::string describe() const override {
    return "byte-level (random model): <s>, </s>, 256 bytes, " +
           std::to_string(vocab_ - kFirstByte - 256) + " unused";
  }

 private:
  static constexpr int kFirstByte = 2;
  int vocab_;
};

}  // namespace

bool is_random_model(const std::string& path) { return path.rfind(kPrefix, 0) == 0; }

std::vector<std::string> random_model_shapes() {
  std::vector<std::string> names;
  for (const Shape& s : kShapes) names.push_back(s.name);
  return names;
}

ModelConfig random_model_config(const std::string& path) {
  const std::string name = path.substr(std::string(kPrefix).size());
  for (const Shape& s : kShapes) {
    if (name != s.name) continue;
    ModelConfig c;
    c.name = std::string("random ") + s.name + " (shape of " + s.source + ")";
    c.n_layers = s.layers;
    c.dim = s.dim;
    c.n_heads = s.heads;
    c.n_kv_heads = s.kv_heads;
    c.head_dim = s.dim / s.heads;
    c.ffn_dim = s.ffn;
    c.vocab_size = s.vocab;
    c.context_length = s.context;
    c.rms_eps = 1e-5f;
    c.rope_theta = s.rope_theta;
    c.rope_dim = c.head_dim;
    c.tied_embeddings = s.tied;
    validate(c, path);
    return c;
  }
  throw std::runtime_error(path + ": unknown random model shape '" + name +
                           "' (known: " + join(random_model_shapes(), ", ") + ")");
}

std::unique_ptr<Tokenizer> random_model_tokenizer(const ModelConfig& c) {
  return std::make_unique<ByteTokenizer>(c.vocab_size);
}

uint64_t random_model_parameters(const ModelConfig& c) {
  const uint64_t dim = c.dim;
  const uint64_t per_layer = 2 * dim * c.q_dim() + 2 * dim * c.kv_dim() + 3 * dim * c.ffn_dim +
                             2 * dim;  // projections, FFN, two norms
  const uint64_t embeddings = uint64_t(c.vocab_size) * dim * (c.tied_embeddings ? 1 : 2);
  return c.n_layers * per_layer + embeddings + dim;  // + the final norm
}

std::unique_ptr<Model> load_random_model(const ModelConfig& c, Backend& backend) {
  Weights w;
  uint64_t tensor = 0;
  // Tensors of `cols` inputs stacked row-wise into one matrix (one seed per tensor, so
  // fusing projections does not change the weights).
  auto matrix = [&](std::initializer_list<int> rows, int cols, WeightMatrix& dst) {
    std::vector<float> host;
    for (int r : rows) {
      std::vector<float> t = random_matrix(tensor++, size_t(r) * cols, kWeightSpread);
      if (host.empty()) host = std::move(t);  // a single tensor is not copied
      else host.insert(host.end(), t.begin(), t.end());
    }
    dst = backend.upload_matrix(host.data(), int(host.size() / cols), cols);
  };
  auto ones = [&](float*& dst) {
    const std::vector<float> host(c.dim, 1.0f);
    dst = backend.alloc(host.size());
    backend.upload(dst, host.data(), host.size());
  };
  try {
    matrix({c.vocab_size}, c.dim, w.token_embedding);
    ones(w.output_norm);
    if (c.tied_embeddings) w.output = w.token_embedding;
    else matrix({c.vocab_size}, c.dim, w.output);
    for (int l = 0; l < c.n_layers; l++) {
      LayerWeights& lw = w.layers.emplace_back();
      ones(lw.attn_norm);
      ones(lw.ffn_norm);
      matrix({c.q_dim(), c.kv_dim(), c.kv_dim()}, c.dim, lw.wqkv);
      matrix({c.dim}, c.q_dim(), lw.wo);
      matrix({c.ffn_dim, c.ffn_dim}, c.dim, lw.w_gate_up);
      matrix({c.dim}, c.ffn_dim, lw.w_down);
    }
    return std::make_unique<Model>(backend, c, std::move(w));
  } catch (...) {
    w.release(backend);
    throw;
  }
}

}  // namespace kvlm
