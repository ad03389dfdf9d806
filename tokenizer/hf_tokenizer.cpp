// tokenizer_from_hf_directory: the tokenizer of a Hugging Face model directory.
//
// Byte-level BPE models (Llama 3, SmolLM2, GPT-2) ship tokenizer.json, read here into a
// BpeVocab. Sentencepiece models (Llama 2, Mistral, TinyLlama) ship tokenizer.model, and
// usually also a tokenizer.json converted from it (BPE with byte fallback, or Unigram, and
// a Metaspace pre-tokenizer); libsentencepiece reads the original, so that one is used.
// BOS, EOS and the ids that end an answer come from tokenizer.json's post-processor,
// tokenizer_config.json, generation_config.json and config.json.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "model/json_file.h"
#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer.h"
#include "util/text_format.h"

namespace kvlm {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Llama 3's Split pattern, as tokenizer.json spells it.
constexpr std::string_view kLlama3Pattern =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
    "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  if (!in) throw std::runtime_error(path.string() + ": cannot read the file");
  return bytes.str();
}

// Through parse_json's depth limit: the reading below copies and prints values
// recursively, so a value nested thousands deep would overflow the stack.
json read_json(const fs::path& path) { return parse_json(read_bytes(path), path.string()); }

// An optional file: null when it is not there.
json read_json_if_present(const fs::path& path) {
  return fs::exists(path) ? read_json(path) : json();
}

// Runs `read` and names `path` in any error about the document's shape.
template <typename Read>
auto with_context(const fs::path& path, Read read) {
  try {
    return read();
  } catch (const json::exception& e) {
    throw std::runtime_error(path.string() + ": unexpected content (" + e.what() + ")");
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
}

// A short rendering of a JSON value for error messages.
std::string excerpt(const json& value) {
  std::string text = value.dump();
  return text.size() > 200 ? text.substr(0, 200) + "..." : text;
}

// A token id as the files write it. nlohmann would convert a fractional number, and one
// beyond int64 has no conversion at all (undefined behaviour), so only integers pass; the
// rest fail as any mistyped value does.
int64_t id_value(const json& value) {
  if (!value.is_number_integer())
    throw json::type_error::create(
        302, "a token id must be an integer, but is " + excerpt(value), &value);
  return value.get<int64_t>();
}

// tokenizer_config.json writes a token as "<s>" or as {"content": "<s>", ...}.
std::optional<std::string> token_text(const json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const json& value = config[key];
  if (value.is_string()) return value.get<std::string>();
  if (value.is_object() && value.contains("content")) return value["content"].get<std::string>();
  return std::nullopt;
}

// eos_token_id in generation_config.json / config.json: a number or a list of them, each
// a token id.
std::vector<int32_t> id_list(const json& config, const char* key, size_t n_tokens) {
  std::vector<int32_t> ids;
  if (!config.is_object() || !config.contains(key) || config[key].is_null()) return ids;
  const json& value = config[key];
  for (const json& id : value.is_array() ? value : json::array({value})) {
    const int64_t n = id_value(id);
    if (n < 0 || static_cast<size_t>(n) >= n_tokens) {
      throw std::runtime_error(std::string(key) + " " + std::to_string(n) + " is out of range (" +
                               std::to_string(n_tokens) + " tokens)");
    }
    ids.push_back(static_cast<int32_t>(n));
  }
  return ids;
}

int32_t id_of_text(const std::vector<std::string>& texts, const std::string& text,
                   const char* what) {
  const auto it = std::find(texts.begin(), texts.end(), text);
  if (it == texts.end()) {
    throw std::runtime_error(std::string(what) + " '" + text + "' is not in the vocabulary");
  }
  return static_cast<int32_t>(it - texts.begin());
}

// What tokenizer_config.json, generation_config.json and config.json say about special
// tokens.
struct SideFiles {
  fs::path dir;
  json tokenizer_config, generation_config, config;

  explicit SideFiles(const fs::path& directory) : dir(directory) {
    tokenizer_config = read_json_if_present(dir / "tokenizer_config.json");
    generation_config = read_json_if_present(dir / "generation_config.json");
    config = read_json_if_present(dir / "config.json");
  }

  // bos/eos/add_bos as tokenizer_config.json states them, eos falling back to the
  // generation and model configs, and every eos those list as an end of generation.
  void complete(TokenizerSetup& setup, const std::vector<std::string>& texts) const {
    const fs::path config_path = dir / "tokenizer_config.json";
    with_context(config_path, [&] {
      if (auto bos = token_text(tokenizer_config, "bos_token")) {
        setup.bos_id = id_of_text(texts, *bos, "bos_token");
      }
      if (auto eos = token_text(tokenizer_config, "eos_token")) {
        setup.eos_id = id_of_text(texts, *eos, "eos_token");
      }
      if (tokenizer_config.is_object() && tokenizer_config.contains("add_bos_token")) {
        setup.add_bos = tokenizer_config["add_bos_token"].get<bool>();
      }
    });
    for (const auto& [name, file] : {std::pair{"generation_config.json", &generation_config},
                                     std::pair{"config.json", &config}}) {
      // A named reference: clang before 16 cannot capture a structured binding.
      const json& doc = *file;
      const std::vector<int32_t> ids =
          with_context(dir / name, [&] { return id_list(doc, "eos_token_id", texts.size()); });
      if (setup.eos_id < 0 && !ids.empty()) setup.eos_id = ids.front();
      setup.end_ids.insert(setup.end_ids.end(), ids.begin(), ids.end());
    }
  }
};

// ---------------------------------------------------------------------------------------
// tokenizer.json
// ---------------------------------------------------------------------------------------

// The steps of a pre-tokenizer, with Sequences flattened.
std::vector<json> steps_of(const json& pre_tokenizer) {
  if (pre_tokenizer.is_null()) return {};
  if (pre_tokenizer.value("type", "") != "Sequence") return {pre_tokenizer};
  std::vector<json> steps;
  for (const json& inner : pre_tokenizer.at("pretokenizers")) {
    for (json& step : steps_of(inner)) steps.push_back(std::move(step));
  }
  return steps;
}

bool is_step(const json& step, const char* type) { return step.value("type", "") == type; }

// Byte-level: some step maps bytes to the printable byte alphabet. Sentencepiece
// conversions use Metaspace instead.
bool is_byte_level_bpe(const json& doc) {
  if (doc.at("model").value("type", "") != "BPE") return false;
  const std::vector<json> steps = steps_of(doc.value("pre_tokenizer", json()));
  return std::any_of(steps.begin(), steps.end(),
                     [](const json& s) { return is_step(s, "ByteLevel"); });
}

// What kind of tokenizer.json this is, for explaining why it is not used.
std::string kind_of(const json& doc) {
  std::string kind = "model " + doc.at("model").value("type", std::string("?"));
  if (doc["model"].value("byte_fallback", false)) kind += " with byte fallback";
  const std::string steps = join(steps_of(doc.value("pre_tokenizer", json())), "+",
                                 [](const json& s) { return s.value("type", std::string("?")); });
  return kind + ", pre-tokenizer " + (steps.empty() ? "none" : steps);
}

// Maps the pre-tokenizers kvlm implements by hand onto their Hugging Face spelling.
PreTokenizer pre_tokenizer_of(const json& pre_tokenizer) {
  const std::vector<json> steps = steps_of(pre_tokenizer);
  auto byte_level = [](const json& s, bool use_regex) {
    return is_step(s, "ByteLevel") && !s.value("add_prefix_space", false) &&
           s.value("use_regex", true) == use_regex;
  };
  if (steps.size() == 1 && byte_level(steps[0], true)) return PreTokenizer::Gpt2;
  if (steps.size() == 2 && is_step(steps[0], "Digits") &&
      steps[0].value("individual_digits", false) && byte_level(steps[1], true)) {
    return PreTokenizer::SmolLM;
  }
  if (steps.size() == 2 && is_step(steps[0], "Split") && byte_level(steps[1], false) &&
      steps[0].value("behavior", "") == "Isolated" && !steps[0].value("invert", false) &&
      steps[0].contains("pattern") && steps[0]["pattern"].value("Regex", "") == kLlama3Pattern) {
    return PreTokenizer::Llama3;
  }
  throw std::runtime_error("pre_tokenizer " + excerpt(pre_tokenizer) +
                           " is not one kvlm implements (GPT-2 ByteLevel, Llama 3 "
                           "Split+ByteLevel, SmolLM Digits+ByteLevel)");
}

// The token a TemplateProcessing post-processor puts in front of a single text, if any.
// Returns nullopt when there is no such post-processor, "" when it adds nothing in front.
std::optional<std::string> template_bos(const json& post_processor) {
  if (post_processor.is_null()) return std::nullopt;
  if (is_step(post_processor, "Sequence")) {
    for (const json& inner : post_processor.at("processors")) {
      if (auto bos = template_bos(inner)) return bos;
    }
    return std::nullopt;
  }
  if (!is_step(post_processor, "TemplateProcessing")) return std::nullopt;
  const json& single = post_processor.at("single");
  if (!single.empty() && single[0].contains("SpecialToken")) {
    return single[0]["SpecialToken"].at("id").get<std::string>();
  }
  return std::string();
}

std::vector<std::string> merges_of(const json& merges) {
  std::vector<std::string> out;
  out.reserve(merges.size());
  for (const json& merge : merges) {
    if (merge.is_string()) {
      out.push_back(merge.get<std::string>());
      continue;
    }
    // Newer files write [left, right]; byte-level tokens never contain a space.
    auto is_token = [](const json& part) {
      return part.is_string() && part.get<std::string>().find(' ') == std::string::npos;
    };
    if (!merge.is_array() || merge.size() != 2 || !is_token(merge[0]) || !is_token(merge[1])) {
      throw std::runtime_error("merge " + excerpt(merge) + " is not a pair of byte-level tokens");
    }
    out.push_back(merge[0].get<std::string>() + " " + merge[1].get<std::string>());
  }
  return out;
}

// Tokens by id from model.vocab and added_tokens. Ids must run from 0 without gaps; an
// added token may repeat a vocabulary entry, and then gives it its text and type.
void read_tokens(const json& doc, BpeVocab& vocab) {
  struct Entry {
    int64_t id;
    std::string text;
    TokenType type;
  };
  std::vector<Entry> entries;
  for (const auto& [text, id] : doc.at("model").at("vocab").items()) {
    entries.push_back({id_value(id), text, TokenType::Normal});
  }
  for (const json& token : doc.value("added_tokens", json::array())) {
    // Special added tokens are control tokens (matched in text only when asked); the
    // others are whole words the authors added, matched always.
    entries.push_back(
        {id_value(token.at("id")), token.at("content").get<std::string>(),
         token.value("special", false) ? TokenType::Control : TokenType::UserDefined});
  }
  int64_t n_tokens = 0;
  for (const Entry& e : entries) {
    if (e.id < 0 || e.id >= static_cast<int64_t>(entries.size())) {
      throw std::runtime_error("token '" + e.text + "' has id " + std::to_string(e.id) +
                               ", outside 0.." + std::to_string(entries.size() - 1));
    }
    n_tokens = std::max(n_tokens, e.id + 1);
  }
  vocab.tokens.assign(n_tokens, "");
  vocab.token_types.assign(n_tokens, static_cast<int32_t>(TokenType::Normal));
  std::vector<bool> filled(n_tokens, false);
  for (const Entry& e : entries) {
    vocab.tokens[e.id] = e.text;
    vocab.token_types[e.id] = static_cast<int32_t>(e.type);
    filled[e.id] = true;
  }
  const auto hole = std::find(filled.begin(), filled.end(), false);
  if (hole != filled.end()) {
    throw std::runtime_error("no token has id " + std::to_string(hole - filled.begin()));
  }
}

BpeVocab bpe_vocab_from(const json& doc) {
  const json& model = doc.at("model");
  auto is_set = [&](const char* affix) {
    const json value = model.value(affix, json());
    return !value.is_null() && value != "";
  };
  if (model.value("byte_fallback", false) || is_set("continuing_subword_prefix") ||
      is_set("end_of_word_suffix")) {
    throw std::runtime_error(
        "the BPE model uses byte fallback or subword affixes, which "
        "byte-level BPE does not");
  }
  if (!doc.value("normalizer", json()).is_null()) {
    throw std::runtime_error("normalizer " + excerpt(doc["normalizer"]) +
                             " is not supported (byte-level BPE uses none)");
  }
  BpeVocab vocab;
  read_tokens(doc, vocab);
  vocab.merges = merges_of(model.at("merges"));
  vocab.pre = pre_tokenizer_of(doc.at("pre_tokenizer"));
  vocab.ignore_merges = model.value("ignore_merges", false);
  if (auto bos = template_bos(doc.value("post_processor", json()))) {
    vocab.setup.add_bos = !bos->empty();
    if (!bos->empty()) vocab.setup.bos_id = id_of_text(vocab.tokens, *bos, "post_processor token");
  }
  return vocab;
}

std::unique_ptr<Tokenizer> bpe_from_tokenizer_json(const json& doc, const SideFiles& side,
                                                   const fs::path& path) {
  BpeVocab vocab = with_context(path, [&] { return bpe_vocab_from(doc); });
  side.complete(vocab.setup, vocab.tokens);
  vocab.setup.source = "from " + path.string();
  return with_context(path, [&] { return std::make_unique<BpeTokenizer>(std::move(vocab)); });
}

std::unique_ptr<Tokenizer> spm_from_file(const fs::path& path, const SideFiles& side,
                                         const std::string& why) {
  const std::string bytes = read_bytes(path);
  TokenizerSetup setup;
  std::vector<std::string> texts;
  with_context(path, [&] {
    const SpmModel model = parse_spm_model(bytes);
    if (model.pieces.empty()) throw std::runtime_error("not a sentencepiece model: no pieces");
    for (const SpmPiece& piece : model.pieces) texts.push_back(piece.text);
    auto control_id = [&](int32_t id) {
      const bool is_control = id >= 0 && static_cast<size_t>(id) < model.pieces.size() &&
                              model.pieces[id].type == TokenType::Control;
      return is_control ? id : -1;
    };
    setup.bos_id = control_id(model.bos_id);
    setup.eos_id = control_id(model.eos_id);
  });
  setup.add_bos = true;  // what Llama's sentencepiece tokenizers do unless configured
  side.complete(setup, texts);
  setup.source = "from " + path.string() + why;
  return with_context(path, [&] { return std::make_unique<SpmTokenizer>(bytes, setup); });
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_from_hf_directory(const std::string& dir) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) throw std::runtime_error(dir + ": not a directory");
  const SideFiles side(root);
  const fs::path json_path = root / "tokenizer.json", model_path = root / "tokenizer.model";
  const bool has_json = fs::exists(json_path), has_model = fs::exists(model_path);
  if (!has_json && !has_model) {
    throw std::runtime_error(dir + ": no tokenizer.json or tokenizer.model");
  }
  if (!has_json) return spm_from_file(model_path, side, " (there is no tokenizer.json)");

  const json doc = read_json(json_path);
  const bool byte_level = with_context(json_path, [&] { return is_byte_level_bpe(doc); });
  if (byte_level) return bpe_from_tokenizer_json(doc, side, json_path);
  const std::string kind = with_context(json_path, [&] { return kind_of(doc); });
  if (!has_model) {
    throw std::runtime_error(json_path.string() + ": " + kind +
                             " is not byte-level BPE, and there is no tokenizer.model to "
                             "read the sentencepiece model from");
  }
  return spm_from_file(model_path, side,
                       " (tokenizer.json is not byte-level BPE but " + kind +
                           ", converted from this sentencepiece model)");
}

}  // namespace kvlm
