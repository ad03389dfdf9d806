// snapkv: the last `window` prompt tokens vote for the earlier tokens they attend to.
//   Per layer, right after its prefill attention: score every prefix slot of a KV head by
//   the window queries' attention (softmax over the full causal row), reduced over the
//   query heads of the GQA group, pooled along the prefix (kernel, max or avg); keep the
//   top budget - window prefix slots plus the window. Every head keeps the same count.
//   Decode: nothing (each head grows by one row per token).
// Paper: SnapKV: LLM Knows What You are Looking for Before Generation (arXiv 2404.14469).
// kvlm's choices (the reasons, and the worked examples the tests check: snapkv.md):
//  - window attention is the MEAN over the window queries (the paper sums; same ranking);
//    fp32 throughout.
//  - GQA: scores are reduced over the group (gqa=mean default, or max) before pooling, and
//    one set is kept per KV head. The official per-query-head selection is not offered:
//    kvlm stores one set of rows per KV head, and copying K/V per query head would undo
//    GQA's memory saving.
//  - The budget counts the window; a head of length <= budget is left whole. Ties go to
//    the lower index; kept rows stay in position order.
//  - ratio=r: budget = ceil(r * tokens seen). If that is <= window, only the window is kept.
//  - A continued prefill (next chat turn) re-selects over all slots with the new window.
#include "kv/strategies/strategies.h"
#include "kv/window_scores.h"

namespace kvlm {

namespace {

// The paper's LongBench runs: window 32, kernel 7, max pooling.
constexpr int kDefaultBudget = kWindowMethodsBudget;
constexpr VotingParams kDefaultVoting = kSnapKVVoting;

class SnapKVStrategy final : public CopyableStrategy<SnapKVStrategy> {
 public:
  SnapKVStrategy(Budget budget, VotingParams voting) : budget_(budget), voting_(voting) {}

  std::string name() const override {
    return "snapkv:" + budget_.spec() + "," + voting_spec(voting_, true);
  }

  Needs needs() const override { return {.window = voting_.window}; }

  void on_prefill_layer(KVCache& cache, const Observation& obs) override {
    const int prefix_budget = budget_.resolve(obs.n_tokens) - obs.window;
    for (int h = 0; h < cache.n_kv_heads(); h++)
      keep_top_prefix(cache, obs, h, prefix_budget, voting_);
  }

 private:
  Budget budget_;
  VotingParams voting_;
};

}  // namespace

MethodInfo snapkv_method_info() {
  return {"snapkv",
          "the last window's attention votes for prefix tokens (pooled); top budget per head",
          voting_param_rows(kDefaultVoting, true, ""),
          "SnapKV: LLM Knows What You are Looking for Before Generation (arXiv 2404.14469)",
          {.budgeted = true, .observes = true, .cache_positions = true}};
}

std::unique_ptr<KVStrategy> make_snapkv(const Params& params) {
  params.reject_unknown("snapkv", voting_param_keys(true));
  const Budget budget = read_budget(params, kDefaultBudget);
  const VotingParams voting = read_voting_params("snapkv", params, kDefaultVoting);
  check_window_below_budget("snapkv", budget, voting.window);
  return std::make_unique<SnapKVStrategy>(budget, voting);
}

}  // namespace kvlm
