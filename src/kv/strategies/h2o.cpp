// h2o: Heavy-Hitter Oracle. Keeps the tokens that have received the most attention so far
// (heavy hitters) plus the most recent tokens.
//   Score of a slot: attention probability it has received, summed over queries, mean over
//   the query heads of its GQA group.
//   Prefill: score from every prompt query (obs=full, the paper) or from the last `window`
//   queries (obs=window, cheaper); keep the newest budget - heavy slots and the `heavy`
//   best-scoring older ones.
//   Decode: each new token adds its attention to every live slot's score; when a head
//   exceeds budget + slack rows, the same rule cuts it back to budget.
// Paper: H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language
// Models (arXiv 2306.14048).
// kvlm's choices (the reasons, and the worked examples the tests check: h2o.md):
//  - heavy is a share of the budget: heavy slots = ceil(heavy * budget), the rest is the
//    recent window (budget 3, heavy=0.5 -> 2 heavy + 1 recent).
//  - obs=window sums the window queries' attention (mean x window) so prefill scores are
//    on the same scale as the per-token sums added during decode.
//  - A new prompt on a fresh cache resets all scores; a continued prefill (next chat turn)
//    adds the new queries' attention to the scores the kept slots already have.
#include <cmath>
#include <stdexcept>

#include "kv/eviction.h"
#include "kv/scoring.h"
#include "kv/strategies/strategies.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

constexpr int kDefaultBudget = 128;
constexpr double kDefaultHeavy = 0.5;  // the paper splits the cache evenly: heavy = recent
constexpr int kDefaultWindow = 32;     // obs=window: the SnapKV-family observation window
constexpr int kDefaultSlack = 0;

class H2OStrategy final : public CopyableStrategy<H2OStrategy> {
 public:
  H2OStrategy(Budget budget, double heavy, bool full_obs, int window, int slack)
      : spec_budget_(budget), heavy_(heavy), full_obs_(full_obs), window_(window),
        slack_(slack) {}

  std::string name() const override {
    return "h2o:" + spec_budget_.spec() + ",heavy=" + format_number(heavy_) +
           (full_obs_ ? ",obs=full" : ",obs=window,window=" + std::to_string(window_)) +
           ",slack=" + std::to_string(slack_);
  }

  Needs needs() const override {
    Needs n;
    if (full_obs_) n.all_queries = true;
    else n.window = window_;
    n.decode_attention = true;
    return n;
  }

  // A fresh prompt fixes the budget for the conversation and starts the scores over.
  void begin_sequence(const KVCache&, int prompt_tokens) override {
    budget_ = std::max(1, spec_budget_.resolve(prompt_tokens));
    scores_.clear();
  }

  void on_prefill_layer(KVCache& cache, const Observation& obs) override {
    const auto& rows = full_obs_ ? obs.query_attention_sum : obs.window_attention;
    const float scale = full_obs_ ? 1.0f : float(obs.window);
    for (int h = 0; h < cache.n_kv_heads(); h++) {
      std::vector<float>& score = accumulate(cache, obs.layer, h, rows, scale);
      if (int(score.size()) > budget_) cut(cache, obs.layer, h, score);
    }
  }

  bool compresses_while_decoding() const override { return true; }

  void on_decode_step(KVCache& cache, const DecodeObservation& obs) override {
    if (int(obs.attention.size()) != cache.n_layers())
      throw std::logic_error("h2o: decode step without attention for every layer");
    for (int l = 0; l < cache.n_layers(); l++)
      for (int h = 0; h < cache.n_kv_heads(); h++) {
        std::vector<float>& score = accumulate(cache, l, h, obs.attention[l], 1.0f);
        if (over_budget(int(score.size()), budget_, slack_)) cut(cache, l, h, score);
      }
  }

 private:
  int recent() const { return budget_ - int(std::ceil(heavy_ * budget_ - 1e-9)); }

  // Adds scale x (mean over the GQA group of `per_query_head`) to the head's scores.
  std::vector<float>& accumulate(const KVCache& cache, int layer, int head,
                                 const std::vector<std::vector<float>>& per_query_head,
                                 float scale) {
    std::vector<float>& score = scores_.aligned(cache, layer, head, 0.0f);
    const int n_kv = cache.n_kv_heads();
    const int group = int(per_query_head.size()) / n_kv;
    if (group == 0 || int(per_query_head.size()) % n_kv != 0 ||
        per_query_head[size_t(head) * group].size() != score.size())
      throw std::logic_error("h2o: attention observation does not match the cache of layer " +
                             std::to_string(layer));
    const std::vector<float> add =
        group_scores(per_query_head, head, group, int(score.size()), GroupReduce::Mean);
    for (size_t j = 0; j < score.size(); j++) score[j] += scale * add[j];
    return score;
  }

  void cut(KVCache& cache, int layer, int head, const std::vector<float>& score) {
    scores_.compact(cache, layer, head, best_with_recent(score, budget_, recent()));
  }

  Budget spec_budget_;
  double heavy_;
  bool full_obs_;
  int window_, slack_;
  int budget_ = 0;     // tokens per head for the current conversation
  SlotValues scores_;  // accumulated attention per live slot
};

}  // namespace

MethodInfo h2o_method_info() {
  return {"h2o",
          "heavy hitters (most attention received so far) + recent window, maintained while decoding",
          {{"budget", std::to_string(kDefaultBudget) + " (or ratio=r)"},
           {"heavy", format_number(kDefaultHeavy)},
           {"obs", "full (or window)"},
           {"window", std::to_string(kDefaultWindow) + " (obs=window only)"},
           {"slack", std::to_string(kDefaultSlack)}},
          "H2O: Heavy-Hitter Oracle for Efficient Generative Inference of Large Language Models "
          "(arXiv 2306.14048)",
          {.budgeted = true, .observes = true, .cache_positions = true}};
}

std::unique_ptr<KVStrategy> make_h2o(const Params& params) {
  params.reject_unknown("h2o", {"budget", "ratio", "heavy", "obs", "window", "slack"});
  const Budget budget = read_budget(params, kDefaultBudget);
  const double heavy = params.get_double("heavy", kDefaultHeavy, 0.0, 1.0);
  const bool full_obs = params.get_choice("obs", {"full", "window"}) == "full";
  if (full_obs && params.values.count("window"))
    throw std::invalid_argument("--kv h2o: window= applies only with obs=window");
  const int window = params.get_int("window", kDefaultWindow, 1);
  const int slack = params.get_int("slack", kDefaultSlack, 0);
  return std::make_unique<H2OStrategy>(budget, heavy, full_obs, window, slack);
}

}  // namespace kvlm
