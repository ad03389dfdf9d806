// tokenizer_from_hf_directory: byte-level BPE from tokenizer.json against Hugging Face
// `tokenizers` on the tiny models of tests/data/hf (tests/data/hf_tokenizers.json, made by
// tests/golden/make_hf_golden.py), the same vocabularies from their GGUF conversions,
// special ids from the side files, the choice between tokenizer.json and tokenizer.model,
// and clear errors for broken directories.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "model/gguf_tokenizer.h"
#include "model/gguf.h"
#include "tests/model_fixture.h"
#include "tokenizer/tokenizer.h"

namespace kvlm {
namespace {

namespace fs = std::filesystem;
using Ids = std::vector<int32_t>;
using nlohmann::json;

bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

json load(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path + " (run from the repository root)");
  return json::parse(in);
}

json golden(const std::string& section) {
  return load(test::data_path("hf_tokenizers.json"))[section];
}

// A scratch copy of a test model directory (or an empty one), removed afterwards.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& copy_of = "") {
    static int counter = 0;
    path_ = fs::path(testing::TempDir()) /
            ("kvlm_hf_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(path_);
    if (copy_of.empty()) return;
    for (const auto& entry : fs::directory_iterator(test::data_path(copy_of))) {
      if (entry.path().extension() != ".safetensors") fs::copy(entry.path(), path_);
    }
  }
  ~ScratchDir() { fs::remove_all(path_); }
  std::string path() const { return path_.string(); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ / name, std::ios::binary) << text;
  }
  json read(const std::string& name) const { return load((path_ / name).string()); }
  void remove(const std::string& name) const { fs::remove(path_ / name); }

 private:
  fs::path path_;
};

std::string error_of(const std::string& dir) {
  try {
    tokenizer_from_hf_directory(dir);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << dir;
  return "";
}

// ids: encode with special tokens parsed and no bos; ids_with_special: what the tokenizer
// adds by default, where that differs; decoded: decode(ids) with special tokens as text.
void expect_parity(const Tokenizer& tok, const json& section) {
  int checked = 0;
  for (const auto& c : section["cases"]) {
    const std::string text = c["text"];
    const Ids ids = c["ids"];
    EXPECT_EQ(tok.encode(text, false), ids) << "text: " << testing::PrintToString(text);
    const Ids with_special =
        c.contains("ids_with_special") ? c["ids_with_special"].get<Ids>() : ids;
    EXPECT_EQ(tok.encode(text, tok.add_bos_default()), with_special)
        << "text: " << testing::PrintToString(text);
    EXPECT_EQ(tok.decode(ids), c["decoded"].get<std::string>())
        << "text: " << testing::PrintToString(text);
    ++checked;
  }
  EXPECT_GE(checked, 80);
}

// ---------------------------------------------------------------------------------------
// Parity
// ---------------------------------------------------------------------------------------

TEST(HfTokenizer, Llama3TokenizerJsonMatchesHuggingFace) {
  const auto tok = tokenizer_from_hf_directory(test::data_path("hf/llama3-gqa"));
  EXPECT_TRUE(contains(tok->describe(), "llama3-gqa/tokenizer.json")) << tok->describe();
  EXPECT_TRUE(contains(tok->describe(), "pre-tokenizer llama-bpe")) << tok->describe();
  expect_parity(*tok, golden("bpe_llama3"));
}

TEST(HfTokenizer, ChatMLTokenizerJsonMatchesHuggingFace) {
  expect_parity(*tokenizer_from_hf_directory(test::data_path("hf/untied-linear")),
                golden("bpe_chatml"));
}

TEST(HfTokenizer, GgufConversionsMatchHuggingFaceToo) {
  for (const auto& [model, section] : {std::pair{"hf/llama3-gqa.gguf", "bpe_llama3"},
                                       std::pair{"hf/untied-linear.gguf", "bpe_chatml"}}) {
    SCOPED_TRACE(model);
    const gguf::File file(test::data_path(model));
    expect_parity(*tokenizer_from_gguf(file), golden(section));
  }
}

TEST(HfTokenizer, MergesWrittenAsStringsReadTheSame) {
  ScratchDir dir("hf/llama3-gqa");
  json doc = dir.read("tokenizer.json");
  for (json& merge : doc["model"]["merges"])
    merge = merge[0].get<std::string>() + " " + merge[1].get<std::string>();
  dir.write("tokenizer.json", doc.dump());
  expect_parity(*tokenizer_from_hf_directory(dir.path()), golden("bpe_llama3"));
}

TEST(HfTokenizer, PreTokenizersMapOntoKvlmsOwn) {
  ScratchDir dir("hf/llama3-gqa");
  json doc = dir.read("tokenizer.json");
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  const std::pair<json, const char*> cases[] = {
      {byte_level, "pre-tokenizer gpt2"},
      {{{"type", "Sequence"}, {"pretokenizers", json::array({byte_level})}}, "pre-tokenizer gpt2"},
      {{{"type", "Sequence"},
        {"pretokenizers",
         json::array({{{"type", "Digits"}, {"individual_digits", true}}, byte_level})}},
       "pre-tokenizer smollm"},
  };
  for (const auto& [pre_tokenizer, expected] : cases) {
    doc["pre_tokenizer"] = pre_tokenizer;
    dir.write("tokenizer.json", doc.dump());
    const std::string description = tokenizer_from_hf_directory(dir.path())->describe();
    EXPECT_TRUE(contains(description, expected)) << description;
  }
}

// ---------------------------------------------------------------------------------------
// Special ids from tokenizer.json and the side files
// ---------------------------------------------------------------------------------------

TEST(HfTokenizer, SpecialIdsComeFromTheSideFiles) {
  // llama3-gqa: bos from the post-processor, eos <|eot_id|> from tokenizer_config.json,
  // generation_config.json lists [481, 484] as eos.
  const auto llama3 = tokenizer_from_hf_directory(test::data_path("hf/llama3-gqa"));
  EXPECT_EQ(llama3->bos_id(), 480);
  EXPECT_TRUE(llama3->add_bos_default());
  EXPECT_EQ(llama3->eos_id(), 484);
  EXPECT_TRUE(llama3->is_end_of_generation(481));
  EXPECT_TRUE(llama3->is_special(482));
  EXPECT_FALSE(llama3->is_special(411));
  EXPECT_EQ(llama3->token_bytes(482), "<|start_header_id|>");

  // untied-linear: no post-processor, add_bos_token false, bos_token null.
  const auto chatml = tokenizer_from_hf_directory(test::data_path("hf/untied-linear"));
  EXPECT_FALSE(chatml->add_bos_default());
  EXPECT_EQ(chatml->eos_id(), 486);

  // Side files change what the directory says.
  ScratchDir dir("hf/llama3-gqa");
  dir.write("tokenizer_config.json",
            R"({"bos_token": {"content": "<|begin_of_text|>"}, "eos_token": "<|end_of_text|>",
                "add_bos_token": false})");
  dir.write("generation_config.json", R"({"eos_token_id": 483})");
  const auto edited = tokenizer_from_hf_directory(dir.path());
  EXPECT_FALSE(edited->add_bos_default());
  EXPECT_EQ(edited->eos_id(), 481);
  EXPECT_TRUE(edited->is_end_of_generation(483));
  EXPECT_TRUE(edited->is_end_of_generation(484)) << "<|eot_id|> ends a Llama 3 turn";

  // Without tokenizer_config.json, eos comes from generation_config.json.
  dir.remove("tokenizer_config.json");
  EXPECT_EQ(tokenizer_from_hf_directory(dir.path())->eos_id(), 483);
}

TEST(HfTokenizer, SentencepieceModelIsPreferredToItsTokenizerJsonConversion) {
  ScratchDir dir("hf/llama2-spm");
  // What converted Llama 2 directories ship: BPE with byte fallback behind Metaspace.
  dir.write("tokenizer.json", R"({"model": {"type": "BPE", "byte_fallback": true,
      "vocab": {"<unk>": 0}, "merges": []},
      "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581"}})");
  const auto tok = tokenizer_from_hf_directory(dir.path());
  EXPECT_TRUE(contains(tok->describe(), "sentencepiece")) << tok->describe();
  EXPECT_TRUE(contains(tok->describe(), "tokenizer.json is not byte-level BPE")) << tok->describe();
  EXPECT_TRUE(contains(tok->describe(), "Metaspace")) << tok->describe();

  dir.remove("tokenizer.model");
  const std::string error = error_of(dir.path());
  EXPECT_TRUE(contains(error, "tokenizer.json") && contains(error, "no tokenizer.model")) << error;
}

// ---------------------------------------------------------------------------------------
// Broken directories
// ---------------------------------------------------------------------------------------

TEST(HfTokenizer, MissingFilesAreNamed) {
  ScratchDir empty;
  EXPECT_TRUE(contains(error_of(empty.path()), "no tokenizer.json or tokenizer.model"));
  EXPECT_TRUE(contains(error_of(empty.path() + "/nope"), "not a directory"));
}

TEST(HfTokenizer, MalformedTokenizerJsonIsNamed) {
  ScratchDir dir("hf/llama3-gqa");
  const json good = dir.read("tokenizer.json");
  const std::string file = dir.path() + "/tokenizer.json";
  auto error_with = [&](const std::string& text) {
    dir.write("tokenizer.json", text);
    return error_of(dir.path());
  };
  auto error_after = [&](const std::function<void(json&)>& edit) {
    json doc = good;
    edit(doc);
    return error_with(doc.dump());
  };
  struct Case {
    std::string error;
    std::string needle;
  };
  const Case cases[] = {
      {error_with("{\"model\": "), "not valid JSON"},
      {error_with(good.dump().substr(0, 5000)), "not valid JSON"},
      {error_with("[1, 2, 3]"), "unexpected content"},
      {error_after([](json& d) { d.erase("model"); }), "unexpected content"},
      {error_after([](json& d) { d["model"]["vocab"] = "abc"; }), "unexpected content"},
      {error_after([](json& d) {
         d["pre_tokenizer"] = {{"type", "ByteLevel"}, {"add_prefix_space", true}};
       }),
       "add_prefix_space"},
      {error_after(
           [](json& d) { d["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\s+"; }),
       "is not one kvlm implements"},
      {error_after([](json& d) {
         d["normalizer"] = {{"type", "NFC"}};
       }),
       "NFC"},
      {error_after([](json& d) {
         d["model"]["merges"][0] = json::array({"Ġ", "q!"});
       }),
       "q!"},
      {error_after([](json& d) { d["model"]["merges"][0] = json::array({"a"}); }), "merge"},
      {error_after([](json& d) { d["added_tokens"][0]["id"] = 100000; }), "100000"},
      {error_after([](json& d) { d["added_tokens"][0]["id"] = 481; }), "no token has id 480"},
      {error_after([](json& d) { d["post_processor"]["single"][0]["SpecialToken"]["id"] = "<x>"; }),
       "'<x>' is not in the vocabulary"},
  };
  for (const Case& c : cases) {
    EXPECT_TRUE(contains(c.error, c.needle)) << c.needle << " in: " << c.error;
    EXPECT_TRUE(contains(c.error, file)) << c.error;
  }
}

TEST(HfTokenizer, MalformedSideFilesAndModelsAreNamed) {
  ScratchDir dir("hf/llama3-gqa");
  dir.write("tokenizer_config.json", "{ not json");
  EXPECT_TRUE(contains(error_of(dir.path()), "tokenizer_config.json: not valid JSON"));
  dir.write("tokenizer_config.json", R"({"eos_token": "<|nope|>"})");
  EXPECT_TRUE(contains(error_of(dir.path()), "'<|nope|>' is not in the vocabulary"));
  dir.write("tokenizer_config.json", "{}");
  dir.write("generation_config.json", R"({"eos_token_id": "two"})");
  EXPECT_TRUE(contains(error_of(dir.path()), "generation_config.json: unexpected content"));
  dir.write("generation_config.json", R"({"eos_token_id": [100000]})");
  EXPECT_TRUE(contains(error_of(dir.path()),
                       "generation_config.json: eos_token_id 100000 is out of range"));

  ScratchDir spm("hf/llama2-spm");
  const std::string model = spm.path() + "/tokenizer.model";
  std::ifstream in(model, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const std::string& broken :
       {bytes.substr(0, bytes.size() / 2), std::string("not a model"), std::string()}) {
    spm.write("tokenizer.model", broken);
    const std::string error = error_of(spm.path());
    EXPECT_TRUE(contains(error, model)) << error;
  }
}

}  // namespace
}  // namespace kvlm
