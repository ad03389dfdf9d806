// KVStrategy: the policy that decides which past tokens stay in the KV cache.
//
// The KV observer (kv/observer.h) asks a strategy what it needs to see (needs()), computes
// only that on the backend, and calls the hooks below as the forward pass runs. A strategy
// decides (indices to keep, budgets, merges) in plain C++ over small host arrays; the cache
// carries the decisions out. src/kv/strategies/README.md introduces the methods.
//
// Slots: the rows of one (layer, KV head) in the cache, in order. During a prefill call
// the new tokens are the last n_new slots of every head; before any eviction slot j of a
// fresh prompt is token j.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kv/kv_cache.h"
#include "kv/spec.h"
#include "model/config.h"

namespace kvlm {

// What the observer must compute for the strategy. Nothing is computed unless asked.
struct Needs {
  int window = 0;                 // prefill: attention of the last `window` new queries
  bool window_rows = false;       // prefill: those queries' rows one by one, instead of averaged
  bool all_queries = false;       // prefill: attention summed over every new query (H2O)
  bool key_norms = false;         // prefill: L2 norm of every cached key
  bool decode_attention = false;  // decode: the attention the new token paid to each slot
  bool decode_key_norms = false;  // decode: the L2 norm of the new token's key

  // The part a prefill call computes (the decode fields cleared).
  Needs prefill_part() const { return {window, window_rows, all_queries, key_norms}; }
  bool operator==(const Needs&) const = default;
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
  // With Needs::window_rows, instead of window_attention: each window query's own softmax
  // row, query i of the window seeing slots [0, slots - window + i].
  // [window][n_heads][slots of that KV head]
  std::vector<std::vector<std::vector<float>>> window_rows;
  // Per query head: softmax attention summed over all n_new queries (column sums of the
  // causal attention matrix). [n_heads][slots]
  std::vector<std::vector<float>> query_attention_sum;
  std::vector<std::vector<float>> key_norms;  // [n_kv_heads][slots]
};

// What one decode step produced, filled according to Needs.
struct DecodeObservation {
  // [layer][query head][slot]: softmax attention of the new token (its own slot included).
  std::vector<std::vector<std::vector<float>>> attention;
  // [layer][KV head]: the norm of the key the step appended (the head's last slot).
  std::vector<std::vector<float>> key_norms;
};

class KVStrategy {
 public:
  virtual ~KVStrategy() = default;
  // The spec that recreates it with every parameter, e.g. "snapkv:budget=128,window=32,...".
  virtual std::string name() const = 0;
  // Read at every forward call, after begin_sequence, so a strategy may stop asking once it
  // has what it needs (e.g. a detection made at the first decode step).
  virtual Needs needs() const { return {}; }
  // Once, for the model the strategy will run on, before its first sequence: defaults that
  // depend on the model family are chosen here (SimLayerKV's threshold).
  virtual void set_model(const ModelConfig&) {}
  // A new sequence starts on the empty cache with a call of `prompt_tokens` tokens (a
  // prompt, or a one-token start): forget the last one's state, fix per-prompt budgets.
  virtual void begin_sequence(const KVCache&, int /*prompt_tokens*/) {}
  // Right after a prefill call (n_new > 1 tokens) appended to and attended with layer
  // obs.layer, before the next layer runs: per-layer eviction frees memory at once.
  virtual void on_prefill_layer(KVCache&, const Observation&) {}
  // After the last layer of a prefill call: decisions that need every layer.
  virtual void after_prefill(KVCache&) {}
  // After each decoded token (n_new == 1) went through every layer.
  virtual void on_decode_step(KVCache&, const DecodeObservation&) {}
  // Whether on_decode_step evicts or merges; false: the strategy compresses only after
  // prefill calls, and a text read one token at a time (kvlm ppl) is never compressed.
  virtual bool compresses_while_decoding() const { return false; }
  // An independent copy, parameters and state alike: chat keeps one from before a turn so
  // that an interrupted turn can be taken back (Session::checkpoint).
  virtual std::unique_ptr<KVStrategy> clone() const = 0;
  // Extra lines for --stats and /stats (e.g. which layers SimLayerKV found lazy).
  virtual std::string report() const { return ""; }
  // A word on one layer for kept maps (SimLayerKV: "lazy"); "" for nothing to say.
  virtual std::string layer_note(int /*layer*/) const { return ""; }
  // Where keys get their RoPE positions (kv_cache.h): the pos= parameter, which the
  // registry reads for the methods whose traits take it.
  virtual KVPositions position_mode() const { return KVPositions::Original; }
};

// The base of a strategy whose state is all in copyable members: clone() is a copy.
template <class Derived>
class CopyableStrategy : public KVStrategy {
 public:
  std::unique_ptr<KVStrategy> clone() const final {
    return std::make_unique<Derived>(static_cast<const Derived&>(*this));
  }
};

// What the registry and the evaluations need to know of a method without running it.
struct MethodTraits {
  bool budgeted = false;               // takes budget= or ratio= (sweeps set it)
  bool observes = false;               // needs attention scores or key norms
  bool merges_layers = false;          // shares storage across layers (kv/merged_layers.h)
  // Takes pos=original|cache: it evicts and keeps equally many tokens in every head of a
  // layer (a layer's queries share one position). The default is Original unless
  // cache_positions_by_default.
  bool cache_positions = false;
  bool cache_positions_by_default = false;
};

// One entry of `kvlm methods`.
struct MethodInfo {
  std::string name;
  std::string summary;                                      // one line: what it does
  std::vector<std::pair<std::string, std::string>> params;  // name -> default, as text
  std::string paper;                                        // title + arXiv id; "" for full
  MethodTraits traits;
};

// spec -> strategy (a composition of several parts applies them left to right). Throws
// std::invalid_argument naming the bad part and listing what is valid.
std::unique_ptr<KVStrategy> make_strategy(const KVSpec& spec);
std::unique_ptr<KVStrategy> make_strategy(const std::string& spec);  // parses it first
const std::vector<MethodInfo>& known_methods();
// The method called `name`, or nullptr.
const MethodInfo* find_method(const std::string& name);

}  // namespace kvlm
