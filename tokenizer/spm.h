// Sentencepiece tokenizers (Llama 2, Mistral, TinyLlama). libsentencepiece does the
// tokenizing itself, from a tokenizer.model file or from a model that spm_proto writes out
// of a GGUF vocabulary; kvlm adds what the library leaves to its callers: special tokens
// written in the text, BOS, and the bytes of each token for streaming.
//
// Sentencepiece writes spaces as "▁" and, with add_dummy_prefix, encodes a text as if it
// began with a space: "Hello" becomes "▁Hello". With byte fallback, characters that no
// piece covers are spelled as byte pieces <0x00>..<0xFF>.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "tokenizer/special_tokens.h"
#include "tokenizer/spm_proto.h"
#include "tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace kvlm {

class SpmTokenizer final : public Tokenizer {
 public:
  // model_proto: a serialized ModelProto (the bytes of a tokenizer.model file). Throws
  // std::runtime_error when sentencepiece rejects it or a setup id is out of range.
  SpmTokenizer(const std::string& model_proto, const TokenizerSetup& setup);
  ~SpmTokenizer() override;

  // Control tokens written in the text (and <unk>) become their ids with parse_special;
  // user-defined pieces are always matched, by sentencepiece itself. Each stretch of text
  // between special tokens is encoded on its own and so gets its own leading "▁", as
  // sentencepiece, Hugging Face's "legacy" Llama tokenizer and llama.cpp all do.
  std::vector<int32_t> encode(const std::string& text, bool add_bos,
                              bool parse_special = true) const override;
  std::string token_bytes(int32_t id) const override;
  // As sentencepiece: the space that add_dummy_prefix put in front of the text is dropped
  // again (control tokens before it do not count as text).
  std::string decode(const std::vector<int32_t>& ids) const override;
  int vocab_size() const override { return static_cast<int>(types_.size()); }
  bool is_special(int32_t id) const override;
  std::string describe() const override;

 private:
  TokenType type_of(int32_t id) const { return types_[id]; }

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  SpmModelType model_type_ = SpmModelType::Unigram;
  bool byte_fallback_ = false;
  bool add_dummy_prefix_ = true;
  std::vector<TokenType> types_;
  std::vector<std::string> token_bytes_;
  SpecialTokenMatcher specials_;  // control and unknown pieces
};

}  // namespace kvlm
