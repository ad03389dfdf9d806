// KVStrategy: the policy that decides which past tokens stay in the KV cache.
//
// The forward pass asks a strategy what it needs to see (needs()), computes only that on
// the backend, and calls the hooks below. A strategy decides (indices to keep, budgets,
// merges) in plain C++ over small host arrays; the cache carries the decisions out.
//
// Slots: the rows of one (layer, KV head) in the cache, in order. During a prefill call
// the new tokens are the last n_new slots of every head; before any eviction slot j of a
// fresh prompt is token j.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kv/kv_cache.h"

namespace kvlm {

// What the forward pass must compute for the strategy. Nothing is computed unless asked.
struct Needs {
  int window = 0;                 // prefill: attention of the last `window` new queries
  bool all_queries = false;       // prefill: attention summed over every new query (H2O)
  bool key_norms = false;         // prefill: L2 norm of every cached key
  bool decode_attention = false;  // decode: the attention the new token paid to each slot
};

// What one layer's prefill produced, filled according to Needs; empty when not asked.
struct Observation {
  int layer = 0;
  int n_new = 0;     // tokens in this prefill call (the prompt, or the next chat turn)
  int n_tokens = 0;  // tokens seen including this call (the prompt length on a fresh cache)
  int window = 0;  // window rows used: min(Needs::window, n_new)
  // Per query head h (reading KV head h / group): the softmax attention of each window
  // query over the head's slots (causal, normalised over the full row), averaged over
  // the window queries. [n_heads][slots of that KV head]
  std::vector<std::vector<float>> window_attention;
  // Per query head: softmax attention summed over all n_new queries (column sums of the
  // causal attention matrix). [n_heads][slots]
  std::vector<std::vector<float>> query_attention_sum;
  std::vector<std::vector<float>> key_norms;  // [n_kv_heads][slots]
};

// What one decode step produced, filled according to Needs.
struct DecodeObservation {
  // [layer][query head][slot]: softmax attention of the new token (its own slot included).
  std::vector<std::vector<std::vector<float>>> attention;
};

class KVStrategy {
 public:
  virtual ~KVStrategy() = default;
  // The spec that recreates it with every parameter, e.g. "snapkv:budget=128,window=32,...".
  virtual std::string name() const = 0;
  // Read at every forward call, so a strategy may stop asking once it has what it needs
  // (e.g. a detection made at the first decode step).
  virtual Needs needs() const { return {}; }
  // Right after a prefill call (n_new > 1 tokens) appended to and attended with layer
  // obs.layer, before the next layer runs: per-layer eviction frees memory at once.
  virtual void on_prefill_layer(KVCache&, const Observation&) {}
  // After the last layer of a prefill call: decisions that need every layer.
  virtual void after_prefill(KVCache&) {}
  // After each decoded token (n_new == 1) went through every layer.
  virtual void on_decode_step(KVCache&, const DecodeObservation&) {}
  // Extra lines for --stats and /stats (e.g. which layers SimLayerKV found lazy).
  virtual std::string report() const { return ""; }
};

// One entry of `kvlm methods`.
struct MethodInfo {
  std::string name;
  std::string summary;                                      // one line: what it does
  std::vector<std::pair<std::string, std::string>> params;  // name -> default, as text
  std::string paper;                                        // title + arXiv id; "" for full
};

// "name:key=value,key=value" or "a:...+b:..." (composition, applied left to right) ->
// strategy. Throws std::invalid_argument naming the bad part and listing what is valid.
std::unique_ptr<KVStrategy> make_strategy(const std::string& spec);
const std::vector<MethodInfo>& known_methods();

// "snapkv:budget=64,window=8,h2o:budget=64,full" -> the three specs: a comma starts a new
// spec unless what follows is key=value of the current one.
std::vector<std::string> split_kv_list(const std::string& list);

}  // namespace kvlm
