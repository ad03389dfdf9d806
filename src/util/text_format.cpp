#include "util/text_format.h"

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

std::string format_number(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

}  // namespace kvlm
