#include "util/text_format.h"

#include <charconv>
#include <cstdio>
#include <sstream>

namespace kvlm {

std::vector<std::string> split(const std::string& text, char separator) {
  std::vector<std::string> items;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, separator);) items.push_back(item);
  if (!text.empty() && text.back() == separator) items.push_back("");
  return items;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) bytes /= 1024, u++;
  char buf[32];
  std::snprintf(buf, sizeof buf, u ? "%.1f %s" : "%.0f %s", bytes, units[u]);
  return buf;
}

std::string format_count(double n) {
  const char* units[] = {"", "K", "M", "B", "T"};
  int u = 0;
  while (n >= 999.5 && u < 4) n /= 1000, u++;  // 999.6K prints as 1.00M, not 1000K
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f%s", u == 0 || n >= 99.95 ? 0 : n >= 9.995 ? 1 : 2, n,
                units[u]);
  return buf;
}

namespace {
template <class Float>
std::string shortest(Float x) {
  char buf[32];  // the longest shortest form: "-2.2250738585072014e-308", 24 characters
  return std::string(buf, std::to_chars(buf, buf + sizeof buf, x).ptr);
}
}  // namespace

std::string format_number(double x) { return shortest(x); }
std::string format_number(float x) { return shortest(x); }

}  // namespace kvlm
