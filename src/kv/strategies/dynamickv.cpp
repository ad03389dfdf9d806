// dynamickv: task-aware layer budgets, set from the prompt's own window scores while the
// prefill moves up the layers.
//   Per layer: snapkv's pooled window scores; every KV head first keeps its top
//   bs = rmax * base prefix candidates (base = budget - window) plus the window, and the
//   layer's pooled scores are kept. After every `every` layers, and after the last, the N
//   layers so far are rebalanced from one global top base*H*N over all their scores:
//     cnt_j = (entries of layer j in it) // N; after the last layer the newest layer's
//     count tops the sum up to base*H; z_j = bs * cnt_j / sum(cnt);
//     Z_j = z_j * base*L / sum(z); the newest layer gets base*L - sum(Z)  (all floors)
//   and every head of layer j is trimmed to its top Z_j (freed at once). Intermediate
//   rebalances hand the whole model budget to the layers seen so far; the last one leaves
//   base*L prefix tokens per KV head over the L layers. Decode: nothing.
// Paper: DynamicKV: Task-Aware Adaptive KV Cache Compression for Long Context LLMs
// (arXiv 2412.14838).
// kvlm's choices (the reasons, and the worked examples the tests check: dynamickv.md):
//  - Z_j = min(Z_j, rows layer j still holds) in every mode: the official code can hand a
//    layer more than it holds and then duplicates window rows (a bug, not the method).
//    A clamped layer's excess is not handed on, so the total can end below base*L.
//  - The last layer is always rebalanced (the official code skips it when L % every != 0,
//    e.g. the default model's 30 layers with every=4); faithful=1 skips it too, leaving
//    the tail layers at bs candidates.
//  - Scores as snapkv: mean over the window queries; GQA reduced by the mean per KV head
//    before pooling (the official code scores and stores per query head); budgets are per
//    KV head. Ties in the global top-k: lower layer, then lower head, then lower index.
//  - Integer arithmetic where the official code uses float32 (differences only at exact
//    boundaries). bs = min(rmax * base, tokens seen - window). Degenerate tiny budgets:
//    if every cnt_j floors to 0 the unfloored counts are used; if every z_j is 0 the
//    newest layer gets the whole base*L (no division by zero).
//  - A layer may end with only its window (Z_j = 0); a head never has 0 rows.
//  - ratio=r: budget = ceil(r * tokens seen) for the whole prefill call; at or below the
//    window, every layer keeps only its window (as snapkv).
//  - A prompt of <= budget tokens is left whole. Each prefill call (a new prompt, or the
//    next chat turn, re-selected over all slots with its own window) starts a fresh
//    score history.
// Peak memory during prefill, rows per KV head: base*L + (every-1)*bs + L*window + n (the
// layers rebalanced so far, up to every-1 layers of candidates, the windows, and the layer
// being prefilled, which holds all n tokens); SnapKV's is budget*(L-1) + n. Host memory:
// the pooled scores, 4*L*H*(n - window) bytes, plus the held indices, 4*L*H*bs bytes; a
// rebalance briefly needs twice the scores again (a flat copy and top-k's index).
// Default model (30 layers, 3 KV heads, 512 B per row for K+V in fp32), n = 8192,
// budget=128, window=8, rmax=10, every=4: base 120, bs 1200 -> at most 15632 rows per
// head = 22.9 MiB of KV (SnapKV 17.4 MiB, full cache 360 MiB, after prefill 5.6 MiB),
// plus 2.8 MiB of scores and 0.4 MiB of indices.
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <stdexcept>

#include "kv/strategies/strategies.h"
#include "kv/window_scores.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

// The official run scripts' settings (Llama-3: average pooling; Mistral/Qwen2: pool=max).
constexpr int kDefaultBudget = kWindowMethodsBudget;
constexpr VotingParams kDefaultVoting = {8, kSnapKVVoting.kernel, Pool::Avg, GroupReduce::Mean};
constexpr double kDefaultRmax = 10;  // candidates per layer = rmax * (budget - window)
constexpr int kDefaultEvery = 4;     // rebalance every 4 layers (hard-coded officially)

class DynamicKVStrategy final : public CopyableStrategy<DynamicKVStrategy> {
 public:
  DynamicKVStrategy(Budget budget, VotingParams voting, double rmax, int every, bool faithful)
      : budget_(budget), voting_(voting), rmax_(rmax), every_(every), faithful_(faithful) {}

  std::string name() const override {
    return "dynamickv:" + budget_.spec() + "," + voting_spec(voting_, false) +
           ",rmax=" + format_number(rmax_) + ",every=" + std::to_string(every_) +
           ",faithful=" + (faithful_ ? "1" : "0");
  }

  Needs needs() const override { return {.window = voting_.window}; }

  void on_prefill_layer(KVCache& cache, const Observation& obs) override {
    if (obs.layer == 0) {  // a new prefill call: scores of an earlier call are stale
      pooled_.clear();
      held_.clear();
    }
    const int budget = budget_.resolve(obs.n_tokens);
    if (obs.n_tokens <= budget) return;  // every layer fits
    const int n_heads = cache.n_kv_heads();
    const int base = budget - obs.window;
    if (base <= 0) {  // ratio= leaves no more than the window: keep only it, as snapkv does
      for (int h = 0; h < n_heads; h++) keep_with_window(cache, obs.layer, h, {}, obs.window);
      return;
    }
    if (int(pooled_.size()) != obs.layer * n_heads)
      throw std::logic_error("dynamickv: prefill layers must arrive in order from layer 0");
    const int candidates = int(std::min<double>(rmax_ * base, obs.n_tokens - obs.window));
    for (int h = 0; h < n_heads; h++) {
      const int prefix_len = cache.length(obs.layer, h) - obs.window;
      pooled_.push_back(prefix_scores(obs, n_heads, h, prefix_len, voting_));
      held_.push_back(top_k(pooled_.back(), candidates));
      if (int(held_.back().size()) < prefix_len)
        keep_with_window(cache, obs.layer, h, held_.back(), obs.window);
    }
    const bool last = obs.layer == cache.n_layers() - 1;
    if ((obs.layer + 1) % every_ == 0 || (last && !faithful_))
      rebalance(cache, obs.window, base, candidates, last);
    if (last) {  // the prefill is done: give the score history back
      std::vector<std::vector<float>>().swap(pooled_);
      std::vector<std::vector<int32_t>>().swap(held_);
    }
  }

 private:
  // Sets the prefix budget of every layer so far from one global top-k over their pooled
  // scores, and trims them to it.
  void rebalance(KVCache& cache, int window, int base, int candidates, bool last) {
    const int n_heads = cache.n_kv_heads();
    const int n_seen = int(pooled_.size()) / n_heads;
    const int64_t model_budget = int64_t(base) * cache.n_layers();  // prefix rows per KV head
    const int64_t layer_budget = int64_t(base) * n_heads;           // prefix rows per layer

    const std::vector<int> head_counts =
        top_k_counts(pooled_, int(std::min<int64_t>(layer_budget * n_seen, INT32_MAX)));
    std::vector<int64_t> counts(n_seen, 0);
    for (size_t s = 0; s < head_counts.size(); s++) counts[s / n_heads] += head_counts[s];
    std::vector<int64_t> shares(n_seen);
    for (int j = 0; j < n_seen; j++) shares[j] = counts[j] / n_seen;
    int64_t share_sum = std::accumulate(shares.begin(), shares.end(), int64_t(0));
    if (last) {  // the official top-up: the last layer's count makes the sum base*H
      shares.back() += layer_budget - share_sum;
      share_sum = layer_budget;
    }
    if (share_sum == 0) {  // every count floored to 0: use them unfloored
      shares = counts;
      share_sum = std::accumulate(shares.begin(), shares.end(), int64_t(0));
    }

    // Scale so the largest possible layer gets bs, then so the layers sum to base*L.
    std::vector<int64_t> sizes(n_seen);
    for (int j = 0; j < n_seen; j++) sizes[j] = candidates * shares[j] / share_sum;
    const int64_t size_sum = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
    int64_t budget_sum = 0;
    for (int j = 0; j < n_seen; j++) {
      sizes[j] = size_sum > 0 ? sizes[j] * model_budget / size_sum : 0;
      budget_sum += sizes[j];
    }
    sizes.back() += model_budget - budget_sum;

    for (int j = 0; j < n_seen; j++)
      for (int h = 0; h < n_heads; h++) trim(cache, j, h, sizes[j], window);
  }

  // Keeps the `keep` best of the prefix rows a head still holds (never more than it holds).
  void trim(KVCache& cache, int layer, int head, int64_t keep, int window) {
    std::vector<int32_t>& held = held_[size_t(layer) * cache.n_kv_heads() + head];
    if (keep >= int64_t(held.size())) return;
    const std::vector<float>& pooled = pooled_[size_t(layer) * cache.n_kv_heads() + head];
    // The held rows are the layer's top candidates in slot order, so the best `keep` of
    // them (same tie rule) are the rows to keep, as row numbers in the cache.
    std::vector<float> held_scores(held.size());
    for (size_t i = 0; i < held.size(); i++) held_scores[i] = pooled[held[i]];
    std::vector<int32_t> keep_rows = top_k(held_scores, int(keep));
    std::vector<int32_t> still_held(keep_rows.size());
    for (size_t i = 0; i < keep_rows.size(); i++) still_held[i] = held[keep_rows[i]];
    keep_with_window(cache, layer, head, std::move(keep_rows), window);
    held = std::move(still_held);
  }

  Budget budget_;
  VotingParams voting_;
  double rmax_;
  int every_;
  bool faithful_;
  // This prefill call's layers so far, [layer * n_kv_heads + kv head]:
  std::vector<std::vector<float>> pooled_;  // pooled scores of every prefix slot
  std::vector<std::vector<int32_t>> held_;  // prefix slots still held, ascending
};

}  // namespace

MethodInfo dynamickv_method_info() {
  MethodInfo info = {"dynamickv",
          "snapkv's window scores; per-layer budgets from a global top-k, rebalanced every "
          "few layers during prefill",
          voting_param_rows(kDefaultVoting, false, "; average per layer and head"),
          "DynamicKV: Task-Aware Adaptive KV Cache Compression for Long Context LLMs "
          "(arXiv 2412.14838)",
          {.budgeted = true, .observes = true}};
  info.params.insert(info.params.end(),
                     {{"rmax", format_number(kDefaultRmax)},
                      {"every", std::to_string(kDefaultEvery)},
                      {"faithful", "0 (1 = no rebalance after the last layer when L % every != 0)"}});
  return info;
}

std::unique_ptr<KVStrategy> make_dynamickv(const Params& params) {
  std::vector<std::string> keys = voting_param_keys(false);
  keys.insert(keys.end(), {"rmax", "every", "faithful"});
  params.reject_unknown("dynamickv", keys);
  const Budget budget = read_budget(params, kDefaultBudget, 2);
  const VotingParams voting = read_voting_params("dynamickv", params, kDefaultVoting);
  check_window_below_budget("dynamickv", budget, voting.window);
  const double rmax = params.get_double("rmax", kDefaultRmax, 1.0, 1e6);
  const int every = params.get_int("every", kDefaultEvery, 1);
  const bool faithful = params.get_choice("faithful", {"0", "1"}) == "1";
  return std::make_unique<DynamicKVStrategy>(budget, voting, rmax, every, faithful);
}

}  // namespace kvlm
