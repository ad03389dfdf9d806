#include "tokenizer/bpe.h"

#include <algorithm>
#include <iostream>
#include <queue>
#include <stdexcept>

#include "tokenizer/unicode.h"

namespace kvlm {
namespace {

using unicode::is_letter;
using unicode::is_number;
using unicode::is_whitespace;

// ---------------------------------------------------------------------------------------
// The byte-level alphabet (GPT-2's bytes_to_unicode).
//
// Bytes that are printable Latin-1 characters stand for themselves; the other 68 (control
// codes, space, DEL, NBSP, soft hyphen) are moved, in byte order, to U+0100 onwards. Every
// byte thus has a visible one-character name and BPE never has to handle raw bytes.
// ---------------------------------------------------------------------------------------
struct ByteAlphabet {
  static constexpr char32_t kLastChar = 0x100 + 68 - 1;
  std::array<char32_t, 256> char_of_byte{};
  std::array<int16_t, kLastChar + 1> byte_of_char{};  // -1: not a byte-level character
};

bool prints_as_itself(int byte) {
  return (byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) ||
         (byte >= 0xAE && byte <= 0xFF);
}

ByteAlphabet make_byte_alphabet() {
  ByteAlphabet a;
  a.byte_of_char.fill(-1);
  char32_t next_moved = 0x100;
  for (int byte = 0; byte < 256; ++byte) {
    const char32_t c = prints_as_itself(byte) ? static_cast<char32_t>(byte) : next_moved++;
    a.char_of_byte[byte] = c;
    a.byte_of_char[c] = static_cast<int16_t>(byte);
  }
  return a;
}

const ByteAlphabet& byte_alphabet() {
  static const ByteAlphabet alphabet = make_byte_alphabet();
  return alphabet;
}

std::string to_byte_level(std::string_view bytes) {
  std::string text;
  text.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) unicode::append_utf8(text, byte_alphabet().char_of_byte[b]);
  return text;
}

// Characters outside the alphabet (possible in hand-made vocabularies) pass through as
// their own UTF-8, as the Hugging Face ByteLevel decoder does.
std::string from_byte_level(std::string_view text) {
  const ByteAlphabet& alphabet = byte_alphabet();
  std::string bytes;
  for (size_t pos = 0; pos < text.size();) {
    const unicode::Utf8Char c = unicode::decode_utf8(text, pos);
    const bool in_alphabet = c.status == unicode::Utf8Status::Valid &&
                             c.code_point <= ByteAlphabet::kLastChar &&
                             alphabet.byte_of_char[c.code_point] >= 0;
    if (in_alphabet) {
      bytes += static_cast<char>(alphabet.byte_of_char[c.code_point]);
    } else {
      bytes.append(text, pos, c.length);
    }
    pos += c.length;
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------
// Pre-tokenizer patterns, written as matchers over code points.
//
// Each matcher finds the one match of its pattern that starts at `pos` and returns where
// it ends. Like a regex alternation, the alternatives are tried in order and the first
// that matches wins, which is why the order of the `if`s below is the order of the `|`s.
// Every character is a letter (\p{L}), a number (\p{N}), whitespace (\s) or "other", so
// every pattern always matches at least one character.
// ---------------------------------------------------------------------------------------
using CharClass = bool (*)(char32_t);

bool is_other(char32_t c) { return !is_whitespace(c) && !is_letter(c) && !is_number(c); }
bool is_newline(char32_t c) { return c == '\r' || c == '\n'; }
// [^\r\n\p{L}\p{N}]: what may stand before a word in the Llama 3 pattern.
bool is_word_prefix(char32_t c) { return !is_newline(c) && !is_letter(c) && !is_number(c); }

// The code points of the text being split; `end` is where the current split stops, which
// is also where a lookahead such as (?!\S) sees the end of the text.
struct Span {
  const char32_t* cps;
  size_t end;

  bool is(size_t i, CharClass cls) const { return i < end && cls(cps[i]); }
  bool is(size_t i, char32_t c) const { return i < end && cps[i] == c; }
  size_t skip(size_t i, CharClass cls) const {
    while (is(i, cls)) ++i;
    return i;
  }
};

// Case folding as (?i) does it for the letters of the contractions: ASCII, plus U+017F
// (long s), which Unicode folds to 's'.
char32_t fold_case(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + ('a' - 'A');
  return c == 0x17F ? U's' : c;
}

// 's|'t|'re|'ve|'m|'ll|'d, case-insensitive for Llama 3's (?i:...).
// Returns pos when nothing matches.
size_t match_contraction(const Span& s, size_t pos, bool ignore_case) {
  if (!s.is(pos, U'\'')) return pos;
  auto letter = [&](size_t i) -> char32_t {
    if (i >= s.end) return 0;
    return ignore_case ? fold_case(s.cps[i]) : s.cps[i];
  };
  const char32_t first = letter(pos + 1), second = letter(pos + 2);
  if (first == 's' || first == 't' || first == 'm' || first == 'd') return pos + 2;
  if ((first == 'r' || first == 'v') && second == 'e') return pos + 3;
  if (first == 'l' && second == 'l') return pos + 3;
  return pos;
}

// \s+(?!\S)|\s+ : a run of whitespace. When a non-space follows, the run gives up its last
// character, which then starts the next match (" world"), so words keep their space.
size_t match_whitespace(const Span& s, size_t pos) {
  const size_t run_end = s.skip(pos, is_whitespace);
  const bool text_follows = run_end < s.end;
  if (text_follows && run_end - pos > 1) return run_end - 1;
  return run_end;
}

// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t match_gpt2(const Span& s, size_t pos) {
  if (size_t end = match_contraction(s, pos, /*ignore_case=*/false); end > pos) return end;
  // The optional space: a space is none of the three classes, so when the character after
  // it is not of the class either, that alternative fails with or without the space.
  const size_t start = s.is(pos, U' ') ? pos + 1 : pos;
  for (CharClass cls : {is_letter, is_number, is_other}) {
    if (s.is(start, cls)) return s.skip(start, cls);
  }
  return match_whitespace(s, pos);
}

// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
// \s*[\r\n]+|\s+(?!\S)|\s+
size_t match_llama3(const Span& s, size_t pos) {
  if (size_t end = match_contraction(s, pos, /*ignore_case=*/true); end > pos) return end;
  // [^\r\n\p{L}\p{N}]?\p{L}+ : a word, with one leading space or symbol if there is one.
  if (s.is(pos, is_word_prefix) && s.is(pos + 1, is_letter)) return s.skip(pos + 1, is_letter);
  if (s.is(pos, is_letter)) return s.skip(pos, is_letter);
  // \p{N}{1,3} : numbers in groups of three digits from the left.
  if (s.is(pos, is_number)) return std::min(s.skip(pos, is_number), pos + 3);
  //  ?[^\s\p{L}\p{N}]+[\r\n]* : symbols, keeping the line breaks right after them.
  const size_t symbols = s.is(pos, U' ') ? pos + 1 : pos;
  if (s.is(symbols, is_other)) return s.skip(s.skip(symbols, is_other), is_newline);
  // \s*[\r\n]+ : whitespace up to and including its last line break.
  const size_t run_end = s.skip(pos, is_whitespace);
  for (size_t i = run_end; i > pos; --i) {
    if (is_newline(s.cps[i - 1])) return i;
  }
  return match_whitespace(s, pos);
}

using Matcher = size_t (*)(const Span&, size_t);

// The text as code points plus the byte offset where each starts (and a final entry for
// the end), so that pieces can be handed back as byte ranges of the original text.
struct DecodedText {
  std::u32string cps;
  std::vector<size_t> offsets;
};

// Bytes that are not UTF-8 become U+FFFD here only for classification; the pieces still
// hold the original bytes.
DecodedText decode_text(std::string_view text) {
  DecodedText d;
  d.cps.reserve(text.size());
  d.offsets.reserve(text.size() + 1);
  for (size_t pos = 0; pos < text.size();) {
    const unicode::Utf8Char c = unicode::decode_utf8(text, pos);
    d.cps.push_back(c.code_point);
    d.offsets.push_back(pos);
    pos += c.length;
  }
  d.offsets.push_back(text.size());
  return d;
}

}  // namespace

PreTokenizer pre_tokenizer_from_name(const std::string& name) {
  if (name == "gpt2" || name == "gpt-2") return PreTokenizer::Gpt2;
  if (name == "smollm") return PreTokenizer::SmolLM;
  if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") return PreTokenizer::Llama3;
  std::cerr << "kvlm: warning: unknown pre-tokenizer '" << name
            << "' (tokenizer.ggml.pre); using the GPT-2 pattern, so tokens may differ from "
               "the ones the model was trained with\n";
  return PreTokenizer::Gpt2;
}

const char* pre_tokenizer_name(PreTokenizer kind) {
  switch (kind) {
    case PreTokenizer::Gpt2: return "gpt2";
    case PreTokenizer::SmolLM: return "smollm";
    case PreTokenizer::Llama3: return "llama-bpe";
  }
  return "?";
}

std::vector<std::string_view> pre_tokenize(PreTokenizer kind, std::string_view text) {
  const DecodedText d = decode_text(text);
  std::vector<std::string_view> pieces;
  auto emit = [&](size_t first, size_t last) {
    pieces.push_back(text.substr(d.offsets[first], d.offsets[last] - d.offsets[first]));
  };
  auto split = [&](size_t begin, size_t end, Matcher match) {
    const Span span{d.cps.data(), end};
    for (size_t pos = begin; pos < end;) {
      const size_t next = match(span, pos);
      emit(pos, next);
      pos = next;
    }
  };

  const size_t n = d.cps.size();
  switch (kind) {
    case PreTokenizer::Gpt2:
      split(0, n, match_gpt2);
      break;
    case PreTokenizer::Llama3:
      split(0, n, match_llama3);
      break;
    case PreTokenizer::SmolLM:
      // Each digit is a piece of its own, so numbers are always spelled digit by digit;
      // the GPT-2 pattern then splits each stretch between digits as if it were the whole
      // text (a lookahead at the end of a stretch does not see the digit after it).
      for (size_t pos = 0; pos < n;) {
        if (is_number(d.cps[pos])) {
          emit(pos, pos + 1);
          ++pos;
          continue;
        }
        size_t stretch_end = pos;
        while (stretch_end < n && !is_number(d.cps[stretch_end])) ++stretch_end;
        split(pos, stretch_end, match_gpt2);
        pos = stretch_end;
      }
      break;
  }
  return pieces;
}

// ---------------------------------------------------------------------------------------
// BpeTokenizer
// ---------------------------------------------------------------------------------------

BpeTokenizer::BpeTokenizer(BpeVocab vocab)
    : tokens_(std::move(vocab.tokens)),
      token_types_(std::move(vocab.token_types)),
      pre_(vocab.pre),
      n_merges_(vocab.merges.size()),
      ignore_merges_(vocab.ignore_merges) {
  if (tokens_.empty()) throw std::runtime_error("BPE vocabulary has no tokens");
  if (!token_types_.empty() && token_types_.size() != tokens_.size()) {
    throw std::runtime_error("BPE vocabulary has " + std::to_string(tokens_.size()) +
                             " tokens but " + std::to_string(token_types_.size()) +
                             " token types");
  }
  apply_setup(vocab.setup, tokens_);
  index_tokens();
  index_merges(vocab.merges);
  index_bytes();
}

TokenType BpeTokenizer::type_of(int32_t id) const {
  return token_types_.empty() ? TokenType::Normal : static_cast<TokenType>(token_types_[id]);
}

bool BpeTokenizer::is_special(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return false;
  const TokenType type = type_of(id);
  return type == TokenType::Control || type == TokenType::UserDefined;
}

void BpeTokenizer::index_tokens() {
  token_ids_.reserve(tokens_.size());
  token_bytes_.resize(tokens_.size());
  for (size_t i = 0; i < tokens_.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    // Special tokens are stored as plain text, not in the byte-level alphabet. Control
    // tokens are left out of the lookup so that ordinary text can never turn into one.
    if (is_special(id)) {
      token_bytes_[i] = tokens_[i];
      specials_.add(id, tokens_[i]);
    } else {
      token_bytes_[i] = from_byte_level(tokens_[i]);
    }
    if (type_of(id) != TokenType::Control) token_ids_.emplace(tokens_[i], id);
  }
}

void BpeTokenizer::index_merges(const std::vector<std::string>& merges) {
  merges_.reserve(merges.size());
  auto id_of = [&](const std::string& text, size_t rank) {
    const auto it = token_ids_.find(text);
    if (it == token_ids_.end()) {
      throw std::runtime_error("merge " + std::to_string(rank) + " '" + merges[rank] +
                               "' needs the token '" + text + "', which is not in the vocabulary");
    }
    return it->second;
  };
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& merge = merges[rank];
    const size_t space = merge.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == merge.size() ||
        merge.find(' ', space + 1) != std::string::npos) {
      throw std::runtime_error("merge " + std::to_string(rank) + " '" + merge +
                               "' is not two tokens separated by one space");
    }
    const std::string left = merge.substr(0, space), right = merge.substr(space + 1);
    const int32_t left_id = id_of(left, rank), right_id = id_of(right, rank);
    const int32_t result_id = id_of(left + right, rank);
    // A repeated pair keeps its first (highest-priority) rank.
    merges_.emplace(pair_key(left_id, right_id), Merge{static_cast<int32_t>(rank), result_id});
  }
}

void BpeTokenizer::index_bytes() {
  for (int byte = 0; byte < 256; ++byte) {
    std::string name;
    unicode::append_utf8(name, byte_alphabet().char_of_byte[byte]);
    const auto it = token_ids_.find(name);
    byte_token_[byte] = it != token_ids_.end() ? it->second : -1;
  }
}

std::string BpeTokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw std::out_of_range("token id " + std::to_string(id) + " is out of range (" +
                            std::to_string(vocab_size()) + " tokens)");
  }
  return token_bytes_[id];
}

std::string BpeTokenizer::describe() const {
  std::string s = "byte-level BPE: " + std::to_string(tokens_.size()) + " tokens, " +
                  std::to_string(n_merges_) + " merges, " + std::to_string(specials_.size()) +
                  " special, pre-tokenizer " + pre_tokenizer_name(pre_);
  if (ignore_merges_) s += " (whole pieces first)";
  s += ", bos " + (bos_id_ >= 0 ? std::to_string(bos_id_) : std::string("none"));
  s += ", eos " + (eos_id_ >= 0 ? std::to_string(eos_id_) : std::string("none"));
  s += add_bos_ ? ", adds bos" : ", no bos added";
  return s + "; " + source_;
}

// Control tokens are matched only when the caller asks for it; user-defined tokens are
// ordinary words that the model's authors added whole, and like Hugging Face we match them
// always.
std::vector<int32_t> BpeTokenizer::encode(const std::string& text, bool add_bos,
                                          bool parse_special) const {
  std::vector<int32_t> ids;
  if (add_bos && bos_id_ >= 0) ids.push_back(bos_id_);
  specials_.split(
      text, [&](int32_t id) { return parse_special || type_of(id) != TokenType::Control; },
      [&](std::string_view stretch) { encode_plain(stretch, ids); },
      [&](int32_t id) { ids.push_back(id); });
  return ids;
}

void BpeTokenizer::encode_plain(std::string_view text, std::vector<int32_t>& ids) const {
  for (std::string_view piece : pre_tokenize(pre_, text)) encode_piece(piece, ids);
}

// Merges one piece. Symbols form a linked list over a vector (merging two neighbours is
// O(1)) and candidate merges wait in a heap ordered by rank, then by position, so the
// leftmost occurrence of the best pair is merged first, as in the reference
// implementations. A candidate whose symbols changed since it was queued is dropped when
// it comes up: merging only makes tokens longer, so a changed symbol never has its old id.
void BpeTokenizer::encode_piece(std::string_view piece, std::vector<int32_t>& ids) const {
  if (ignore_merges_) {
    const auto it = token_ids_.find(to_byte_level(piece));
    if (it != token_ids_.end()) {
      ids.push_back(it->second);
      return;
    }
  }

  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int prev;    // -1 at the ends
    int next;
  };
  struct Candidate {
    int32_t rank;
    int left, right;
    int32_t left_id, right_id, result;
  };
  auto comes_later = [](const Candidate& a, const Candidate& b) {
    return a.rank != b.rank ? a.rank > b.rank : a.left > b.left;
  };

  // One symbol per byte; a byte without a token is left out, so its neighbours may merge.
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  for (unsigned char byte : piece) {
    if (byte_token_[byte] < 0) continue;
    const int i = static_cast<int>(symbols.size());
    symbols.push_back({byte_token_[byte], i - 1, i + 1});
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;
  const int n = static_cast<int>(symbols.size());
  std::priority_queue<Candidate, std::vector<Candidate>, decltype(comes_later)> queue(comes_later);
  auto consider = [&](int left) {
    const int right = symbols[left].next;
    if (right < 0) return;
    const auto it = merges_.find(pair_key(symbols[left].id, symbols[right].id));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, symbols[left].id, symbols[right].id,
                it->second.result});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    if (left.id != c.left_id || left.next != c.right || right.id != c.right_id) continue;
    left.id = c.result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.id = -1;
    if (left.prev >= 0) consider(left.prev);
    consider(c.left);
  }
  // Symbol 0 always survives: a merge keeps the left symbol.
  for (int i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
}

}  // namespace kvlm
