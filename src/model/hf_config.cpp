#include "model/hf_config.h"

#include <climits>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "model/json_file.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

using nlohmann::json;

// Architectures whose transformers implementation is the Llama forward pass kvlm runs.
constexpr const char* kArchitectures[] = {"LlamaForCausalLM", "MistralForCausalLM"};
constexpr const char* kModelTypes[] = {"llama", "mistral"};

// Typed access to one JSON object with errors that name the file and key. A key that is
// absent or null counts as absent, as transformers treats it.
class Fields {
 public:
  Fields(const json& object, std::string source) : object_(object), source_(std::move(source)) {
    if (!object.is_object()) fail("is " + json_type_name(object) + ", expected a JSON object");
  }

  [[noreturn]] void fail(const std::string& message) const {
    throw std::runtime_error(source_ + ": " + message);
  }
  const std::string& source() const { return source_; }

  const json* find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  bool has(const char* key) const { return find(key) != nullptr; }

  int positive_int(const char* key) const {
    const json* v = find(key);
    if (!v) fail(std::string("'") + key + "' is missing");
    return positive_int(key, *v);
  }
  int positive_int(const char* key, int fallback) const {
    const json* v = find(key);
    return v ? positive_int(key, *v) : fallback;
  }

  double number(const char* key) const {
    const json* v = find(key);
    if (!v) fail(std::string("'") + key + "' is missing");
    if (!v->is_number()) wrong_type(key, *v, "a number");
    if (!std::isfinite(v->get<double>())) fail(std::string("'") + key + "' is not finite");
    return v->get<double>();
  }
  double number(const char* key, double fallback) const { return has(key) ? number(key) : fallback; }

  bool boolean(const char* key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) wrong_type(key, *v, "true or false");
    return v->get<bool>();
  }

  std::string string(const char* key, const std::string& fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) wrong_type(key, *v, "a string");
    return v->get<std::string>();
  }

  // An id or a list of ids (eos_token_id is often a list); empty when absent.
  std::vector<int32_t> token_ids(const char* key) const {
    const json* v = find(key);
    if (!v) return {};
    std::vector<int32_t> ids;
    for (const json& id : v->is_array() ? *v : json::array({*v})) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX)
        wrong_type(key, *v, "a token id or a list of token ids");
      ids.push_back(int32_t(id.get<int64_t>()));
    }
    return ids;
  }

 private:
  [[noreturn]] void wrong_type(const char* key, const json& v, const char* expected) const {
    fail(std::string("'") + key + "' is " + v.dump() + " (" + json_type_name(v) + "), expected " +
         expected);
  }
  int positive_int(const char* key, const json& v) const {
    if (!v.is_number_integer()) wrong_type(key, v, "a positive integer");
    if (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT_MAX))
      fail(std::string("'") + key + "' = " + v.dump() + " is too large");
    if (v.get<int64_t>() <= 0) fail(std::string("'") + key + "' = " + v.dump() + " must be positive");
    return v.get<int>();
  }

  const json& object_;
  std::string source_;
};

// Returns the family: "llama" or "mistral".
std::string check_architecture(const Fields& f) {
  auto listed = [](const auto& names, const std::string& s) {
    for (const char* n : names)
      if (s == n) return true;
    return false;
  };
  if (const json* archs = f.find("architectures")) {
    if (!archs->is_array() || archs->empty())
      f.fail("'architectures' is " + archs->dump() + ", expected a list of class names");
    for (const json& a : *archs)
      if (a.is_string() && listed(kArchitectures, a.get<std::string>()))
        return a.get<std::string>() == "MistralForCausalLM" ? "mistral" : "llama";
    f.fail("architecture " + archs->dump() +
           " is not supported (kvlm runs LlamaForCausalLM and MistralForCausalLM)");
  }
  const std::string type = f.string("model_type", "");
  if (!listed(kModelTypes, type))
    f.fail("no 'architectures' and model_type '" + type +
           "' is not supported (kvlm runs llama and mistral models)");
  return type;
}

// Features some Llama-family configs switch on that the kvlm forward pass does not have.
void reject_unsupported_features(const Fields& f) {
  if (f.boolean("attention_bias", false))
    f.fail("attention_bias is true; kvlm's attention has no bias terms");
  if (f.boolean("mlp_bias", false)) f.fail("mlp_bias is true; kvlm's feed-forward has no bias terms");
  const std::string act = f.string("hidden_act", "silu");
  if (act != "silu") f.fail("hidden_act '" + act + "' is not supported (kvlm's FFN is SwiGLU, silu)");
  if (f.number("partial_rotary_factor", 1.0) != 1.0)
    f.fail("partial_rotary_factor is not supported (kvlm rotates the whole head)");
}

// rope_theta and scaling. Old configs: top-level rope_theta + rope_scaling {type|rope_type,
// factor, ...}; transformers 5: rope_parameters {rope_type, rope_theta, factor, ...}.
void read_rope(const Fields& f, int max_positions, ModelConfig& c) {
  const char* params_key = f.has("rope_scaling") ? "rope_scaling" : "rope_parameters";
  const json* params = f.find(params_key);
  c.rope_theta = float(f.number("rope_theta", 10000.0));
  if (!params) return;
  const Fields p(*params, f.source() + ": " + params_key);
  c.rope_theta = float(p.number("rope_theta", c.rope_theta));
  const std::string type = p.string("rope_type", p.string("type", "default"));
  if (type == "default") return;
  if (type == "linear") {
    c.rope_scaling = RopeScaling::Linear;
  } else if (type == "dynamic") {
    c.rope_scaling = RopeScaling::Dynamic;
    c.rope_original_context = max_positions;
  } else if (type == "llama3") {
    c.rope_scaling = RopeScaling::Llama3;
    c.rope_low_freq_factor = float(p.number("low_freq_factor"));
    c.rope_high_freq_factor = float(p.number("high_freq_factor"));
    // A top-level value wins over the one in the scaling dict, as in transformers.
    c.rope_original_context = f.positive_int(
        "original_max_position_embeddings",
        p.positive_int("original_max_position_embeddings", max_positions));
  } else {
    p.fail("rope type '" + type + "' is not supported (kvlm implements default, linear, " +
           "dynamic and llama3)");
  }
  c.rope_factor = float(p.number("factor"));
}

void check_token_ids(const Fields& f, const char* key, const std::vector<int32_t>& ids,
                     int vocab_size) {
  for (int32_t id : ids)
    if (id >= vocab_size)
      f.fail(std::string("'") + key + "' " + std::to_string(id) + " is not a token id (vocab_size " +
             std::to_string(vocab_size) + ")");
}

int32_t first_or_none(const std::vector<int32_t>& ids) { return ids.empty() ? -1 : ids.front(); }

}  // namespace

ModelConfig config_from_hf_json(const json& config, const std::string& source) {
  const Fields f(config, source);
  const std::string family = check_architecture(f);
  reject_unsupported_features(f);
  ModelConfig c;
  c.dim = f.positive_int("hidden_size");
  c.n_layers = f.positive_int("num_hidden_layers");
  c.n_heads = f.positive_int("num_attention_heads");
  c.n_kv_heads = f.positive_int("num_key_value_heads", c.n_heads);
  if (!f.has("head_dim") && c.dim % c.n_heads != 0)
    f.fail("hidden_size " + std::to_string(c.dim) + " is not a multiple of num_attention_heads " +
           std::to_string(c.n_heads) + " (and head_dim is not given)");
  c.head_dim = f.positive_int("head_dim", c.dim / c.n_heads);
  c.rope_dim = c.head_dim;
  c.ffn_dim = f.positive_int("intermediate_size");
  c.vocab_size = f.positive_int("vocab_size");
  const int max_positions = f.positive_int("max_position_embeddings", 2048);
  c.context_length = max_positions;
  c.rms_eps = float(f.number("rms_norm_eps", 1e-6));
  c.tied_embeddings = f.boolean("tie_word_embeddings", false);
  read_rope(f, max_positions, c);

  // Mistral's sliding window (4096 when the key is absent, none when null) changes the
  // attention only beyond it, so within the window the model is exact.
  if (family == "mistral") {
    const bool absent = !config.contains("sliding_window");
    const int window = absent ? 4096 : f.positive_int("sliding_window", INT_MAX);
    if (window < c.context_length) {
      std::fprintf(stderr,
                   "kvlm: warning: %s: sliding-window attention (%d tokens) is not implemented; "
                   "the context is limited to the window\n",
                   source.c_str(), window);
      c.context_length = window;
    }
  }

  c.bos_id = first_or_none(f.token_ids("bos_token_id"));
  c.eos_ids = f.token_ids("eos_token_id");
  check_token_ids(f, "bos_token_id", {c.bos_id}, c.vocab_size);
  check_token_ids(f, "eos_token_id", c.eos_ids, c.vocab_size);
  validate(c, source);
  return c;
}

// transformers samples only when do_sample is true and is greedy otherwise, whatever the
// temperature says; a chat runtime is expected to sample with the temperature a model
// declares, so an absent do_sample counts as true, and only do_sample: false means greedy.
SamplingHints sampling_hints(const Fields& g) {
  SamplingHints h;
  auto in_range = [&](const char* key, double lo, double hi) {
    const double v = g.number(key);
    if (v < lo || v > hi)
      g.fail(std::string("'") + key + "' = " + format_number(v) + " is outside [" +
             format_number(lo) + ", " + format_number(hi) + "]");
    return float(v);
  };
  if (g.has("temperature")) h.temperature = in_range("temperature", 0, 100);
  if (g.has("top_p")) h.top_p = in_range("top_p", 0, 1);
  if (g.has("min_p")) h.min_p = in_range("min_p", 0, 1);
  if (g.has("top_k")) h.top_k = int(in_range("top_k", 0, 1 << 24));
  if (!g.boolean("do_sample", true)) h.temperature = 0.0f;
  if (h.temperature || h.top_p || h.min_p || h.top_k) h.source = "generation_config.json";
  return h;
}

ModelConfig config_from_hf_directory(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  ModelConfig c = config_from_hf_json(read_json_file(config_path), config_path);
  const std::filesystem::path normal = std::filesystem::path(dir).lexically_normal();
  c.name = (normal.has_filename() ? normal : normal.parent_path()).filename().string();

  const std::string generation_path = dir + "/generation_config.json";
  if (std::error_code ec; std::filesystem::is_regular_file(generation_path, ec)) {
    const json generation = read_json_file(generation_path);
    const Fields g(generation, generation_path);
    if (g.has("bos_token_id")) c.bos_id = first_or_none(g.token_ids("bos_token_id"));
    if (g.has("eos_token_id")) c.eos_ids = g.token_ids("eos_token_id");
    check_token_ids(g, "bos_token_id", {c.bos_id}, c.vocab_size);
    check_token_ids(g, "eos_token_id", c.eos_ids, c.vocab_size);
    c.sampling = sampling_hints(g);
  }
  return c;
}

SourcedText chat_template_from_hf_directory(const std::string& dir) {
  std::error_code ec;
  const std::string jinja_path = dir + "/chat_template.jinja";
  if (std::filesystem::is_regular_file(jinja_path, ec)) {
    std::ifstream in(jinja_path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in) throw std::runtime_error(jinja_path + ": cannot read");
    return {text.str(), "chat_template.jinja"};
  }
  const std::string config_path = dir + "/tokenizer_config.json";
  if (!std::filesystem::is_regular_file(config_path, ec)) return {"", "none"};
  const json config = read_json_file(config_path);
  const Fields f(config, config_path);
  const json* tmpl = f.find("chat_template");
  if (!tmpl) return {"", "none"};
  if (tmpl->is_string()) return {tmpl->get<std::string>(), "tokenizer_config.json"};
  if (tmpl->is_array())
    for (const json& entry : *tmpl)
      if (entry.is_object() && entry.value("name", json()) == "default" &&
          entry.value("template", json()).is_string())
        return {entry["template"].get<std::string>(), "tokenizer_config.json (\"default\" of " +
                                                          std::to_string(tmpl->size()) + ")"};
  f.fail("chat_template is neither a string nor a list holding a {\"name\": \"default\", "
         "\"template\": ...} entry");
}

}  // namespace kvlm
