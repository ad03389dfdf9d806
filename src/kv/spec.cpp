#include "kv/spec.h"

#include <stdexcept>

#include "util/text_format.h"

namespace kvlm {

namespace {

MethodSpec parse_part(const std::string& part, const std::string& spec) {
  MethodSpec m;
  const size_t colon = part.find(':');
  m.name = part.substr(0, colon);
  if (m.name.empty()) throw std::invalid_argument("--kv " + spec + ": a method name is missing");
  if (colon == std::string::npos) return m;
  for (const std::string& item : split(part.substr(colon + 1), ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw std::invalid_argument("--kv " + spec + ": '" + item + "' is not key=value");
    const std::string key = item.substr(0, eq);
    if (m.has(key)) throw std::invalid_argument("--kv " + spec + ": '" + key + "' is given twice");
    m.params.emplace_back(key, item.substr(eq + 1));
  }
  return m;
}

}  // namespace

bool MethodSpec::has(const std::string& key) const {
  for (const auto& [k, v] : params)
    if (k == key) return true;
  return false;
}

void MethodSpec::set(const std::string& key, const std::string& value) {
  for (auto& [k, v] : params)
    if (k == key) {
      v = value;
      return;
    }
  params.emplace_back(key, value);
}

std::string MethodSpec::text() const {
  if (params.empty()) return name;
  return name + ":" + join(params, ",", [](const auto& p) { return p.first + "=" + p.second; });
}

KVSpec KVSpec::parse(const std::string& text) {
  if (text.empty()) throw std::invalid_argument("--kv: empty method spec");
  KVSpec spec;
  for (const std::string& part : split(text, '+')) spec.parts.push_back(parse_part(part, text));
  return spec;
}

std::string KVSpec::text() const {
  return join(parts, "+", [](const MethodSpec& part) { return part.text(); });
}

std::vector<KVSpec> parse_kv_list(const std::string& list) {
  std::vector<std::string> texts;
  for (const std::string& item : split(list, ',')) {
    const std::string head = item.substr(0, item.find('+'));  // up to a composition
    const bool continues = !texts.empty() && head.find('=') != std::string::npos &&
                           head.find(':') == std::string::npos;
    if (continues) texts.back() += "," + item;
    else if (!item.empty()) texts.push_back(item);
  }
  std::vector<KVSpec> specs;
  for (const std::string& text : texts) specs.push_back(KVSpec::parse(text));
  return specs;
}

}  // namespace kvlm
