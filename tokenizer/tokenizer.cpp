#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <iostream>
#include <stdexcept>

#include "tokenizer/bpe.h"
#include "tokenizer/spm.h"
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

void Tokenizer::apply_setup(const TokenizerSetup& setup,
                            const std::vector<std::string>& token_texts) {
  const auto n_tokens = static_cast<int64_t>(token_texts.size());
  auto checked = [&](int32_t id, const char* what) {
    if (id >= n_tokens) {
      throw std::runtime_error(std::string(what) + " token id " + std::to_string(id) +
                               " is out of range (" + std::to_string(n_tokens) + " tokens)");
    }
    return id < 0 ? -1 : id;
  };
  bos_id_ = checked(setup.bos_id, "bos");
  eos_id_ = checked(setup.eos_id, "eos");
  add_bos_ = setup.add_bos;
  source_ = setup.source;

  // Chat templates end a turn with one of these; a model may stop with it rather than with
  // its eos token (SmolLM2's eos is <|im_end|>, but it was pretrained with <|endoftext|>).
  static const char* const kEndMarkers[] = {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>",
                                            "</s>", "<|endoftext|>"};
  eog_ids_.clear();
  auto add_end = [&](int32_t id) {
    if (id >= 0 && !is_end_of_generation(id)) eog_ids_.push_back(id);
  };
  add_end(eos_id_);
  for (int32_t id : setup.end_ids) add_end(checked(id, "end-of-generation"));
  for (size_t i = 0; i < token_texts.size(); ++i) {
    const bool is_marker = std::any_of(std::begin(kEndMarkers), std::end(kEndMarkers),
                                       [&](const char* m) { return token_texts[i] == m; });
    if (is_marker) add_end(static_cast<int32_t>(i));
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

}  // namespace kvlm
