// Seed inputs: the test data of tests/data, cut down to what each harness reads, and files
// made with the test writers so every value type, tensor type and option appears once.
#include <algorithm>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "eval/report.h"
#include "kv/strategy.h"
#include "model/gguf.h"
#include "tests/fuzz/targets.h"
#include "tests/gguf_writer.h"
#include "tests/safetensors_writer.h"
#include "tokenizer/spm_proto.h"

namespace kvlm::fuzz {
namespace {

using namespace std::string_literals;  // "..."s keeps the NUL bytes that separate files

const char* const kHfModels[] = {"llama2-spm", "llama3-gqa", "sharded-dynamic", "untied-linear"};
const char* const kHfGgufs[] = {"llama2-spm.gguf", "llama3-gqa.gguf", "untied-linear.gguf"};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (!in) throw std::runtime_error(path + ": cannot read (run from the repository root)");
  return bytes.str();
}

// "" for a file the model directory does not have.
std::string read_optional(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::stringstream bytes;
  bytes << in.rdbuf();
  return bytes.str();
}

std::string as_string(const std::vector<uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

std::string join_nul(const std::vector<std::string>& parts) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? std::string(1, '\0') : "") + parts[i];
  return out;
}

// A test GGUF cut down: the real files are mostly tensor data, which the reader only
// locates, and vocabularies, which only the tokenizer reads. With `tokenizer`, only the
// tokenizer.* metadata; without, everything else and the two smallest tensors.
std::string cut_gguf(const std::string& name, bool tokenizer) {
  const gguf::File f("tests/data/hf/" + name);
  test::GGUFWriter w(f.version());
  for (const auto& [key, value] : f.metadata())
    if ((key.rfind("tokenizer.", 0) == 0) == tokenizer) w.set(key, value);
  if (!tokenizer) {
    std::vector<const gguf::TensorInfo*> smallest;
    for (const gguf::TensorInfo& t : f.tensors()) smallest.push_back(&t);
    std::sort(smallest.begin(), smallest.end(),
              [](auto* a, auto* b) { return a->n_bytes < b->n_bytes; });
    for (size_t i = 0; i < 2 && i < smallest.size(); ++i) {
      const gguf::TensorInfo& t = *smallest[i];
      w.add_raw_tensor(t.name, t.dims, uint32_t(t.type), {t.data, t.data + t.n_bytes});
    }
  }
  return as_string(w.bytes());
}

// Every metadata value type, a nested array, a custom alignment and every tensor type.
std::string gguf_all_types() {
  test::GGUFWriter w;
  w.set("u8", uint8_t{1});
  w.set("i8", int8_t{-1});
  w.set("u16", uint16_t{2});
  w.set("i16", int16_t{-2});
  w.set("u32", uint32_t{3});
  w.set("i32", int32_t{-3});
  w.set("u64", uint64_t{4});
  w.set("i64", int64_t{-4});
  w.set("f32", 0.5f);
  w.set("f64", 0.25);
  w.set("bool", true);
  w.set("string", "text");
  w.set("strings", std::vector<std::string>{"a", "b"});
  w.set("floats", std::vector<float>{1, 2});
  w.set("ints", std::vector<int32_t>{1, -2});
  gguf::Value inner{gguf::ValueType::Array, gguf::Array{{gguf::ValueType::U32, uint64_t{7}}}};
  w.set("nested", gguf::Value{gguf::ValueType::Array, gguf::Array{inner, inner}});
  w.set_alignment(64);
  const std::vector<float> values(64, 0.5f);
  for (gguf::TensorType type :
       {gguf::TensorType::F32, gguf::TensorType::F16, gguf::TensorType::BF16,
        gguf::TensorType::Q8_0, gguf::TensorType::Q4_0, gguf::TensorType::Q4_1})
    w.add_tensor(std::string("t.") + gguf::type_name(type), {32, 2}, type, values);
  return as_string(w.bytes());
}

std::string safetensors_all_types() {
  test::SafetensorsWriter w;
  w.add("f32", "F32", {2, 3}, std::vector<float>(6, 1.5f));
  w.add("f16", "F16", {4}, std::vector<float>(4, -2.0f));
  w.add("bf16", "BF16", {1, 2}, std::vector<float>(2, 3.0f));
  w.add("empty", "F32", {0, 4}, {});
  w.header()["__metadata__"] = {{"format", "pt"}};
  return as_string(w.bytes());
}

std::vector<Seed> gguf_seeds() {
  std::vector<Seed> s{{"all_types", gguf_all_types()}};
  for (const char* name : kHfGgufs) s.push_back({name, cut_gguf(name, false)});
  return s;
}

std::vector<Seed> safetensors_index_seeds() {
  return {
      {"two_shards",
       R"({"metadata": {"total_size": 16}, "weight_map": {"a": "model-00001-of-00002.safetensors", )"
       R"("b": "model-00002-of-00002.safetensors"}})"},
      {"sharded-dynamic", read_file("tests/data/hf/sharded-dynamic/model.safetensors.index.json")},
  };
}

std::vector<Seed> hf_config_seeds() {
  std::vector<Seed> s;
  for (const char* model : kHfModels) {
    const std::string dir = std::string("tests/data/hf/") + model + "/";
    s.push_back({model, join_nul({read_file(dir + "config.json"),
                                  read_optional(dir + "generation_config.json"),
                                  read_optional(dir + "tokenizer_config.json")})});
  }
  return s;
}

std::vector<Seed> tokenizer_json_seeds() {
  std::vector<Seed> s;
  for (const char* model : {"llama3-gqa", "untied-linear"}) {
    const std::string dir = std::string("tests/data/hf/") + model + "/";
    s.push_back({model, join_nul({read_file(dir + "tokenizer.json"),
                                  read_optional(dir + "tokenizer_config.json"),
                                  read_optional(dir + "generation_config.json"),
                                  read_optional(dir + "config.json")})});
  }
  return s;
}

std::vector<Seed> gguf_tokenizer_seeds() {
  std::vector<Seed> s;
  for (const char* name : kHfGgufs) s.push_back({name, cut_gguf(name, true)});
  return s;
}

std::vector<Seed> spm_model_seeds() {
  SpmModel small;
  small.model_type = SpmModelType::Bpe;
  small.byte_fallback = true;
  small.pieces = {{"<unk>", 0, TokenType::Unknown},
                  {"<s>", 0, TokenType::Control},
                  {"</s>", 0, TokenType::Control},
                  {"\xe2\x96\x81", -1, TokenType::Normal},
                  {"a", -2, TokenType::Normal},
                  {"\xe2\x96\x81"
                   "a",
                   -3, TokenType::Normal},
                  {"<0x41>", 0, TokenType::Byte},
                  {"<x>", 0, TokenType::UserDefined}};
  return {{"llama2-spm", read_file("tests/data/hf/llama2-spm/tokenizer.model")},
          {"written", serialize_spm_model(small)}};
}

// Byte 0 of a tokenize input: tokenizer (5 of them) + 5 * mode (encode, encode with special
// tokens, decode).
std::vector<Seed> tokenize_seeds() {
  const std::string texts[] = {
      "Hello, world! It's 2024.", "caf\xc3\xa9 \xe4\xbd\xa0\xe5\xa5\xbd \xf0\x9f\x99\x82\n\n  x",
      "<|im_start|>user\nhi<|im_end|>", "<s>[INST] hi [/INST]</s>", "\xff\xfe\x80 broken \xe2\x82"};
  std::vector<Seed> s;
  auto add = [&](int tokenizer, int mode, const std::string& label, const std::string& rest) {
    std::string name = "t";
    name.append(std::to_string(tokenizer)).append("_").append(label);
    std::string bytes(1, char(tokenizer + 5 * mode));
    s.push_back({name, bytes.append(rest)});
  };
  for (int tokenizer = 0; tokenizer < 5; ++tokenizer) {
    for (int mode = 0; mode < 2; ++mode)
      for (size_t i = 0; i < std::size(texts); ++i)
        add(tokenizer, mode, "m"s + std::to_string(mode) + "_"s + std::to_string(i), texts[i]);
    add(tokenizer, 2, "decode", "\x01\x00\x02\x00\x10\x01\xff\x00\x41\x00"s);
  }
  return s;
}

std::vector<Seed> chat_template_seeds() {
  const nlohmann::json doc = nlohmann::json::parse(read_file("tests/data/chat_templates.json"));
  // Roles by first byte modulo 4: 0 system, 1 user, 2 assistant, 3 another.
  // Jinja, then an empty --template, then the messages.
  const std::string conversation = "\0\0\x04You are kind.\0\x01Hi!\0\x02Hello.\0\x01  What now?  "s;
  std::vector<Seed> s;
  for (const auto& [name, entry] : doc.at("templates").items())
    s.push_back({name, entry.at("jinja").get<std::string>() + conversation});
  s.push_back({"override", "{{ x }}\0zephyr"s + conversation});
  s.push_back({"none", ""});
  return s;
}

std::vector<Seed> kv_spec_seeds() {
  std::vector<Seed> s;
  for (const MethodInfo& m : known_methods()) {
    std::string spec = m.name;
    for (size_t i = 0; i < m.params.size(); ++i)
      spec += (i ? "," : ":") + m.params[i].first + "=" + m.params[i].second;
    s.push_back({m.name, spec});
  }
  s.push_back({"composed", "snapkv:budget=128,window=32+minicache"});
  s.push_back({"ratio", "h2o:ratio=0.25"});
  s.push_back({"list", "snapkv:budget=64,window=8,h2o:budget=64,full"});
  return s;
}

// A real run's --json document with only its first n cells and n answers.
std::string real_sweep_head(const std::string& path, size_t n) {
  nlohmann::json doc = nlohmann::json::parse(read_file(path));
  for (const char* key : {"cells", "trials_detail"})
    doc[key].erase(doc[key].begin() + std::min(n, doc[key].size()), doc[key].end());
  return run_json_text(doc);
}

// Heatmaps and a sweep, written as the commands write their --json files, and a real
// sweep's file cut to its first cells and answers (the whole one is 0.7 MB).
std::vector<Seed> replot_seeds() {
  EvalGrid grid;
  grid.methods = {{"full", "full", ""},
                  {"snapkv:budget=64", "snapkv", "budget=64"},
                  {"snapkv:budget=128", "snapkv", "budget=128"}};
  std::vector<Cell> cells;
  for (int m = 0; m < 3; ++m)
    for (double depth : {-1.0, 0.5})
      cells.push_back({m, 1024, depth, 2, 0.5 * m, 0.25, 1e6, 2e6, 100, 20, m == 1});
  auto doc = [&](const char* command) {
    return nlohmann::json{{"command", command},
                          {"title", std::string(command) + " seed"},
                          {"cells", cells_json(cells, grid)}}
        .dump(1);
  };
  return {{"passkey", doc("passkey")},
          {"needle", doc("needle")},
          {"sweep", doc("sweep")},
          {"sweep_pooling", real_sweep_head("tests/results/snapkv_pooling_2k.json", 6)}};
}

}  // namespace

std::vector<Seed> seeds(const std::string& target) {
  if (target == "gguf") return gguf_seeds();
  if (target == "safetensors") return {{"all_types", safetensors_all_types()}};
  if (target == "safetensors_index") return safetensors_index_seeds();
  if (target == "hf_config") return hf_config_seeds();
  if (target == "tokenizer_json") return tokenizer_json_seeds();
  if (target == "gguf_tokenizer") return gguf_tokenizer_seeds();
  if (target == "spm_model") return spm_model_seeds();
  if (target == "tokenize") return tokenize_seeds();
  if (target == "chat_template") return chat_template_seeds();
  if (target == "kv_spec") return kv_spec_seeds();
  if (target == "replot") return replot_seeds();
  throw std::invalid_argument("no seeds for fuzz target '" + target + "'");
}

}  // namespace kvlm::fuzz
