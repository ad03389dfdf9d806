// Numbers in user text (flag values, --kv parameters): the whole text must be the number.
#pragma once
#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

namespace kvlm {

// "0.25" -> 0.25; "", "1x", " 2", "nan" and "inf" -> nothing.
inline std::optional<double> parse_finite(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (used != text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

}  // namespace kvlm
