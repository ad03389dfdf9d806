// What strategy files share: parameter parsing, budgets, and the registry's constructors.
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
  // One of `choices` (the first is the default).
  std::string get_choice(const std::string& key, const std::vector<std::string>& choices) const;
};

// Tokens per KV head (window and sinks included): a fixed count (budget=N) or a share of
// the tokens seen (ratio=r -> ceil(r * n)).
struct Budget {
  int tokens = 0;
  double ratio = 0;
  int resolve(int n_tokens) const;
  std::string spec() const;  // "budget=128" or "ratio=0.1"
};
// Reads budget= or ratio= (not both); `fallback_tokens` when neither is given.
Budget read_budget(const Params& p, int fallback_tokens, int min_tokens = 1);

// Each method file defines these two; registry.cpp lists them.
#define KVLM_METHOD(id)                        \
  MethodInfo id##_method_info();               \
  std::unique_ptr<KVStrategy> make_##id(const Params& params);

KVLM_METHOD(full)
KVLM_METHOD(streaming)
KVLM_METHOD(h2o)
KVLM_METHOD(snapkv)
KVLM_METHOD(pyramidkv)
KVLM_METHOD(adakv)
KVLM_METHOD(dynamickv)
KVLM_METHOD(simlayerkv)
KVLM_METHOD(knorm)
KVLM_METHOD(minicache)
#undef KVLM_METHOD

}  // namespace kvlm
