// Tokenizer interface: text <-> token ids. Byte-level BPE (bpe.cpp) and sentencepiece
// (spm.cpp) implement it; tokenizer_from_hf_directory builds one (and, for GGUF files,
// src/model/gguf_tokenizer.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvlm {

// Token types as GGUF stores them (tokenizer.ggml.token_type); sentencepiece numbers its
// piece types the same way.
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

// What a tokenizer's files say besides the vocabulary itself.
struct TokenizerSetup {
  int32_t bos_id = -1;  // -1: none
  int32_t eos_id = -1;
  bool add_bos = false;
  std::vector<int32_t> end_ids;  // more ids that end an answer (generation_config.json)
  std::string source;            // which file the tokenizer came from and why, for describe()
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Text -> ids. With parse_special, special tokens written in the text (e.g. "<|im_start|>")
  // become their single ids; otherwise they are tokenized as plain text. add_bos prepends
  // bos_id(); callers pass add_bos_default() unless they build the prompt themselves.
  virtual std::vector<int32_t> encode(const std::string& text, bool add_bos,
                                      bool parse_special = true) const = 0;
  // The raw bytes a token stands for (may be part of a UTF-8 character). Special/control
  // tokens give their text, e.g. "<|im_end|>".
  virtual std::string token_bytes(int32_t id) const = 0;
  virtual int vocab_size() const = 0;
  virtual bool is_special(int32_t id) const = 0;   // control / user-defined added tokens
  virtual std::string describe() const = 0;        // one line for `kvlm info`

  int32_t bos_id() const { return bos_id_; }
  int32_t eos_id() const { return eos_id_; }
  bool add_bos_default() const { return add_bos_; }
  // Tokens that end a generated answer: eos plus chat end markers such as <|im_end|>.
  const std::vector<int32_t>& end_of_generation_ids() const { return eog_ids_; }
  bool is_end_of_generation(int32_t id) const;

  // The text of all ids: their bytes concatenated (sentencepiece also drops the space its
  // encoder puts in front of the text).
  virtual std::string decode(const std::vector<int32_t>& ids) const;

 protected:
  // Takes the special ids and source of `setup`, and sets the end-of-generation ids to eos,
  // setup.end_ids and the chat end markers (<|im_end|>, <|eot_id|>, ...) found among the
  // token texts. Throws std::runtime_error when an id is outside the vocabulary.
  void apply_setup(const TokenizerSetup& setup, const std::vector<std::string>& token_texts);

  int32_t bos_id_ = -1;
  int32_t eos_id_ = -1;
  bool add_bos_ = false;
  std::vector<int32_t> eog_ids_;
  std::string source_;
};

// Turns a stream of tokens into text that is always valid UTF-8: bytes of a character
// split across tokens are held back until the character is complete.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  std::string push(int32_t id);  // text that is now complete (may be empty)
  std::string flush();           // whatever is pending; invalid bytes become U+FFFD

 private:
  const Tokenizer& tok_;
  std::string pending_;
};

// Builds the tokenizer of a Hugging Face model directory: tokenizer.json (byte-level BPE)
// or tokenizer.model (sentencepiece), with special tokens and BOS/EOS taken from
// tokenizer_config.json, generation_config.json and config.json when present.
// Throws std::runtime_error naming the file and what is missing or unsupported.
std::unique_ptr<Tokenizer> tokenizer_from_hf_directory(const std::string& dir);

}  // namespace kvlm
