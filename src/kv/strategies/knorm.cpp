// knorm: the L2-norm strategy. In most layers and heads, keys with a small L2 norm receive
// high attention, so the key norm alone ranks tokens: no attention scores, any attention
// kernel works.
//   Prefill (layers >= skip_layers, per KV head): keep the newest `protect` slots and the
//   budget - protect slots whose cached keys have the smallest norms (ties: lower index).
//   Decode (decode=1): each step observes the new key's norm (one per layer and KV head);
//   when a head exceeds budget + slack rows, the same rule ranks every slot and cuts back
//   to budget. decode=0: nothing is evicted while decoding; the next prefill (a chat
//   turn) cuts again.
// Paper: A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression
// (arXiv 2406.11430); official code github.com/alessiodevoto/l2compress.
// kvlm's choices (the reasons, and the worked examples the tests check: knorm.md):
//  - skip_layers=2: the official README and scripts use skip_layers=[0, 1].
//  - Norms of the cached keys, i.e. after RoPE, as the official code does (torch.norm of
//    the Hugging Face cache's keys, which are stored rotated). RoPE rotates coordinate
//    pairs, so every norm and hence the ranking is the same before and after it.
//  - decode=1 by default: the paper's rule applied at every step (its language-modelling
//    evaluation re-ranks all tokens each step), which keeps memory bounded while
//    generating; its passkey and needle scripts compress once after prefill, which is
//    decode=0.
#include <algorithm>
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
constexpr bool kDefaultDecode = true;

class KNormStrategy final : public CopyableStrategy<KNormStrategy> {
 public:
  KNormStrategy(Budget budget, int skip_layers, int protect, int slack, bool decode)
      : spec_budget_(budget), skip_layers_(skip_layers), protect_(protect), slack_(slack),
        decode_(decode) {}

  std::string name() const override {
    return "knorm:" + spec_budget_.spec() + ",skip_layers=" + std::to_string(skip_layers_) +
           ",protect=" + std::to_string(protect_) + ",slack=" + std::to_string(slack_) +
           ",decode=" + (decode_ ? "1" : "0");
  }

  Needs needs() const override {
    Needs n;
    n.key_norms = true;
    n.decode_key_norms = decode_;
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
      std::vector<float>& norm = norms_.aligned(cache, obs.layer, h, 0.0f);
      if (obs.key_norms[h].size() != norm.size())
        throw std::logic_error("knorm: key norms do not match the cache of layer " +
                               std::to_string(obs.layer));
      norm = obs.key_norms[h];  // a prefill observes every slot, old ones included
      if (int(norm.size()) > budget_) cut(cache, obs.layer, h, norm);
    }
  }

  bool compresses_while_decoding() const override { return decode_; }

  void on_decode_step(KVCache& cache, const DecodeObservation& obs) override {
    if (!decode_) return;
    if (int(obs.key_norms.size()) != cache.n_layers())
      throw std::logic_error("knorm: a decode step without the new keys' norms");
    for (int l = skip_layers_; l < cache.n_layers(); l++)
      for (int h = 0; h < cache.n_kv_heads(); h++) {
        // The new token is the head's last slot; every earlier slot has its norm already.
        std::vector<float>& norm = norms_.aligned(cache, l, h, obs.key_norms[l][h]);
        if (over_budget(cache.length(l, h), budget_, slack_)) cut(cache, l, h, norm);
      }
  }

 private:
  // Keeps `budget_` slots: the newest `protect`, then the smallest norms.
  void cut(KVCache& cache, int layer, int head, const std::vector<float>& norm) {
    const int len = int(norm.size());
    const int protect = std::min(protect_, budget_);
    std::vector<float> score(len - protect);  // higher is kept
    for (size_t j = 0; j < score.size(); j++) score[j] = -norm[j];
    norms_.compact(cache, layer, head, with_window(top_k(score, budget_ - protect), len, protect));
  }

  Budget spec_budget_;
  int skip_layers_, protect_, slack_;
  bool decode_;
  int budget_ = 0;    // tokens per head for the current conversation
  SlotValues norms_;  // key norm per live slot
};

}  // namespace

MethodInfo knorm_method_info() {
  return {"knorm",
          "keep the keys with the smallest L2 norm (no attention scores needed)",
          {{"budget", std::to_string(kDefaultBudget) + " (or ratio=r)"},
           {"skip_layers", std::to_string(kDefaultSkipLayers)},
           {"protect", std::to_string(kDefaultProtect)},
           {"slack", std::to_string(kDefaultSlack)},
           {"decode", kDefaultDecode ? "1 (0: evict at prefill only)" : "0 (1: at every step too)"}},
          "A Simple and Effective L2 Norm-Based Strategy for KV Cache Compression "
          "(arXiv 2406.11430)",
          {.budgeted = true, .observes = true, .cache_positions = true}};
}

std::unique_ptr<KVStrategy> make_knorm(const Params& params) {
  params.reject_unknown("knorm", {"budget", "ratio", "skip_layers", "protect", "slack", "decode"});
  const Budget budget = read_budget(params, kDefaultBudget);
  const int skip_layers = params.get_int("skip_layers", kDefaultSkipLayers, 0);
  const int protect = params.get_int("protect", kDefaultProtect, 0);
  const int slack = params.get_int("slack", kDefaultSlack, 0);
  if (budget.ratio == 0 && protect > budget.tokens)
    throw std::invalid_argument("--kv knorm: protect=" + std::to_string(protect) +
                                " exceeds budget=" + std::to_string(budget.tokens));
  const bool decode = params.get_choice("decode", {kDefaultDecode ? "1" : "0", kDefaultDecode ? "0" : "1"}) == "1";
  return std::make_unique<KNormStrategy>(budget, skip_layers, protect, slack, decode);
}

}  // namespace kvlm
