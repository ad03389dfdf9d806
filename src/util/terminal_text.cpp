#include "util/terminal_text.h"

#include <cstdint>
#include <cstdio>

#include "tokenizer/unicode.h"

namespace kvlm {

std::string visible_controls(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const unicode::Utf8Char c = unicode::decode_utf8(text, pos);
    const char32_t cp = c.code_point;
    char shown[16];
    if (c.status != unicode::Utf8Status::Valid) {
      for (size_t i = 0; i < c.length; i++) {
        std::snprintf(shown, sizeof shown, "<0x%02X>", unsigned(uint8_t(text[pos + i])));
        out += shown;
      }
    } else if (cp == '\n' || cp == '\t') {
      out += char(cp);
    } else if (cp < 0x20 || cp == 0x7f) {
      out += '^';
      out += char(cp ^ 0x40);  // the caret notation: 0x1b -> '[', 0x7f -> '?'
    } else if (cp >= 0x80 && cp < 0xa0) {
      std::snprintf(shown, sizeof shown, "<U+%04X>", unsigned(cp));
      out += shown;
    } else {
      out.append(text, pos, c.length);
    }
    pos += c.length;
  }
  return out;
}

RepairedText replace_invalid_utf8(std::string_view text) {
  RepairedText r;
  r.text.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const unicode::Utf8Char c = unicode::decode_utf8(text, pos);
    if (c.status == unicode::Utf8Status::Valid && c.code_point != 0) {
      r.text.append(text, pos, c.length);
    } else {
      if (r.replaced++ == 0) r.first_offset = pos;
      unicode::append_utf8(r.text, unicode::kReplacementCharacter);
    }
    pos += c.length;
  }
  return r;
}

}  // namespace kvlm
