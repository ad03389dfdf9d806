// streaming: StreamingLLM. Keeps the first `sinks` tokens (attention sinks: the softmax
// parks surplus attention there) and a window of the most recent tokens; everything in
// between is evicted. No scores needed.
//   Prefill (per layer, per KV head): keep [0, sinks) U the last budget - sinks slots.
//   Decode: when a head exceeds budget + slack rows, cut it back to the same shape.
// Paper: Efficient Streaming Language Models with Attention Sinks (arXiv 2309.17453).
// kvlm's choices (the reasons, and the worked examples the tests check: streaming.md):
//  - pos=cache (the default) numbers positions inside the cache, as the paper does: a
//    token's position is its slot, and keys that slide towards the front are turned back
//    to their new slot (KVCache, Backend::rotate_keys). Positions then stay below
//    budget however long a chat or text runs, which is the point of the method: run and
//    chat go on past --ctx-size with bounded memory. pos=original keeps each token's index
//    in the sequence, like the other methods' defaults, for comparing what methods keep
//    at equal positions; it stops at --ctx-size.
//  - A budget counts the sinks. With ratio=r the budget is fixed per prompt
//    (ceil(r * prompt length)); if that leaves no room beyond the sinks, fewer sinks are
//    kept so the newest token always stays.
#include <algorithm>
#include <stdexcept>

#include "kv/eviction.h"
#include "kv/strategies/strategies.h"

namespace kvlm {

namespace {

constexpr int kDefaultBudget = 128;
constexpr int kDefaultSinks = 4;  // the paper's 4 initial tokens
constexpr int kDefaultSlack = 0;

class StreamingStrategy final : public CopyableStrategy<StreamingStrategy> {
 public:
  StreamingStrategy(Budget budget, int sinks, int slack)
      : spec_budget_(budget), sinks_(sinks), slack_(slack) {}

  std::string name() const override {
    return "streaming:" + spec_budget_.spec() + ",sinks=" + std::to_string(sinks_) +
           ",slack=" + std::to_string(slack_);
  }

  // A fresh prompt fixes the budget for the conversation.
  void begin_sequence(const KVCache&, int prompt_tokens) override {
    budget_ = std::max(1, spec_budget_.resolve(prompt_tokens));
  }

  void on_prefill_layer(KVCache& cache, const Observation& obs) override {
    for (int h = 0; h < cache.n_kv_heads(); h++) cut(cache, obs.layer, h);
  }

  bool compresses_while_decoding() const override { return true; }

  void on_decode_step(KVCache& cache, const DecodeObservation&) override {
    for (int l = 0; l < cache.n_layers(); l++)
      for (int h = 0; h < cache.n_kv_heads(); h++)
        if (over_budget(cache.length(l, h), budget_, slack_)) cut(cache, l, h);
  }

 private:
  void cut(KVCache& cache, int layer, int head) const {
    const int len = cache.length(layer, head);
    if (len <= budget_) return;
    const int sinks = std::min(sinks_, budget_ - 1);
    cache.compact(layer, head, sinks_and_recent(len, sinks, budget_ - sinks));
  }

  Budget spec_budget_;
  int sinks_, slack_;
  int budget_ = 0;  // tokens per head for the current conversation
};

}  // namespace

MethodInfo streaming_method_info() {
  return {"streaming",
          "attention sinks + recent window (StreamingLLM); positions inside the cache by default",
          {{"budget", std::to_string(kDefaultBudget) + " (or ratio=r)"},
           {"sinks", std::to_string(kDefaultSinks)},
           {"slack", std::to_string(kDefaultSlack)}},
          "Efficient Streaming Language Models with Attention Sinks (arXiv 2309.17453)",
          {.budgeted = true,
           .cache_positions = true,
           .cache_positions_by_default = true}};
}

std::unique_ptr<KVStrategy> make_streaming(const Params& params) {
  params.reject_unknown("streaming", {"budget", "ratio", "sinks", "slack"});
  const Budget budget = read_budget(params, kDefaultBudget);
  const int sinks = params.get_int("sinks", kDefaultSinks, 0);
  const int slack = params.get_int("slack", kDefaultSlack, 0);
  if (budget.ratio == 0 && sinks >= budget.tokens)
    throw std::invalid_argument("--kv streaming: sinks=" + std::to_string(sinks) +
                                " leaves no room for recent tokens in budget=" +
                                std::to_string(budget.tokens) + " (sinks must be < budget)");
  return std::make_unique<StreamingStrategy>(budget, sinks, slack);
}

}  // namespace kvlm
