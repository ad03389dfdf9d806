// Text as people write and read it: lists split at a separator, byte counts with binary
// units, and the shortest text that reads back as the same double ("0.2", not "0.200000").
#pragma once
#include <string>
#include <vector>

namespace kvlm {

// "a,b,,c" -> {"a", "b", "", "c"}; a trailing separator gives a trailing empty item, so a
// caller that rejects empty items rejects "a," too. "" -> {}.
std::vector<std::string> split(const std::string& text, char separator);

std::string format_bytes(double bytes);  // "12.5 MiB", "512 B"
std::string format_number(double x);     // "0.2", "1e-06", "128"

}  // namespace kvlm
