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

// A number of tokens (per KV head, window and sinks included): a fixed count, or a share
// of the tokens seen (r -> ceil(r * n)).
struct Budget {
  int tokens = 0;
  double ratio = 0;
  int resolve(int n_tokens) const;
  std::string spec() const;   // as budget= or ratio=: "budget=128" or "ratio=0.1"
  std::string value() const;  // the number alone: "128" or "0.1"
};
// Reads budget= or ratio= (not both); `fallback_tokens` when neither is given.
Budget read_budget(const Params& p, int fallback_tokens, int min_tokens = 1);
// Reads one parameter that is a count, or a share when written with a decimal point or
// an exponent (recent=1024, recent=0.25).
Budget read_count_or_share(const Params& p, const std::string& key, int fallback_tokens);

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
