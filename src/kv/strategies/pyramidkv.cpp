// pyramidkv: snapkv's window voting with a budget that shrinks from the bottom layer to the
// top (lower layers spread their attention, upper layers focus it).
//   Prefix budget of layer l of L, with P = budget - window: min = P // beta,
//   max = 2P - min (clamped to the prompt's prefix, then min = 2P - max), and
//   B_l = floor(max - l * (max - min) / (L - 1)): an arithmetic line from about 2P down to
//   P / beta whose total never exceeds L * P. Each KV head of layer l keeps its top B_l
//   prefix slots (snapkv's scores) plus the window. Decode: nothing.
// Paper: PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling
// (arXiv 2406.02069).
// kvlm's choices (the reasons, and the worked examples the tests check: pyramidkv.md):
//  - Scoring, GQA reduction (mean default, one set per KV head; no per-query-head mode
//    because kvlm stores one set per KV head), window, ties and ratio= as snapkv.
//  - Default window 32 like the other methods (the official runs use 8: window=8).
//  - max < min (tiny prompts) falls back to the uniform P; one layer gets P.
//  - faithful=1: KVCache-Factory's arithmetic: the step (max - min) // (L - 1) is floored
//    first, so the total may exceed L * P (4 layers, P = 32: [63, 43, 23, 3]); a prompt
//    shorter than the budget keeps everything; one shorter than 2P is uniform.
//  - The pyramid is drawn for the tokens seen (the prompt on a fresh cache); on a continued
//    prefill a layer whose prefix is within its B_l is left whole.
#include "kv/strategies/strategies.h"
#include "kv/window_scores.h"

namespace kvlm {

namespace {

// KVCache-Factory's defaults, except the window (see above).
constexpr int kDefaultBudget = kWindowMethodsBudget;
constexpr VotingParams kDefaultVoting = kSnapKVVoting;
constexpr int kDefaultBeta = 20;

class PyramidKVStrategy final : public CopyableStrategy<PyramidKVStrategy> {
 public:
  PyramidKVStrategy(Budget budget, VotingParams voting, int beta, bool faithful)
      : budget_(budget), voting_(voting), beta_(beta), faithful_(faithful) {}

  std::string name() const override {
    return "pyramidkv:" + budget_.spec() + "," + voting_spec(voting_, true) +
           ",beta=" + std::to_string(beta_) + ",faithful=" + (faithful_ ? "1" : "0");
  }

  Needs needs() const override { return {.window = voting_.window}; }

  void on_prefill_layer(KVCache& cache, const Observation& obs) override {
    const std::vector<int> layer_budgets = pyramid_prefix_budgets(
        cache.n_layers(), budget_.resolve(obs.n_tokens) - obs.window, obs.n_tokens, obs.window,
        beta_, faithful_ ? PyramidRule::PyramidKV : PyramidRule::Kvlm);
    for (int h = 0; h < cache.n_kv_heads(); h++)
      keep_top_prefix(cache, obs, h, layer_budgets[obs.layer], voting_);
  }

 private:
  Budget budget_;
  VotingParams voting_;
  int beta_;
  bool faithful_;
};

}  // namespace

MethodInfo pyramidkv_method_info() {
  MethodInfo info = {"pyramidkv",
          "snapkv's window voting with per-layer budgets shrinking linearly up the layers",
          voting_param_rows(kDefaultVoting, true, "; average per layer"),
          "PyramidKV: Dynamic KV Cache Compression based on Pyramidal Information Funneling "
          "(arXiv 2406.02069)",
          {.budgeted = true, .observes = true, .cache_positions = true}};
  info.params.push_back({"beta", std::to_string(kDefaultBeta) +
                                    " (the pyramid applies at every budget; kvpress's PyramidKV "
                                    "falls back to uniform budgets unless its smallest layer "
                                    "budget reaches the window)"});
  info.params.push_back({"faithful", "0 (1 = KVCache-Factory's arithmetic)"});
  return info;
}

std::unique_ptr<KVStrategy> make_pyramidkv(const Params& params) {
  std::vector<std::string> keys = voting_param_keys(true);
  keys.insert(keys.end(), {"beta", "faithful"});
  params.reject_unknown("pyramidkv", keys);
  const Budget budget = read_budget(params, kDefaultBudget);
  const VotingParams voting = read_voting_params("pyramidkv", params, kDefaultVoting);
  check_window_below_budget("pyramidkv", budget, voting.window);
  const int beta = params.get_int("beta", kDefaultBeta, 1);
  const bool faithful = params.get_choice("faithful", {"0", "1"}) == "1";
  return std::make_unique<PyramidKVStrategy>(budget, voting, beta, faithful);
}

}  // namespace kvlm
