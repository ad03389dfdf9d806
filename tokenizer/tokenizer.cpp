#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <iostream>
#include <stdexcept>

#include "model/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/unicode.h"

namespace kvlm {

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return std::find(eog_ids_.begin(), eog_ids_.end(), id) != eog_ids_.end();
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string text;
  for (int32_t id : ids) text += token_bytes(id);
  return text;
}

void Tokenizer::set_end_of_generation_ids(const std::vector<std::string>& token_texts) {
  // Chat templates end a turn with one of these; a model may stop with it rather than with
  // its eos token (SmolLM2's eos is <|im_end|>, but it was pretrained with <|endoftext|>).
  static const char* const kEndMarkers[] = {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>",
                                            "</s>", "<|endoftext|>"};
  eog_ids_.clear();
  if (eos_id_ >= 0) eog_ids_.push_back(eos_id_);
  for (size_t i = 0; i < token_texts.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    const bool is_marker = std::any_of(std::begin(kEndMarkers), std::end(kEndMarkers),
                                       [&](const char* m) { return token_texts[i] == m; });
    if (is_marker && id != eos_id_) eog_ids_.push_back(id);
  }
}

namespace {

// Moves the complete characters at the front of `pending` into the result. Bytes that can
// never form a character become U+FFFD right away; a character whose bytes have only
// partly arrived stays in `pending`, unless this is the end of the stream.
std::string take_complete_characters(std::string& pending, bool end_of_stream) {
  std::string text;
  size_t pos = 0;
  while (pos < pending.size()) {
    const unicode::Utf8Char c = unicode::decode_utf8(pending, pos);
    if (c.status == unicode::Utf8Status::Truncated && !end_of_stream) break;
    if (c.status == unicode::Utf8Status::Valid) {
      text.append(pending, pos, c.length);
    } else {
      unicode::append_utf8(text, unicode::kReplacementCharacter);
    }
    pos += c.length;
  }
  pending.erase(0, pos);
  return text;
}

}  // namespace

std::string StreamDecoder::push(int32_t id) {
  pending_ += tok_.token_bytes(id);
  return take_complete_characters(pending_, /*end_of_stream=*/false);
}

std::string StreamDecoder::flush() { return take_complete_characters(pending_, true); }

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
    vocab.pre = file.get_string("tokenizer.ggml.pre");
  } else {
    std::cerr << "kvlm: warning: " << file.path()
              << " has no tokenizer.ggml.pre; using the GPT-2 pre-tokenizer\n";
    vocab.pre = "gpt2";
  }
  const size_t n = vocab.tokens.size();
  vocab.bos_id = token_id_from(file, "tokenizer.ggml.bos_token_id", n);
  vocab.eos_id = token_id_from(file, "tokenizer.ggml.eos_token_id", n);
  vocab.add_bos = file.get_bool("tokenizer.ggml.add_bos_token", false);
  try {
    return std::make_unique<BpeTokenizer>(std::move(vocab));
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(file.path() + ": " + e.what());
  }
}

}  // namespace

std::unique_ptr<Tokenizer> tokenizer_from_gguf(const gguf::File& file) {
  const std::string model = file.get_string("tokenizer.ggml.model");
  if (model == "gpt2") return bpe_from_gguf(file);
  if (model == "llama") {
    throw std::runtime_error(file.path() +
                             ": tokenizer.ggml.model is 'llama' (a sentencepiece vocabulary); "
                             "SPM GGUF vocabularies are not supported yet");
  }
  throw std::runtime_error(file.path() + ": unsupported tokenizer.ggml.model '" + model +
                           "' (kvlm reads 'gpt2', byte-level BPE)");
}

std::unique_ptr<Tokenizer> tokenizer_from_hf_directory(const std::string& dir) {
  throw std::runtime_error(dir + ": Hugging Face tokenizers are not supported yet");
}

}  // namespace kvlm
