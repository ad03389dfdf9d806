// Text crossing the terminal: what a model writes on its way to the screen, and what a user
// types on its way to the model.
#pragma once
#include <cstddef>
#include <string>
#include <string_view>

namespace kvlm {

// `text` with its control characters shown instead of executed, so that a model's output
// cannot move the cursor, retitle the window, set the clipboard or change colours: ESC as
// ^[ and the other C0 controls in caret notation (^M for a carriage return, ^G for the
// bell), DEL as ^?, C1 controls (U+0080..U+009F, which some terminals obey like ESC
// sequences) as <U+009B>, and bytes that are not UTF-8 as <0xNN>. Newlines and tabs pass.
// A character split between two calls would show as bytes: pass whole characters (the
// pieces of a StreamDecoder are).
std::string visible_controls(std::string_view text);

// User input made fit for a tokenizer: every invalid UTF-8 sequence (its maximal subpart,
// as a decoder would count it) and every NUL byte becomes U+FFFD.
struct RepairedText {
  std::string text;
  int replaced = 0;         // sequences replaced
  size_t first_offset = 0;  // byte offset of the first in the input, when replaced > 0
};
RepairedText replace_invalid_utf8(std::string_view text);

}  // namespace kvlm
