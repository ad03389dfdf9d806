// Constructors of the built-in methods, used by the registry.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kv/strategy.h"

namespace kvlm {

// The "key=value" parameters of a --kv spec, with typed getters that fail loudly.
class Params {
 public:
  std::map<std::string, std::string> values;
  // Throws std::invalid_argument if a key is not in `allowed` (lists the allowed ones).
  void reject_unknown(const std::string& method, const std::vector<std::string>& allowed) const;
  int get_int(const std::string& key, int fallback, int min_value) const;
  double get_double(const std::string& key, double fallback, double min_value,
                    double max_value) const;
};

MethodInfo full_method_info();
std::unique_ptr<KVStrategy> make_full(const Params& params);

}  // namespace kvlm
