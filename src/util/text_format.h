// Text as people write and read it: lists split at and joined with a separator, byte counts
// with binary units, and numbers in the shortest text that reads back as the same number.
#pragma once
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kvlm {

// "a,b,,c" -> {"a", "b", "", "c"}; a trailing separator gives a trailing empty item, so a
// caller that rejects empty items rejects "a," too. "" -> {}.
std::vector<std::string> split(const std::string& text, char separator);

// {"a", "b", "c"} with ", " -> "a, b, c"; with `text`, joins text(item) for each item (a
// number's digits, a record's name). {} -> "".
template <class Items, class Text = std::identity>
std::string join(const Items& items, std::string_view separator, Text text = {}) {
  std::string joined;
  bool first = true;
  for (const auto& item : items) {
    if (!first) joined += separator;
    joined += text(item);
    first = false;
  }
  return joined;
}

std::string format_bytes(double bytes);  // "12.5 MiB", "512 B"
std::string format_count(double n);      // "74.2K", "135M", "8.03B", "512": 3 digits or more

// The shortest text that reads back as the same number, of the caller's type: 0.95f gives
// "0.95" (as a double it is 0.949999988079071).
std::string format_number(double x);     // "0.2", "1e-06", "128"
std::string format_number(float x);

}  // namespace kvlm
