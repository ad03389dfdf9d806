// knorm: the L2-norm strategy. In most layers and heads, keys with a small L2 norm receive
// high attention, so the key norm alone ranks tokens: no attention scores, any attention
// kernel works.
//   Prefill (layers >= skip_layers, per KV head): keep the newest `protect` slots and the
//   budget - protect slots whose cached keys have the smallest norms (ties: lower index).
//   Decode: when a head exceeds budget + slack rows, evict the largest-norm slots down to
//   budget.
// Paper: A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression
// (arXiv 2406.11430); official code github.com/alessiodevoto/l2compress.
// kvlm's choices (the reasons, and the worked examples the tests check: knorm.md):
//  - skip_layers=2: the official README and scripts use skip_layers=[0, 1].
//  - Norms of the cached keys, i.e. after RoPE, as the official code does (torch.norm of
//    the Hugging Face cache's keys, which are stored rotated). RoPE rotates coordinate
//    pairs, so every norm and hence the ranking is the same before and after it.
//  - Decode: the forward pass observes key norms at prefill only, so a token decoded since
//    the last prefill has no norm yet. Such tokens count as recent: a decode-time cut
//    evicts the largest-norm slots with a known norm first, and only when none is left the
//    oldest unknown-norm ones. An answer therefore displaces prompt tokens in norm order;
//    the next prefill (a chat turn) observes every slot and ranks all of them by norm.
//    The paper's per-step rule would need the new token's key norm per layer and KV head
//    at decode, which kvlm's Needs cannot ask for yet.
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "kv/eviction.h"
#include "kv/scoring.h"
#include "kv/strategies/strategies.h"

namespace kvlm {

namespace {

constexpr int kDefaultBudget = 128;
constexpr int kDefaultSkipLayers = 2;  // official code: skip_layers=[0, 1]
constexpr int kDefaultProtect = 0;
constexpr int kDefaultSlack = 0;
// The norm of a slot decoded since the last prefill.
constexpr float kUnknownNorm = std::numeric_limits<float>::quiet_NaN();

class KNormStrategy final : public CopyableStrategy<KNormStrategy> {
 public:
  KNormStrategy(Budget budget, int skip_layers, int protect, int slack)
      : spec_budget_(budget), skip_layers_(skip_layers), protect_(protect), slack_(slack) {}

  std::string name() const override {
    return "knorm:" + spec_budget_.spec() + ",skip_layers=" + std::to_string(skip_layers_) +
           ",protect=" + std::to_string(protect_) + ",slack=" + std::to_string(slack_);
  }

  Needs needs() const override {
    Needs n;
    n.key_norms = true;
    return n;
  }

  // A fresh prompt fixes the budget for the conversation and forgets every norm.
  void begin_sequence(const KVCache&, int prompt_tokens) override {
    budget_ = std::max(1, spec_budget_.resolve(prompt_tokens));
    norms_.clear();
  }

  void on_prefill_layer(KVCache& cache, const Observation& obs) override {
    if (obs.layer < skip_layers_) return;
    if (int(obs.key_norms.size()) != cache.n_kv_heads())
      throw std::logic_error("knorm: prefill without key norms for layer " +
                             std::to_string(obs.layer));
    for (int h = 0; h < cache.n_kv_heads(); h++) {
      std::vector<float>& norm = norms_.aligned(cache, obs.layer, h, kUnknownNorm);
      if (obs.key_norms[h].size() != norm.size())
        throw std::logic_error("knorm: key norms do not match the cache of layer " +
                               std::to_string(obs.layer));
      norm = obs.key_norms[h];  // a prefill observes every slot, old ones included
      if (int(norm.size()) > budget_) cut(cache, obs.layer, h, norm);
    }
  }

  void on_decode_step(KVCache& cache, const DecodeObservation&) override {
    for (int l = skip_layers_; l < cache.n_layers(); l++)
      for (int h = 0; h < cache.n_kv_heads(); h++)
        if (over_budget(cache.length(l, h), budget_, slack_))
          cut(cache, l, h, norms_.aligned(cache, l, h, kUnknownNorm));
  }

 private:
  // Keeps `budget_` slots: the newest `protect`, then unknown-norm slots (newest first),
  // then the smallest known norms.
  void cut(KVCache& cache, int layer, int head, const std::vector<float>& norm) {
    const int len = int(norm.size());
    const int protect = std::min(protect_, budget_);
    const int candidates = len - protect, k = budget_ - protect;
    std::vector<int32_t> unknown;
    for (int j = 0; j < candidates; j++)
      if (std::isnan(norm[j])) unknown.push_back(j);
    std::vector<int32_t> keep;
    if (int(unknown.size()) >= k) {
      keep.assign(unknown.end() - k, unknown.end());
    } else {
      std::vector<float> score(candidates);  // higher is kept
      for (int j = 0; j < candidates; j++)
        score[j] = std::isnan(norm[j]) ? INFINITY : -norm[j];
      keep = top_k(score, k);
    }
    norms_.compact(cache, layer, head, with_window(std::move(keep), len, protect));
  }

  Budget spec_budget_;
  int skip_layers_, protect_, slack_;
  int budget_ = 0;    // tokens per head for the current conversation
  SlotValues norms_;  // key norm per live slot (kUnknownNorm: decoded since the last prefill)
};

}  // namespace

MethodInfo knorm_method_info() {
  return {"knorm",
          "keep the keys with the smallest L2 norm (no attention scores needed)",
          {{"budget", std::to_string(kDefaultBudget) + " (or ratio=r)"},
           {"skip_layers", std::to_string(kDefaultSkipLayers)},
           {"protect", std::to_string(kDefaultProtect)},
           {"slack", std::to_string(kDefaultSlack)}},
          "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression "
          "(arXiv 2406.11430)",
          {.budgeted = true, .observes = true, .evicts_while_decoding = true}};
}

std::unique_ptr<KVStrategy> make_knorm(const Params& params) {
  params.reject_unknown("knorm", {"budget", "ratio", "skip_layers", "protect", "slack"});
  const Budget budget = read_budget(params, kDefaultBudget);
  const int skip_layers = params.get_int("skip_layers", kDefaultSkipLayers, 0);
  const int protect = params.get_int("protect", kDefaultProtect, 0);
  const int slack = params.get_int("slack", kDefaultSlack, 0);
  if (budget.ratio == 0 && protect > budget.tokens)
    throw std::invalid_argument("--kv knorm: protect=" + std::to_string(protect) +
                                " exceeds budget=" + std::to_string(budget.tokens));
  return std::make_unique<KNormStrategy>(budget, skip_layers, protect, slack);
}

}  // namespace kvlm
