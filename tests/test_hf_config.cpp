// Hugging Face directories without running a model: config.json read as transformers reads
// it (checked against the golden models and against transformers' own RoPE frequencies),
// the chat template's source, the loader's choice, and every malformed or unsupported
// config as a clear error naming the file and key.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <initializer_list>

#include "model/hf_config.h"
#include "model/json_file.h"
#include "model/load.h"
#include "model_fixture.h"
#include "tests/safetensors_writer.h"

namespace kvlm {
namespace {

using nlohmann::json;

std::string hf_dir(const std::string& model) { return test::data_path("hf/" + model); }

json golden(const std::string& model) {
  return read_json_file(test::data_path("hf_golden/" + model + ".json"));
}

// The smallest config transformers accepts for a Llama model.
json base_config() {
  return {{"architectures", json::array({"LlamaForCausalLM"})}, {"hidden_size", 64}, {"num_hidden_layers", 2},
          {"num_attention_heads", 4}, {"intermediate_size", 96}, {"vocab_size", 100}};
}

std::string config_error(const json& config) {
  try {
    config_from_hf_json(config, "x/config.json");
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("x/config.json", 0), 0u) << "does not name the file: " << message;
    return message;
  }
  ADD_FAILURE() << "accepted: " << config.dump();
  return "";
}

bool mentions(const std::string& message, std::initializer_list<std::string> needles) {
  for (const std::string& n : needles)
    if (message.find(n) == std::string::npos) {
      ADD_FAILURE() << "message lacks \"" << n << "\": " << message;
      return false;
    }
  return true;
}

// transformers' inv_freq (6 significant digits) recorded by the golden script.
void expect_reference_frequencies(const std::vector<float>& got, const json& reference) {
  const auto want = reference.get<std::vector<double>>();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); i++) EXPECT_NEAR(got[i], want[i], 1e-5 * want[i]) << "pair " << i;
}

TEST(HfConfig, GoldenModelsReadAsTransformersReadsThem) {
  const ModelConfig spm = config_from_hf_directory(hf_dir("llama2-spm"));
  EXPECT_EQ(spm.name, "llama2-spm");
  EXPECT_EQ(spm.n_layers, 2);
  EXPECT_EQ(spm.dim, 64);
  EXPECT_EQ(spm.n_heads, 4);
  EXPECT_EQ(spm.n_kv_heads, 4);
  EXPECT_EQ(spm.head_dim, 16);
  EXPECT_EQ(spm.ffn_dim, 176);
  EXPECT_EQ(spm.vocab_size, 560);
  EXPECT_EQ(spm.context_length, 128);
  EXPECT_FLOAT_EQ(spm.rms_eps, 1e-6f);
  EXPECT_EQ(spm.rope_scaling, RopeScaling::None);
  EXPECT_FALSE(spm.tied_embeddings);
  EXPECT_EQ(spm.bos_id, 1);
  EXPECT_EQ(spm.eos_ids, std::vector<int32_t>{2});

  const ModelConfig l3 = config_from_hf_directory(hf_dir("llama3-gqa") + "/");
  EXPECT_EQ(l3.name, "llama3-gqa");
  EXPECT_EQ(l3.n_kv_heads, 2);
  EXPECT_EQ(l3.rope_scaling, RopeScaling::Llama3);
  EXPECT_FLOAT_EQ(l3.rope_theta, 500000);
  EXPECT_EQ(l3.rope_original_context, 64);
  EXPECT_EQ(l3.bos_id, 480);
  EXPECT_EQ(l3.eos_ids, (std::vector<int32_t>{481, 484}));
  expect_reference_frequencies(rope_inv_frequencies(l3), golden("llama3-gqa")["notes"]["inv_freq"]);

  const ModelConfig linear = config_from_hf_directory(hf_dir("untied-linear"));
  EXPECT_EQ(linear.n_kv_heads, 1);
  EXPECT_EQ(linear.rope_scaling, RopeScaling::Linear);  // written with the old "type" key
  EXPECT_FLOAT_EQ(linear.rope_factor, 2);
  EXPECT_EQ(linear.eos_ids, std::vector<int32_t>{486});

  const ModelConfig dynamic = config_from_hf_directory(hf_dir("sharded-dynamic"));
  EXPECT_EQ(dynamic.rope_scaling, RopeScaling::Dynamic);
  EXPECT_EQ(dynamic.rope_original_context, 32);
  EXPECT_TRUE(dynamic.tied_embeddings);
  const json longest = golden("sharded-dynamic")["notes"]["inv_freq_for_longest_prompt"];
  expect_reference_frequencies(rope_inv_frequencies(dynamic, longest["seq_len"].get<int>()),
                               longest["inv_freq"]);
}

// Up to the original context dynamic NTK is plain RoPE; past it, the slowest pair slows.
TEST(HfConfig, DynamicFrequenciesChangeOnlyPastTheOriginalContext) {
  json config = base_config();
  config["max_position_embeddings"] = 32;
  config["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}};
  const ModelConfig dynamic = config_from_hf_json(config, "dynamic");
  const ModelConfig plain = config_from_hf_json(base_config(), "plain");
  EXPECT_EQ(rope_inv_frequencies(dynamic, 1), rope_inv_frequencies(plain));
  EXPECT_EQ(rope_inv_frequencies(dynamic, 32), rope_inv_frequencies(plain));
  const std::vector<float> longer = rope_inv_frequencies(dynamic, 33);
  EXPECT_FLOAT_EQ(longer[0], 1.0f);
  for (size_t i = 1; i < longer.size(); i++) EXPECT_LT(longer[i], rope_inv_frequencies(plain)[i]);
}

TEST(HfConfig, RopeScalingInEveryFormTransformersAccepts) {
  auto with = [](const char* key, const json& value) {
    json c = base_config();
    c["max_position_embeddings"] = 256;
    c[key] = value;
    return config_from_hf_json(c, "x/config.json");
  };
  ModelConfig c = with("rope_scaling", {{"rope_type", "linear"}, {"factor", 4}});
  EXPECT_EQ(c.rope_scaling, RopeScaling::Linear);
  EXPECT_FLOAT_EQ(c.rope_factor, 4);
  c = with("rope_scaling", {{"type", "dynamic"}, {"factor", 2.5}});
  EXPECT_EQ(c.rope_scaling, RopeScaling::Dynamic);
  EXPECT_EQ(c.rope_original_context, 256);
  c = with("rope_scaling", nullptr);
  EXPECT_EQ(c.rope_scaling, RopeScaling::None);
  EXPECT_FLOAT_EQ(c.rope_theta, 10000);
  // transformers 5 writes rope_parameters, with rope_theta inside.
  c = with("rope_parameters", {{"rope_type", "default"}, {"rope_theta", 1e6}});
  EXPECT_EQ(c.rope_scaling, RopeScaling::None);
  EXPECT_FLOAT_EQ(c.rope_theta, 1e6);
  c = with("rope_parameters", {{"rope_type", "llama3"}, {"rope_theta", 5e5}, {"factor", 8},
                               {"low_freq_factor", 1}, {"high_freq_factor", 4}});
  EXPECT_EQ(c.rope_scaling, RopeScaling::Llama3);
  EXPECT_EQ(c.rope_original_context, 256);  // absent: max_position_embeddings
  EXPECT_FLOAT_EQ(c.rope_high_freq_factor, 4);
}

TEST(HfConfig, UnsupportedRopeIsAClearError) {
  json c = base_config();
  c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4}};
  EXPECT_TRUE(mentions(config_error(c), {"rope_scaling", "rope type 'yarn' is not supported"}));
  c["rope_scaling"] = {{"type", "longrope"}};
  EXPECT_TRUE(mentions(config_error(c), {"'longrope'"}));
  c["rope_scaling"] = {{"type", "linear"}};
  EXPECT_TRUE(mentions(config_error(c), {"rope_scaling", "'factor' is missing"}));
  c["rope_scaling"] = {{"type", "llama3"}, {"factor", 8}, {"low_freq_factor", 1}};
  EXPECT_TRUE(mentions(config_error(c), {"'high_freq_factor' is missing"}));
  c["rope_scaling"] = "linear";
  EXPECT_TRUE(mentions(config_error(c), {"rope_scaling", "a string, expected a JSON object"}));
  c = base_config();
  c["partial_rotary_factor"] = 0.5;
  EXPECT_TRUE(mentions(config_error(c), {"partial_rotary_factor"}));
}

TEST(HfConfig, MissingOrMistypedFieldsNameTheKey) {
  for (const char* key : {"hidden_size", "num_hidden_layers", "num_attention_heads",
                          "intermediate_size", "vocab_size"}) {
    json c = base_config();
    c.erase(key);
    EXPECT_TRUE(mentions(config_error(c), {std::string("'") + key + "' is missing"}));
  }
  json c = base_config();
  c["hidden_size"] = "64";
  EXPECT_TRUE(mentions(config_error(c), {"'hidden_size' is \"64\" (a string)", "positive integer"}));
  c = base_config();
  c["num_hidden_layers"] = 2.5;
  EXPECT_TRUE(mentions(config_error(c), {"'num_hidden_layers'", "a fractional number"}));
  c = base_config();
  c["rms_norm_eps"] = "small";
  EXPECT_TRUE(mentions(config_error(c), {"'rms_norm_eps'", "expected a number"}));
  c = base_config();
  c["tie_word_embeddings"] = 1;
  EXPECT_TRUE(mentions(config_error(c), {"'tie_word_embeddings'", "true or false"}));
  c = base_config();
  c["vocab_size"] = 1e30;
  EXPECT_TRUE(mentions(config_error(c), {"'vocab_size'"}));
  c = base_config();
  c["intermediate_size"] = uint64_t{1} << 40;
  EXPECT_TRUE(mentions(config_error(c), {"'intermediate_size'", "too large"}));
  EXPECT_TRUE(mentions(config_error(json::array({1, 2})), {"an array, expected a JSON object"}));
}

TEST(HfConfig, AbsurdHeadCounts) {
  json c = base_config();
  c["num_attention_heads"] = 0;
  EXPECT_TRUE(mentions(config_error(c), {"'num_attention_heads' = 0 must be positive"}));
  c = base_config();
  c["num_key_value_heads"] = -2;
  EXPECT_TRUE(mentions(config_error(c), {"'num_key_value_heads' = -2 must be positive"}));
  c = base_config();
  c["num_attention_heads"] = 3;
  EXPECT_TRUE(mentions(config_error(c), {"hidden_size 64 is not a multiple of num_attention_heads 3"}));
  c["head_dim"] = 16;  // an explicit head_dim needs no divisibility (Mistral-Nemo-style)
  EXPECT_EQ(config_from_hf_json(c, "x").q_dim(), 48);
  c = base_config();
  c["num_key_value_heads"] = 3;
  EXPECT_TRUE(mentions(config_error(c), {"not a multiple of kv heads (3)"}));
  c = base_config();
  c["num_key_value_heads"] = 8;
  EXPECT_TRUE(mentions(config_error(c), {"kv heads = 8 is outside [1, 4]"}));
  c = base_config();
  c["num_hidden_layers"] = 100000;
  EXPECT_TRUE(mentions(config_error(c), {"layers = 100000 is outside"}));
}

TEST(HfConfig, OnlyLlamaFamilyArchitectures) {
  json c = base_config();
  c["architectures"] = json::array({"Qwen2ForCausalLM"});
  EXPECT_TRUE(mentions(config_error(c), {"Qwen2ForCausalLM", "not supported", "LlamaForCausalLM"}));
  c["architectures"] = "LlamaForCausalLM";
  EXPECT_TRUE(mentions(config_error(c), {"'architectures'", "list of class names"}));
  c.erase("architectures");
  EXPECT_TRUE(mentions(config_error(c), {"model_type ''"}));
  c["model_type"] = "gemma";
  EXPECT_TRUE(mentions(config_error(c), {"model_type 'gemma' is not supported"}));
  c["model_type"] = "llama";
  EXPECT_NO_THROW(config_from_hf_json(c, "x"));
  c = base_config();
  c["attention_bias"] = true;
  EXPECT_TRUE(mentions(config_error(c), {"attention_bias"}));
  c = base_config();
  c["hidden_act"] = "gelu";
  EXPECT_TRUE(mentions(config_error(c), {"hidden_act 'gelu'"}));
}

// Mistral v0.1 attends within 4096 tokens; within that window it is exactly Llama.
TEST(HfConfig, MistralSlidingWindowLimitsTheContext) {
  json c = base_config();
  c["architectures"] = json::array({"MistralForCausalLM"});
  c["max_position_embeddings"] = 32768;
  c["sliding_window"] = nullptr;
  EXPECT_EQ(config_from_hf_json(c, "x").context_length, 32768);
  c["sliding_window"] = 4096;
  EXPECT_EQ(config_from_hf_json(c, "x").context_length, 4096);
  c.erase("sliding_window");  // transformers' MistralConfig default
  EXPECT_EQ(config_from_hf_json(c, "x").context_length, 4096);
  c["architectures"] = json::array({"LlamaForCausalLM"});  // Llama has no sliding window
  c["sliding_window"] = 4096;
  EXPECT_EQ(config_from_hf_json(c, "x").context_length, 32768);
}

TEST(HfConfig, TokenIdsSingleOrListAndChecked) {
  json c = base_config();
  c["bos_token_id"] = 1;
  c["eos_token_id"] = {2, 7};
  ModelConfig m = config_from_hf_json(c, "x");
  EXPECT_EQ(m.bos_id, 1);
  EXPECT_EQ(m.eos_ids, (std::vector<int32_t>{2, 7}));
  c["bos_token_id"] = nullptr;
  EXPECT_EQ(config_from_hf_json(c, "x").bos_id, -1);
  c["eos_token_id"] = 100;
  EXPECT_TRUE(mentions(config_error(c), {"'eos_token_id' 100 is not a token id (vocab_size 100)"}));
  c["eos_token_id"] = {2, "</s>"};
  EXPECT_TRUE(mentions(config_error(c), {"'eos_token_id'", "a token id or a list of token ids"}));
  c["eos_token_id"] = -1;
  EXPECT_TRUE(mentions(config_error(c), {"'eos_token_id'"}));
}

// A copy of a golden model directory that a test may break.
struct DirCopy {
  test::TempDir dir;
  explicit DirCopy(const std::string& model) : dir(model) {
    std::filesystem::copy(hf_dir(model), dir.path(), std::filesystem::copy_options::recursive);
  }
  json config() const { return read_json_file(dir.file("config.json")); }
  void write(const std::string& name, const json& value) const {
    test::write_text(dir.file(name), value.dump(2));
  }
  std::string open_error() const {
    try {
      Checkpoint checkpoint(dir.path());
      CpuBackend backend(1);
      checkpoint.load(backend);
    } catch (const std::runtime_error& e) {
      return e.what();
    }
    ADD_FAILURE() << "accepted " << dir.path();
    return "";
  }
};

TEST(HfConfig, GenerationConfigIdsWin) {
  DirCopy d("untied-linear");
  d.write("generation_config.json", {{"bos_token_id", 480}, {"eos_token_id", {486, 3}}});
  EXPECT_EQ(config_from_hf_directory(d.dir.path()).eos_ids, (std::vector<int32_t>{486, 3}));
  d.write("generation_config.json", {{"eos_token_id", 9999}});
  EXPECT_TRUE(mentions(d.open_error(), {"generation_config.json", "'eos_token_id' 9999"}));
  test::write_text(d.dir.file("generation_config.json"), "{");
  EXPECT_TRUE(mentions(d.open_error(), {"generation_config.json", "not valid JSON"}));
}

// generation_config.json's sampling is the model's recommendation; do_sample false
// (transformers' greedy decoding) makes it greedy.
TEST(HfConfig, GenerationConfigSamplingHints) {
  DirCopy d("untied-linear");
  d.write("generation_config.json", {{"eos_token_id", 3}});
  EXPECT_EQ(config_from_hf_directory(d.dir.path()).sampling.source, "");
  d.write("generation_config.json", {{"temperature", 0.2}, {"top_p", 0.9}, {"top_k", 50}, {"do_sample", true}});
  SamplingHints h = config_from_hf_directory(d.dir.path()).sampling;
  EXPECT_EQ(h.temperature, 0.2f);
  EXPECT_EQ(h.top_p, 0.9f);
  EXPECT_EQ(h.top_k, 50);
  EXPECT_FALSE(h.min_p.has_value());
  EXPECT_EQ(h.source, "generation_config.json");
  d.write("generation_config.json", {{"temperature", 0.6}, {"do_sample", false}});
  EXPECT_EQ(config_from_hf_directory(d.dir.path()).sampling.temperature, 0.0f);
  d.write("generation_config.json", {{"top_p", 1.5}});
  EXPECT_TRUE(mentions(d.open_error(), {"generation_config.json", "'top_p' = 1.5 is outside [0, 1]"}));
  d.write("generation_config.json", {{"temperature", "warm"}});
  EXPECT_TRUE(mentions(d.open_error(), {"generation_config.json", "'temperature'", "expected a number"}));
}

TEST(HfConfig, ChatTemplateSources) {
  DirCopy d("untied-linear");
  SourcedText t = chat_template_from_hf_directory(d.dir.path());
  EXPECT_EQ(t.source, "tokenizer_config.json");
  EXPECT_NE(t.text.find("<|im_start|>"), std::string::npos);

  json tokenizer_config = read_json_file(d.dir.file("tokenizer_config.json"));
  tokenizer_config["chat_template"] = json::array({{{"name", "tool_use"}, {"template", "T"}},
                                                    {{"name", "default"}, {"template", "D"}}});
  d.write("tokenizer_config.json", tokenizer_config);
  t = chat_template_from_hf_directory(d.dir.path());
  EXPECT_EQ(t.text, "D");
  EXPECT_NE(t.source.find("\"default\" of 2"), std::string::npos);

  test::write_text(d.dir.file("chat_template.jinja"), "{{ messages }}");
  t = chat_template_from_hf_directory(d.dir.path());
  EXPECT_EQ(t.text, "{{ messages }}");
  EXPECT_EQ(t.source, "chat_template.jinja");
  std::filesystem::remove(d.dir.file("chat_template.jinja"));

  tokenizer_config["chat_template"] = json::array({{{"name", "tool_use"}, {"template", "T"}}});
  d.write("tokenizer_config.json", tokenizer_config);
  try {
    chat_template_from_hf_directory(d.dir.path());
    ADD_FAILURE() << "a template list without a default was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(mentions(e.what(), {"tokenizer_config.json", "\"default\""}));
  }
  std::filesystem::remove(d.dir.file("tokenizer_config.json"));
  t = chat_template_from_hf_directory(d.dir.path());
  EXPECT_EQ(t.text, "");
  EXPECT_EQ(t.source, "none");
}

TEST(HfCheckpoint, SaysWhichLoaderAndWhy) {
  const Checkpoint sharded(hf_dir("sharded-dynamic"));
  EXPECT_TRUE(sharded.is_directory());
  EXPECT_EQ(sharded.format(), "Hugging Face safetensors (3 shards, F32)");
  EXPECT_EQ(sharded.loader_reason(), "directory with config.json + model.safetensors.index.json -> "
                                     "safetensors loader (3 shards, 20 tensors)");
  const Checkpoint single(hf_dir("llama2-spm"));
  EXPECT_EQ(single.format(), "Hugging Face safetensors (1 file, F16)");
  EXPECT_NE(single.loader_reason().find("config.json + model.safetensors -> safetensors loader (1 file"),
            std::string::npos);
  uint64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(hf_dir("sharded-dynamic")))
    if (entry.path().extension() == ".safetensors") bytes += entry.file_size();
  EXPECT_EQ(sharded.file_bytes(), bytes);
  // Tied: the embedding is the only vocab x hidden matrix.
  EXPECT_EQ(sharded.parameter_count(),
            read_json_file(hf_dir("sharded-dynamic") + "/model.safetensors.index.json")["metadata"]
                          ["total_parameters"].get<uint64_t>());
}

TEST(HfCheckpoint, BrokenDirectoriesAreClearErrors) {
  {
    DirCopy d("untied-linear");
    json c = d.config();
    c["tie_word_embeddings"] = true;  // tied although lm_head.weight is there: transformers ties
    d.write("config.json", c);
    EXPECT_TRUE(Checkpoint(d.dir.path()).config().tied_embeddings);
  }
  {
    DirCopy d("sharded-dynamic");
    json c = d.config();
    c["tie_word_embeddings"] = false;
    d.write("config.json", c);
    EXPECT_TRUE(mentions(d.open_error(), {"tie_word_embeddings is false", "lm_head.weight"}));
  }
  {
    DirCopy d("untied-linear");
    json c = d.config();
    c["intermediate_size"] = 64;
    d.write("config.json", c);
    EXPECT_TRUE(mentions(d.open_error(), {"tensor 'model.layers.0.mlp.gate_proj.weight' has shape [128, 64], "
                                          "expected [64, 64]"}));
  }
  {
    DirCopy d("untied-linear");
    std::filesystem::remove(d.dir.file("config.json"));
    EXPECT_TRUE(mentions(d.open_error(), {"is a directory without config.json"}));
  }
  {
    DirCopy d("untied-linear");
    std::filesystem::rename(d.dir.file("model.safetensors"), d.dir.file("pytorch_model.bin"));
    EXPECT_TRUE(mentions(d.open_error(), {"only pytorch_model.bin weights"}));
  }
  {
    DirCopy d("untied-linear");
    test::write_text(d.dir.file("config.json"), "{\"hidden_size\": 64,");
    EXPECT_TRUE(mentions(d.open_error(), {"config.json", "not valid JSON"}));
  }
}

}  // namespace
}  // namespace kvlm
