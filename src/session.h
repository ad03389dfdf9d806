// Session: a loaded model with its backend, KV cache and strategy, and the generation
// loop that run, chat and the evaluations share.
#pragma once
#include <functional>
#include <istream>
#include <memory>
#include <string>
#include <vector>

#include "backend.h"
#include "chat_template.h"
#include "device.h"
#include "kv/kv_cache.h"
#include "kv/observer.h"
#include "kv/strategy.h"
#include "model/load.h"
#include "sample.h"

namespace kvlm {

struct RuntimeOptions {
  std::string model_path;  // default: the fetched default model
  int ctx_size = 0;        // 0: the model's trained context
  std::string kv = "full";
  DeviceChoice device;     // resolve_device() of --device and --dtype
  int threads = 0;         // 0 = all cores
  std::string chat_template;  // --template name; "" = the model's own
  bool quiet = false;
  bool verbose = false;
  bool progress = false;   // status lines on a terminal while loading and long prefills run
};

struct GenerationStats {
  int prompt_tokens = 0;
  double prefill_seconds = 0;
  int generated_tokens = 0;
  double decode_seconds = 0;
  bool hit_end = false;        // stopped at an end-of-generation token
  bool context_full = false;   // stopped because the cache reached --ctx-size
  double prefill_tokens_per_second() const { return prefill_seconds > 0 ? prompt_tokens / prefill_seconds : 0; }
  double decode_tokens_per_second() const { return decode_seconds > 0 ? generated_tokens / decode_seconds : 0; }
};

// The model to load: --model when given, else $KVLM_MODEL, else the fetched default model
// (throws, saying how to fetch it, when it is not there).
std::string model_path(const std::string& model_flag);

class Session {
 public:
  explicit Session(const RuntimeOptions& options);  // throws std::runtime_error
  ~Session();

  const ModelFile& file() const { return *file_; }
  const Tokenizer& tokenizer() const { return file_->tokenizer(); }
  // The model's chat template, or the one --template names (warns on stderr when it has
  // to fall back to a plain one).
  ChatTemplate chat_template() const;
  Model& model() { return *model_; }
  KVCache& cache() { return *cache_; }
  KVStrategy& strategy() { return *strategy_; }
  // Seconds the current strategy's observations (scores, norms) took so far.
  double scoring_seconds() const { return observer_->seconds(); }
  Backend& backend() { return *backend_; }
  int ctx_size() const { return cache_->max_tokens(); }
  const std::vector<int32_t>& history() const { return history_; }

  void set_strategy(const KVSpec& spec);  // throws std::invalid_argument; keeps the old one
  void reset();                                // forget the conversation

  // A chat turn that can be taken back. checkpoint() marks the conversation as it is now
  // (the cache, the strategy's state, the history); rollback() returns to the mark, as if
  // nothing happened since (after Ctrl-C or an error, also halfway through a forward
  // pass); commit() keeps what came after. The cache saves only what an eviction or merge
  // rewrites (KVCache::checkpoint); the strategy is copied whole (its scores are small).
  void checkpoint();
  void rollback();
  void commit();

  // Runs ids through the model after what the cache holds; returns the last logits.
  // Throws std::runtime_error if the context would overflow.
  std::vector<float> feed(const std::vector<int32_t>& ids);
  // The same with the strategy left out: ids join the cache as they are, next to whatever
  // it kept (query-agnostic evaluation appends the question to a cache compressed without
  // it). The strategy still sees the tokens that follow.
  std::vector<float> feed_uncompressed(const std::vector<int32_t>& ids);

  // ---- shared prefill: one prefill for several methods (evaluations) ------------------
  // prefill_shared runs `ids` once through a full cache of its own and records every
  // layer's observations for each entry of `needs` (Needs::prefill_part of each method's
  // strategy: prefill_needs). replay_shared then starts the current strategy on an empty
  // cache as if it had prefilled those ids itself, and returns the last logits: a method
  // evicts layer l only after layer l's attention, so no hidden state of the prompt
  // depends on it, and the kept tokens and logits are exactly those of feed(ids).
  void prefill_shared(const std::vector<int32_t>& ids, const std::vector<Needs>& needs);
  std::vector<float> replay_shared();
  void drop_shared();  // frees the shared prefill's cache
  double shared_prefill_seconds() const { return shared_ ? shared_->seconds : 0; }
  // What `spec`'s strategy asks a prefill of n_tokens to observe.
  Needs prefill_needs(const KVSpec& spec, int n_tokens) const;

  // Feeds the prompt, then samples up to n_predict tokens (fewer at an end-of-generation
  // token or a full context). Each piece of finished UTF-8 text goes to on_text as soon as
  // it exists. Generated tokens are fed back, so the cache ends holding the whole exchange
  // except the end token. Ctrl-C throws Interrupted (util/interrupt.h).
  // after_prefill (optional) runs once the prompt is in the cache, before decoding.
  GenerationStats generate(const std::vector<int32_t>& prompt, int n_predict, Sampler& sampler,
                           const std::function<void(const std::string&)>& on_text,
                           const std::function<void()>& after_prefill = nullptr);

 private:
  std::vector<float> feed_with(const std::vector<int32_t>& ids, KVObserver* observer);
  // Makes `strategy` the one the forward pass runs, with a fresh observer.
  void use_strategy(std::unique_ptr<KVStrategy> strategy);

  bool progress_;
  std::string template_name_;
  std::unique_ptr<ModelFile> file_;
  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KVCache> cache_;
  std::unique_ptr<KVStrategy> strategy_;
  std::unique_ptr<KVObserver> observer_;  // runs strategy_ inside the forward pass
  std::vector<int32_t> history_;  // every token fed so far (for the repetition penalty)
  // The checkpoint's copy of the strategy and length of the history; null: none.
  std::unique_ptr<KVStrategy> marked_strategy_;
  size_t marked_history_ = 0;
  struct SharedPrefill {
    std::vector<int32_t> ids;
    std::unique_ptr<KVCache> cache;  // the full prefill
    std::vector<Needs> needs;
    std::vector<std::vector<Observation>> observations;  // [needs entry][layer]
    std::vector<float> logits;
    double seconds = 0;  // the prefill's wall time
  };
  std::unique_ptr<SharedPrefill> shared_;
};

// Multi-line summary of the cache: method, bytes held vs full, kept lengths per layer
// (min / mean / max over KV heads), and the strategy's own report.
std::string kv_stats_text(const KVCache& cache, const KVStrategy& strategy);
// Resident memory of this process (Linux /proc), 0 when unknown.
size_t resident_bytes();
// The part of it mapped in 2 MiB pages (anonymous and file-backed), 0 when unknown: the
// sum of the huge-page fields of /proc/self/smaps_rollup, or of the text given.
size_t huge_page_bytes();
size_t huge_page_bytes(std::istream& smaps_rollup);

}  // namespace kvlm
