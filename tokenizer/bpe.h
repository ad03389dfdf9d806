// Byte-level BPE, the GPT-2 family of tokenizers (GPT-2, Llama 3, SmolLM, Qwen, ...).
//
// Encoding a text runs in three stages:
//   1. special tokens written in the text ("<|im_start|>") are cut out as single ids;
//   2. a pre-tokenizer splits the rest into pieces (words, numbers, runs of spaces) with
//      a regex-like pattern; merges never cross a piece boundary;
//   3. each piece starts as one symbol per byte and adjacent symbols are merged, always
//      taking the pair whose merge rule comes first in the merge list, until none applies.
//
// Token texts are stored in the "byte-level" alphabet: every byte 0..255 is written as one
// printable character (a space is 'Ġ', a newline 'Ċ'), so any byte string, even invalid
// UTF-8, can be encoded without an unknown token -- provided the vocabulary has all 256
// single-byte tokens. Some do not (SmolLM2 lacks 21, e.g. 0x04 and 0xFF); such bytes are
// dropped before merging, as Hugging Face `tokenizers` does.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/special_tokens.h"
#include "tokenizer/tokenizer.h"

namespace kvlm {

// The splitting patterns kvlm implements; see pre_tokenize.
enum class PreTokenizer {
  Gpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  SmolLM,  // every \p{N} alone, then Gpt2 between them (Hugging Face: Digits + ByteLevel)
  Llama3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
           //  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
};

// Maps a tokenizer.ggml.pre value to its pattern. An unknown name gets Gpt2 and a warning
// on stderr, since most byte-level vocabularies were trained with something close to it.
PreTokenizer pre_tokenizer_from_name(const std::string& name);
const char* pre_tokenizer_name(PreTokenizer kind);

// Splits text into pieces (views into text, in order, covering all of it). Bytes that are
// not valid UTF-8 stay in the pieces unchanged and count as punctuation-like characters.
std::vector<std::string_view> pre_tokenize(PreTokenizer kind, std::string_view text);

// Everything a byte-level BPE tokenizer is built from; tokenizer_from_gguf fills it from
// the tokenizer.ggml.* keys, tokenizer_from_hf_directory from tokenizer.json.
struct BpeVocab {
  std::vector<std::string> tokens;   // byte-level text; special tokens in plain text
  std::vector<int32_t> token_types;  // a TokenType per token; empty: all Normal
  std::vector<std::string> merges;   // "left right", highest priority first
  PreTokenizer pre = PreTokenizer::Gpt2;
  // A piece that is itself a token is emitted as that token even when the merges would
  // split it differently (Hugging Face's ignore_merges, which Llama 3 vocabularies need).
  bool ignore_merges = false;
  TokenizerSetup setup;
};

class BpeTokenizer final : public Tokenizer {
 public:
  // Throws std::runtime_error when the vocabulary is inconsistent (a merge names a token
  // that does not exist, an id is out of range).
  explicit BpeTokenizer(BpeVocab vocab);

  std::vector<int32_t> encode(const std::string& text, bool add_bos,
                              bool parse_special = true) const override;
  std::string token_bytes(int32_t id) const override;
  int vocab_size() const override { return static_cast<int>(tokens_.size()); }
  bool is_special(int32_t id) const override;
  std::string describe() const override;

  PreTokenizer pre_tokenizer() const { return pre_; }

 private:
  struct Merge {
    int32_t rank;    // position in the merge list: lower merges first
    int32_t result;  // id of the token the pair becomes
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
  }

  TokenType type_of(int32_t id) const;
  void index_tokens();
  void index_merges(const std::vector<std::string>& merges);
  void index_bytes();

  void encode_plain(std::string_view text, std::vector<int32_t>& ids) const;
  void encode_piece(std::string_view piece, std::vector<int32_t>& ids) const;

  std::vector<std::string> tokens_;
  std::vector<int32_t> token_types_;
  std::vector<std::string> token_bytes_;  // decoded once, so decoding is a lookup
  PreTokenizer pre_ = PreTokenizer::Gpt2;
  size_t n_merges_ = 0;
  bool ignore_merges_ = false;

  std::unordered_map<std::string, int32_t> token_ids_;  // byte-level text -> id
  std::unordered_map<uint64_t, Merge> merges_;          // pair_key(left, right) -> merge
  std::array<int32_t, 256> byte_token_{};               // single-byte token per byte, or -1
  SpecialTokenMatcher specials_;                        // control and user-defined tokens
};

}  // namespace kvlm
