// A --kv spec as a structure, parsed once at the boundary.
//
//   snapkv:budget=128,window=32+minicache
//   \____/ \___________________/ \_______/
//    name        parameters       a second part (composition, applied left to right)
//
// Parsing checks only the syntax; the registry (kv/strategy.h) checks names, parameters
// and how parts compose. text() writes the spec back in the same form.
#pragma once
#include <string>
#include <utility>
#include <vector>

namespace kvlm {

struct MethodSpec {
  std::string name;
  std::vector<std::pair<std::string, std::string>> params;  // in the order given

  bool has(const std::string& key) const;
  // Replaces the value of `key`, or appends key=value.
  void set(const std::string& key, const std::string& value);
  std::string text() const;  // "snapkv:budget=128,window=32"; "full"
};

struct KVSpec {
  std::vector<MethodSpec> parts;

  // Throws std::invalid_argument ("--kv TEXT: ...") for an empty spec or part, an item
  // that is not key=value, or a key given twice.
  static KVSpec parse(const std::string& text);
  std::string text() const;
  bool operator==(const KVSpec& other) const { return text() == other.text(); }
};

// "snapkv:budget=64,window=8,h2o:budget=64,full" -> three specs: a comma starts a new spec
// unless what follows is key=value of the current one.
std::vector<KVSpec> parse_kv_list(const std::string& list);

}  // namespace kvlm
