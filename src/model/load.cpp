#include "model/load.h"

#include <filesystem>
#include <set>
#include <stdexcept>

#include "model/dequant.h"
#include "model/gguf_tokenizer.h"
#include "model/hf_config.h"
#include "model/random_model.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

std::string shape_text(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); i++) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// GGUF dims run fastest-first; PyTorch shapes run slowest-first.
TensorView view_of(const gguf::TensorInfo& t) {
  return {t.name, t.type, {t.dims.rbegin(), t.dims.rend()}, t.n_elements, t.data};
}

// How each format names the weights of a Llama model.
struct TensorNames {
  const char *embedding, *output_norm, *output;
  const char* layer;  // prefix; the layer number and '.' follow
  const char *attn_norm, *wq, *wk, *wv, *wo, *ffn_norm, *gate, *up, *down;
};

constexpr TensorNames kGgufNames = {
    "token_embd.weight",  "output_norm.weight", "output.weight",      "blk.",
    "attn_norm.weight",   "attn_q.weight",      "attn_k.weight",      "attn_v.weight",
    "attn_output.weight", "ffn_norm.weight",    "ffn_gate.weight",    "ffn_up.weight",
    "ffn_down.weight"};

constexpr TensorNames kHfNames = {
    "model.embed_tokens.weight",     "model.norm.weight",
    "lm_head.weight",                "model.layers.",
    "input_layernorm.weight",        "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",       "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",       "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",          "mlp.up_proj.weight",
    "mlp.down_proj.weight"};

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
  // llama.cpp's converter reorders each head's Q/K rows so that RoPE turns adjacent pairs
  // (2i, 2i + 1) where Hugging Face turns halves (i, i + d/2). The rows stay as stored (a
  // mapped matrix is not copied) and RoPE turns the pairs in the file's order.
  c.rope_adjacent_pairs = true;

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

  // Sampling the file recommends (llama.cpp's general.sampling.* keys), if any.
  auto hint = [&](const char* k, double lo, double hi) -> std::optional<float> {
    const std::string name = std::string("general.sampling.") + k;
    if (!f.has(name)) return std::nullopt;
    const double v = f.get_float(name);
    if (!(v >= lo && v <= hi))
      throw std::runtime_error(f.path() + ": " + name + " = " + format_number(v) +
                               " is outside [" + format_number(lo) + ", " + format_number(hi) + "]");
    return float(v);
  };
  SamplingHints& h = c.sampling;
  h.temperature = hint("temp", 0, 100);
  h.top_p = hint("top_p", 0, 1);
  h.min_p = hint("min_p", 0, 1);
  if (const std::optional<float> k = hint("top_k", 0, 1 << 24)) h.top_k = int(*k);
  if (h.temperature || h.top_p || h.min_p || h.top_k) h.source = "GGUF general.sampling.*";

  const gguf::TensorInfo* embd = f.find_tensor("token_embd.weight");
  if (!embd) throw std::runtime_error(f.path() + ": tensor 'token_embd.weight' is missing");
  if (embd->dims.size() != 2)
    throw std::runtime_error(f.path() + ": token_embd.weight is not a matrix");
  c.vocab_size = int(embd->dims[1]);
  c.tied_embeddings = f.find_tensor("output.weight") == nullptr;
  validate(c, f.path());
  return c;
}

Checkpoint::Checkpoint(const std::string& path) : path_(path) {
  if (is_random_model(path)) {  // no file: load() draws the weights
    config_ = random_model_config(path);
    return;
  }
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status status = fs::status(path, ec);
  if (!fs::exists(status)) throw std::runtime_error(path + ": no such file or directory");
  if (fs::is_directory(status)) {
    if (!fs::is_regular_file(path + "/config.json", ec))
      throw std::runtime_error(
          path + ": is a directory without config.json; kvlm reads Hugging Face directories "
                 "(config.json + model.safetensors or model.safetensors.index.json) and GGUF files");
    if (!fs::exists(path + "/model.safetensors", ec) &&
        !fs::exists(path + "/model.safetensors.index.json", ec) &&
        (fs::exists(path + "/pytorch_model.bin", ec) ||
         fs::exists(path + "/pytorch_model.bin.index.json", ec)))
      throw std::runtime_error(path + ": has only pytorch_model.bin weights; kvlm reads safetensors "
                               "(convert with transformers' save_pretrained(safe_serialization=True))");
    config_ = config_from_hf_directory(path);
    safetensors_ = std::make_shared<safetensors::ShardSet>(path);
    for (const auto& file : safetensors_->files())
      tensors_.insert(tensors_.end(), file->tensors().begin(), file->tensors().end());
  } else {
    gguf_ = std::make_shared<gguf::File>(path);
    config_ = config_from_gguf(*gguf_);
    for (const gguf::TensorInfo& t : gguf_->tensors()) tensors_.push_back(view_of(t));
  }
  for (size_t i = 0; i < tensors_.size(); i++) tensor_index_.emplace(tensors_[i].name, i);
  if (is_directory() && !config_.tied_embeddings && !find_tensor(kHfNames.output))
    throw std::runtime_error(path + ": tie_word_embeddings is false but there is no " +
                             kHfNames.output);
}

Checkpoint::~Checkpoint() = default;

const TensorView* Checkpoint::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::string Checkpoint::format() const {
  if (is_random()) return "random weights";
  if (!is_directory()) return "GGUF v" + std::to_string(gguf_->version());
  std::set<std::string> dtypes;
  for (const TensorView& t : tensors_) dtypes.insert(gguf::type_name(t.type));
  const std::string types = join(dtypes, "+");
  const size_t n = safetensors_->files().size();
  return "Hugging Face safetensors (" + std::to_string(n) + (n == 1 ? " file, " : " shards, ") +
         types + ")";
}

std::string Checkpoint::loader_reason() const {
  if (is_random()) return "random:<shape> -> no file; weights drawn from a fixed seed";
  const std::string count = std::to_string(tensors_.size()) + " tensors";
  if (!is_directory()) return "a file, not a directory -> GGUF loader (" + count + ")";
  const size_t n = safetensors_->files().size();
  return std::string("directory with config.json + ") + safetensors_->source() +
         " -> safetensors loader (" + std::to_string(n) + (n == 1 ? " file, " : " shards, ") +
         count + ")";
}

uint64_t Checkpoint::file_bytes() const {
  if (is_random()) return 0;
  return is_directory() ? safetensors_->total_bytes() : gguf_->file_size();
}

uint64_t Checkpoint::parameter_count() const {
  if (is_random()) return random_model_parameters(config_);
  uint64_t n = 0;
  for (const TensorView& t : tensors_) n += t.n_elements;
  return n;
}

std::unique_ptr<Model> Checkpoint::load(Backend& backend,
                                        const std::function<void(double)>& progress) const {
  if (is_random()) return load_random_model(config_, backend);
  const ModelConfig& c = config_;
  const TensorNames& names = is_directory() ? kHfNames : kGgufNames;
  Weights w;  // released again if a later tensor turns out to be bad
  w.host_storage = is_directory() ? std::shared_ptr<const void>(safetensors_)
                                  : std::shared_ptr<const void>(gguf_);
  auto tensor = [&](const std::string& name, std::vector<uint64_t> shape) -> const TensorView& {
    const TensorView* t = find_tensor(name);
    if (!t) throw std::runtime_error(path_ + ": tensor '" + name + "' is missing");
    if (t->shape != shape)
      throw std::runtime_error(path_ + ": tensor '" + name + "' has shape " +
                               shape_text(t->shape) + ", expected " + shape_text(shape));
    return *t;
  };
  auto vector = [&](const std::string& name, float*& dst) {
    const TensorView& t = tensor(name, {uint64_t(c.dim)});
    std::vector<float> host(t.n_elements);
    dequantize(t.type, t.data, host.data(), host.size());
    dst = backend.alloc(host.size());
    backend.upload(dst, host.data(), host.size());
  };
  // A [rows][cols] matrix made of tensors stacked row-wise, each kept in the file's type:
  // the backend reads the mapped bytes (or copies them to its device) without a host copy.
  auto matrix = [&](const std::vector<std::pair<std::string, uint64_t>>& parts, uint64_t cols,
                    WeightMatrix& dst) {
    std::vector<WeightRows> rows;
    for (const auto& [name, n_rows] : parts) {
      const TensorView& t = tensor(name, {n_rows, cols});
      const WeightType type = gguf::weight_type(t.type);
      rows.push_back({t.data, type, int(n_rows)});
    }
    dst = backend.upload_weights(rows, int(cols), true);
  };
  const uint64_t dim = c.dim, q = c.q_dim(), kv = c.kv_dim(), ffn = c.ffn_dim;
  try {
    matrix({{names.embedding, c.vocab_size}}, dim, w.token_embedding);
    vector(names.output_norm, w.output_norm);
    if (c.tied_embeddings) w.output = w.token_embedding;
    else matrix({{names.output, c.vocab_size}}, dim, w.output);
    for (int l = 0; l < c.n_layers; l++) {
      const std::string p = names.layer + std::to_string(l) + ".";
      LayerWeights& lw = w.layers.emplace_back();
      vector(p + names.attn_norm, lw.attn_norm);
      matrix({{p + names.wq, q}, {p + names.wk, kv}, {p + names.wv, kv}}, dim, lw.wqkv);
      matrix({{p + names.wo, dim}}, q, lw.wo);
      vector(p + names.ffn_norm, lw.ffn_norm);
      matrix({{p + names.gate, ffn}, {p + names.up, ffn}}, dim, lw.w_gate_up);
      matrix({{p + names.down, dim}}, ffn, lw.w_down);
      if (progress) progress(double(l + 1) / c.n_layers);
    }
    return std::make_unique<Model>(backend, c, std::move(w));
  } catch (...) {
    w.release(backend);
    throw;
  }
}

ModelFile::ModelFile(const std::string& path) : Checkpoint(path) {
  if (is_random()) {
    tokenizer_ = random_model_tokenizer(config());
  } else if (is_directory()) {
    tokenizer_ = tokenizer_from_hf_directory(path);
    SourcedText tmpl = chat_template_from_hf_directory(path);
    chat_template_ = std::move(tmpl.text);
    chat_template_source_ = std::move(tmpl.source);
  } else {
    tokenizer_ = tokenizer_from_gguf(*gguf());
    chat_template_ = gguf()->get_string("tokenizer.chat_template", "");
    if (!chat_template_.empty()) chat_template_source_ = "GGUF tokenizer.chat_template";
  }
  if (tokenizer_->vocab_size() != config().vocab_size)
    throw std::runtime_error(path + ": the tokenizer has " +
                             std::to_string(tokenizer_->vocab_size()) +
                             " tokens but the embedding has " + std::to_string(config().vocab_size));
}

}  // namespace kvlm
