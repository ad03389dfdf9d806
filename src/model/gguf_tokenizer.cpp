#include "model/gguf_tokenizer.h"

#include <iostream>
#include <stdexcept>

#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"
#include "tokenizer/spm_proto.h"

namespace kvlm {

namespace {

int32_t token_id_from(const gguf::File& file, const std::string& key, size_t n_tokens) {
  const int64_t id = file.get_int(key, -1);
  if (id < -1 || id >= static_cast<int64_t>(n_tokens)) {
    throw std::runtime_error(file.path() + ": " + key + " = " + std::to_string(id) +
                             " is not a token id (the vocabulary has " +
                             std::to_string(n_tokens) + " tokens)");
  }
  return static_cast<int32_t>(id);
}

std::string metadata_source(const gguf::File& file) {
  return "from the tokenizer.ggml.* metadata of " + file.path();
}

// The ids and flags every GGUF vocabulary states the same way. Without bos/eos keys,
// llama.cpp's defaults for the vocabulary type apply.
TokenizerSetup setup_from_gguf(const gguf::File& file, size_t n_tokens, int32_t default_bos,
                               int32_t default_eos, bool default_add_bos) {
  TokenizerSetup setup;
  setup.bos_id = file.has("tokenizer.ggml.bos_token_id")
                     ? token_id_from(file, "tokenizer.ggml.bos_token_id", n_tokens)
                     : default_bos;
  setup.eos_id = file.has("tokenizer.ggml.eos_token_id")
                     ? token_id_from(file, "tokenizer.ggml.eos_token_id", n_tokens)
                     : default_eos;
  setup.add_bos = file.get_bool("tokenizer.ggml.add_bos_token", default_add_bos);
  setup.source = metadata_source(file);
  return setup;
}

std::unique_ptr<Tokenizer> bpe_from_gguf(const gguf::File& file) {
  BpeVocab vocab;
  vocab.tokens = file.get_strings("tokenizer.ggml.tokens");
  if (file.has("tokenizer.ggml.token_type")) {
    for (int64_t type : file.get_ints("tokenizer.ggml.token_type")) {
      vocab.token_types.push_back(static_cast<int32_t>(type));
    }
  }
  vocab.merges = file.get_strings("tokenizer.ggml.merges");
  if (file.has("tokenizer.ggml.pre")) {
    vocab.pre = pre_tokenizer_from_name(file.get_string("tokenizer.ggml.pre"));
  } else {
    std::cerr << "kvlm: warning: " << file.path()
              << " has no tokenizer.ggml.pre; using the GPT-2 pre-tokenizer\n";
  }
  // llama.cpp's rule: GGUF has no key for it, and the Llama 3 vocabularies need it.
  vocab.ignore_merges = vocab.pre == PreTokenizer::Llama3;
  vocab.setup = setup_from_gguf(file, vocab.tokens.size(), -1, -1, false);
  try {
    return std::make_unique<BpeTokenizer>(std::move(vocab));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(file.path() + ": " + e.what());
  }
}

// A 'llama' vocabulary is a sentencepiece model whose pieces, scores and types were copied
// into the GGUF; this writes them back into a model for libsentencepiece. llama.cpp
// tokenizes every such vocabulary by merging the adjacent pair whose joined piece scores
// highest, which is sentencepiece's BPE model, and normalizes nothing but spaces.
std::unique_ptr<Tokenizer> spm_from_gguf(const gguf::File& file) {
  const std::vector<std::string> tokens = file.get_strings("tokenizer.ggml.tokens");
  const std::vector<double> scores = file.get_floats("tokenizer.ggml.scores");
  const std::vector<int64_t> types = file.get_ints("tokenizer.ggml.token_type");
  if (scores.size() != tokens.size() || types.size() != tokens.size()) {
    throw std::runtime_error(file.path() + ": tokenizer.ggml.tokens has " +
                             std::to_string(tokens.size()) + " entries but tokenizer.ggml.scores " +
                             std::to_string(scores.size()) + " and tokenizer.ggml.token_type " +
                             std::to_string(types.size()));
  }
  SpmModel model;
  model.model_type = SpmModelType::Bpe;
  for (size_t i = 0; i < tokens.size(); ++i) {
    // Undefined (0) is what converters write for "nothing special".
    if (types[i] < 0 || types[i] > static_cast<int64_t>(TokenType::Byte)) {
      throw std::runtime_error(file.path() + ": tokenizer.ggml.token_type[" + std::to_string(i) +
                               "] = " + std::to_string(types[i]) + " is not a token type");
    }
    const auto type = types[i] == 0 ? TokenType::Normal : static_cast<TokenType>(types[i]);
    model.pieces.push_back({tokens[i], static_cast<float>(scores[i]), type});
    model.byte_fallback |= type == TokenType::Byte;
  }
  const size_t n = tokens.size();
  model.unk_id = token_id_from(file, "tokenizer.ggml.unknown_token_id", n);
  model.pad_id = token_id_from(file, "tokenizer.ggml.padding_token_id", n);
  model.normalizer_name = "identity";
  model.add_dummy_prefix = file.get_bool("tokenizer.ggml.add_space_prefix", true);
  model.remove_extra_whitespaces = false;
  model.escape_whitespaces = true;

  TokenizerSetup setup = setup_from_gguf(file, n, 1, 2, true);
  model.bos_id = setup.bos_id;
  model.eos_id = setup.eos_id;
  try {
    return std::make_unique<SpmTokenizer>(serialize_spm_model(model), setup);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(file.path() + ": " + e.what());
  }
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const gguf::File& file) {
  const std::string model = file.get_string("tokenizer.ggml.model");
  if (model == "gpt2") return bpe_from_gguf(file);
  if (model == "llama") return spm_from_gguf(file);
  throw std::runtime_error(file.path() + ": unsupported tokenizer.ggml.model '" + model +
                           "' (kvlm reads 'gpt2', byte-level BPE, and 'llama', sentencepiece)");
}

}  // namespace kvlm
