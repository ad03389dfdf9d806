// UTF-8 decoding/encoding and the code point classes that pre-tokenizer patterns use.
// Text reaching the tokenizer is arbitrary bytes, so decoding never fails: a byte sequence
// that is not UTF-8 is reported as invalid and the caller decides what to do with it.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace kvlm::unicode {

inline constexpr char32_t kReplacementCharacter = 0xFFFD;

enum class Utf8Status {
  Valid,      // a complete, well-formed character
  Invalid,    // bytes that can never be part of a well-formed character
  Truncated,  // the input ends inside a character that could still be completed
};

struct Utf8Char {
  char32_t code_point = kReplacementCharacter;  // U+FFFD unless status is Valid
  size_t length = 0;                            // bytes consumed, at least 1
  Utf8Status status = Utf8Status::Valid;
};

// Decodes the character starting at text[pos] (pos < text.size()). An ill-formed sequence
// consumes its "maximal subpart" (Unicode 3.9, as Python and browsers do), so that each
// broken piece becomes exactly one U+FFFD when replaced.
Utf8Char decode_utf8(std::string_view text, size_t pos);

// Appends the UTF-8 encoding of cp (U+FFFD for surrogates and values beyond U+10FFFF).
void append_utf8(std::string& out, char32_t cp);

// Character classes as the regex engines of the reference tokenizers define them.
bool is_letter(char32_t cp);      // \p{L}
bool is_number(char32_t cp);      // \p{N}
bool is_whitespace(char32_t cp);  // \s: Unicode White_Space (not U+001C..U+001F)

}  // namespace kvlm::unicode
