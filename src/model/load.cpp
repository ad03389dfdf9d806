#include "model/load.h"

#include <sys/stat.h>

#include <stdexcept>

#include "model/dequant.h"
#include "model/random_model.h"

namespace kvlm {

namespace {

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// GGUF dims run fastest-first; PyTorch shapes run slowest-first.
std::vector<uint64_t> torch_shape(const gguf::TensorInfo& t) {
  return {t.dims.rbegin(), t.dims.rend()};
}

// llama.cpp's converter reorders each head's Q/K rows so that RoPE rotates adjacent pairs
// (2i, 2i+1). kvlm rotates halves (i, i + d/2) like Hugging Face, so the rows go back:
// within a head, row s*half + j (s in {0, 1}) is GGUF row 2j + s.
std::vector<float> unpermute_rope_rows(const std::vector<float>& w, int n_heads, int head_dim,
                                       int n_in) {
  std::vector<float> out(w.size());
  const int half = head_dim / 2;
  for (int h = 0; h < n_heads; h++)
    for (int s = 0; s < 2; s++)
      for (int j = 0; j < half; j++) {
        const float* src = &w[(size_t(h) * head_dim + 2 * j + s) * n_in];
        std::copy(src, src + n_in, &out[(size_t(h) * head_dim + s * half + j) * n_in]);
      }
  return out;
}

}  // namespace

ModelConfig config_from_gguf(const gguf::File& f) {
  const std::string arch = f.get_string("general.architecture");
  if (arch != "llama")
    throw std::runtime_error(f.path() + ": architecture '" + arch +
                             "' is not supported (kvlm runs the Llama architecture)");
  auto key = [&](const std::string& k) { return arch + "." + k; };
  ModelConfig c;
  c.name = f.get_string("general.name", "");
  c.n_layers = int(f.get_int(key("block_count")));
  c.dim = int(f.get_int(key("embedding_length")));
  c.n_heads = int(f.get_int(key("attention.head_count")));
  c.n_kv_heads = int(f.get_int(key("attention.head_count_kv"), c.n_heads));
  c.head_dim = int(f.get_int(key("attention.key_length"), c.n_heads > 0 ? c.dim / c.n_heads : 0));
  c.ffn_dim = int(f.get_int(key("feed_forward_length")));
  c.context_length = int(f.get_int(key("context_length")));
  c.rms_eps = float(f.get_float(key("attention.layer_norm_rms_epsilon")));
  c.rope_theta = float(f.get_float(key("rope.freq_base"), 10000.0));
  c.rope_dim = int(f.get_int(key("rope.dimension_count"), c.head_dim));

  const std::string scaling = f.get_string(key("rope.scaling.type"), "none");
  if (scaling == "linear") {
    c.rope_scaling = RopeScaling::Linear;
    c.rope_factor = float(f.get_float(key("rope.scaling.factor")));
  } else if (scaling != "none") {
    throw std::runtime_error(f.path() + ": rope scaling type '" + scaling +
                             "' is not supported (supported: none, linear)");
  }
  // Llama-3.1-style scaling is baked by the converter into per-frequency divisors.
  if (const gguf::TensorInfo* freqs = f.find_tensor("rope_freqs.weight")) {
    if (freqs->type != gguf::TensorType::F32)
      throw std::runtime_error(f.path() + ": rope_freqs.weight must be F32");
    c.rope_freq_factors.resize(freqs->n_elements);
    dequantize(freqs->type, freqs->data, c.rope_freq_factors.data(), freqs->n_elements);
  }

  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd) throw std::runtime_error(f.path() + ": tensor 'token_embd.weight' is missing");
  if (embd->dims.size() != 2)
    throw std::runtime_error(f.path() + ": token_embd.weight is not a matrix");
  c.vocab_size = int(embd->dims[1]);
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  validate(c, f.path());
  return c;
}

ModelFile::ModelFile(const std::string& path) : path_(path) {
  if (is_random_model(path)) {  // no file: weights are made in load()
    config_ = random_model_config(path);
    tokenizer_ = random_model_tokenizer(config_);
    return;
  }
  struct stat st{};
  if (stat(path.c_str(), &st) != 0) throw std::runtime_error(path + ": no such file");
  if (S_ISDIR(st.st_mode))
    throw std::runtime_error(path + ": is a directory (Hugging Face directories are not "
                             "supported yet; pass a .gguf file)");
  gguf_ = std::make_unique<gguf::File>(path);
  config_ = config_from_gguf(*gguf_);
  tokenizer_ = tokenizer_from_gguf(*gguf_);
  if (tokenizer_->vocab_size() != config_.vocab_size)
    throw std::runtime_error(path + ": the tokenizer has " +
                             std::to_string(tokenizer_->vocab_size()) +
                             " tokens but the embedding has " + std::to_string(config_.vocab_size));
  chat_template_ = gguf_->get_string("tokenizer.chat_template", "");
}

ModelFile::~ModelFile() = default;

std::string ModelFile::format() const {
  if (!gguf_) return "random weights";
  return "GGUF v" + std::to_string(gguf_->version());
}

size_t ModelFile::file_bytes() const { return gguf_ ? gguf_->file_size() : 0; }

uint64_t ModelFile::parameter_count() const {
  if (!gguf_) return random_model_parameters(config_);
  uint64_t n = 0;
  for (const gguf::TensorInfo& t : gguf_->tensors()) n += t.n_elements;
  return n;
}

std::vector<TensorSummary> ModelFile::tensors() const {
  std::vector<TensorSummary> out;
  if (!gguf_) return out;
  for (const gguf::TensorInfo& t : gguf_->tensors())
    out.push_back({t.name, gguf::type_name(t.type), torch_shape(t)});
  return out;
}

std::unique_ptr<Model> ModelFile::load(Backend& backend) const {
  if (!gguf_) return load_random_model(config_, backend);
  const ModelConfig& c = config_;
  Weights w;  // released again if a later tensor turns out to be bad
  // Reads one tensor as float32 in Hugging Face layout.
  auto fetch = [&](const std::string& name, std::vector<uint64_t> shape,
                   int rope_heads = 0) -> std::vector<float> {
    const gguf::TensorInfo* t = gguf_->find_tensor(name);
    if (!t) throw std::runtime_error(path_ + ": tensor '" + name + "' is missing");
    if (torch_shape(*t) != shape)
      throw std::runtime_error(path_ + ": tensor '" + name + "' has shape " +
                               shape_text(torch_shape(*t)) + ", expected " + shape_text(shape));
    std::vector<float> host(t->n_elements);
    dequantize(t->type, t->data, host.data(), host.size());
    if (rope_heads) host = unpermute_rope_rows(host, rope_heads, c.head_dim, c.dim);
    return host;
  };
  auto vector = [&](const std::string& name, float*& dst) {
    std::vector<float> host = fetch(name, {uint64_t(c.dim)});
    dst = backend.alloc(host.size());
    backend.upload(dst, host.data(), host.size());
  };
  auto matrix = [&](const std::string& name, uint64_t rows, uint64_t cols, WeightMatrix& dst,
                    int rope_heads = 0) {
    dst = backend.upload_matrix(fetch(name, {rows, cols}, rope_heads).data(), int(rows), int(cols));
  };
  const uint64_t dim = c.dim, q = c.q_dim(), kv = c.kv_dim(), ffn = c.ffn_dim;
  try {
    matrix("token_embd.weight", c.vocab_size, dim, w.token_embedding);
    vector("output_norm.weight", w.output_norm);
    if (c.tied_embeddings) w.output = w.token_embedding;
    else matrix("output.weight", c.vocab_size, dim, w.output);
    for (int l = 0; l < c.n_layers; l++) {
      const std::string p = "blk." + std::to_string(l) + ".";
      LayerWeights& lw = w.layers.emplace_back();
      vector(p + "attn_norm.weight", lw.attn_norm);
      matrix(p + "attn_q.weight", q, dim, lw.wq, c.n_heads);
      matrix(p + "attn_k.weight", kv, dim, lw.wk, c.n_kv_heads);
      matrix(p + "attn_v.weight", kv, dim, lw.wv);
      matrix(p + "attn_output.weight", dim, q, lw.wo);
      vector(p + "ffn_norm.weight", lw.ffn_norm);
      matrix(p + "ffn_gate.weight", ffn, dim, lw.w_gate);
      matrix(p + "ffn_up.weight", ffn, dim, lw.w_up);
      matrix(p + "ffn_down.weight", dim, ffn, lw.w_down);
    }
    return std::make_unique<Model>(backend, c, std::move(w));
  } catch (...) {
    w.release(backend);
    throw;
  }
}

}  // namespace kvlm
