#include "tokenizer/unicode.h"

#include <algorithm>
#include <iterator>

namespace kvlm::unicode {
namespace {

struct CodePointRange {
  char32_t first;
  char32_t last;
};

#include "tokenizer/unicode_tables.inc"

template <size_t N>
bool in_ranges(const CodePointRange (&table)[N], char32_t cp) {
  // The first range whose last code point is >= cp is the only one that can hold cp.
  auto it = std::lower_bound(std::begin(table), std::end(table), cp,
                             [](const CodePointRange& r, char32_t c) { return r.last < c; });
  return it != std::end(table) && it->first <= cp;
}

// What a lead byte promises: how many continuation bytes follow, and the range allowed for
// the first of them. The narrowed ranges exclude overlong forms (E0, F0), surrogates (ED)
// and code points beyond U+10FFFF (F4); later continuation bytes are always 80..BF.
struct LeadByte {
  int continuations;  // -1: this byte can never start a character
  unsigned char first_min = 0x80;
  unsigned char first_max = 0xBF;
};

LeadByte classify_lead(unsigned char b) {
  if (b < 0x80) return {0};
  if (b >= 0xC2 && b <= 0xDF) return {1};
  if (b == 0xE0) return {2, 0xA0, 0xBF};
  if (b == 0xED) return {2, 0x80, 0x9F};
  if (b >= 0xE1 && b <= 0xEF) return {2};
  if (b == 0xF0) return {3, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {3};
  if (b == 0xF4) return {3, 0x80, 0x8F};
  return {-1};  // a stray continuation byte, C0/C1 (always overlong) or F5..FF
}

}  // namespace

Utf8Char decode_utf8(std::string_view text, size_t pos) {
  const auto lead = static_cast<unsigned char>(text[pos]);
  const LeadByte info = classify_lead(lead);
  if (info.continuations < 0) return {kReplacementCharacter, 1, Utf8Status::Invalid};
  if (info.continuations == 0) return {lead, 1, Utf8Status::Valid};

  // Payload bits of the lead byte: 5, 4 or 3 for 2-, 3- and 4-byte forms.
  char32_t cp = lead & (0x7F >> (info.continuations + 1));
  size_t length = 1;
  for (int k = 0; k < info.continuations; ++k, ++length) {
    if (pos + length >= text.size()) return {kReplacementCharacter, length, Utf8Status::Truncated};
    const auto b = static_cast<unsigned char>(text[pos + length]);
    const unsigned char lo = k == 0 ? info.first_min : 0x80;
    const unsigned char hi = k == 0 ? info.first_max : 0xBF;
    if (b < lo || b > hi) return {kReplacementCharacter, length, Utf8Status::Invalid};
    cp = (cp << 6) | (b & 0x3F);
  }
  return {cp, length, Utf8Status::Valid};
}

void append_utf8(std::string& out, char32_t cp) {
  if ((cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) cp = kReplacementCharacter;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// ASCII is by far the most common input, so it skips the table search.
bool is_letter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return in_ranges(kLetterRanges, cp);
}

bool is_number(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return in_ranges(kNumberRanges, cp);
}

bool is_whitespace(char32_t cp) {
  if (cp < 0x80) return cp == ' ' || (cp >= '\t' && cp <= '\r');
  return in_ranges(kWhitespaceRanges, cp);
}

}  // namespace kvlm::unicode
