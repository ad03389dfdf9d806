// KVStrategy: the policy that decides which past tokens stay in the KV cache.
//
// The forward pass asks a strategy what it needs to see (needs()), computes only that on
// the backend, and calls the hooks below. A strategy decides (indices to keep, budgets)
// in plain C++ over small host arrays; the cache carries the decisions out.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kv/kv_cache.h"

namespace kvlm {

// What the forward pass must compute for the strategy. Nothing is computed unless asked.
struct Needs {
  int window = 0;                 // observation window: attention of the last `window` prompt queries
  bool key_norms = false;         // L2 norm of every cached key
  bool decode_attention = false;  // attention each decode step paid to every cached slot
};

// What one layer's prefill produced, filled according to Needs.
struct Observation {
  int n_new = 0;                         // tokens in this prefill call
  int window = 0;                        // rows of window_attention per query head
  std::vector<float> window_attention;   // [n_heads][window][len of the head's KV head]
  std::vector<float> key_norms;          // [n_kv_heads][len]
};

// What one decode step produced across all layers, filled according to Needs.
struct DecodeObservation {
  std::vector<std::vector<std::vector<float>>> attention;  // [layer][kv head][slot]
};

class KVStrategy {
 public:
  virtual ~KVStrategy() = default;
  virtual std::string name() const = 0;   // the spec that recreates it, e.g. "snapkv:budget=128"
  virtual Needs needs() const { return {}; }
  // Right after `layer` appended and attended the new tokens of a prefill (T > 1).
  virtual void on_prefill_layer(KVCache&, int /*layer*/, const Observation&) {}
  // After the last layer of a prefill: decisions that need every layer.
  virtual void after_prefill(KVCache&) {}
  // After each decoded token (T == 1).
  virtual void on_decode_step(KVCache&, const DecodeObservation&) {}
};

// One entry of `kvlm methods`.
struct MethodInfo {
  std::string name;
  std::string summary;                          // one line: what it does
  std::vector<std::pair<std::string, std::string>> params;  // name -> default, as text
  std::string paper;                            // citation with arXiv id, or "" for full
};

// "name:key=value,key=value" -> strategy. Throws std::invalid_argument naming the bad part
// and listing what is valid.
std::unique_ptr<KVStrategy> make_strategy(const std::string& spec);
const std::vector<MethodInfo>& known_methods();

}  // namespace kvlm
