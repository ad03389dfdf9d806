// minicache: MiniCache (Liu et al., arXiv 2405.14366). From layer `start` upward, layers
// are paired (start, start+1), (start+2, start+3), ... For each pair and KV head, a token
// both layers hold is split into one shared direction (slerp of the two unit vectors,
// weight t toward the upper layer) and one magnitude per layer; keys and values are
// merged separately. The cache's MergedLayers store the pair's directions once and restore
// each layer's states (direction * magnitude) for attention, so the memory saving is real.
//
// Choices (the reasons, and the worked examples the tests check: minicache.md):
// - Retention. The paper keeps unmerged the tokens whose angular distance between the two
//   layers is largest, with a threshold gamma on the distance range (0.05 in its
//   experiments, the best trade-off in its gamma ablation). Its official repository
//   (AkideLiu/MiniCache) holds only the project page, so there was no code to follow.
//   We express the rule as a share: per pair and head, `retain` (default 0.05, mirroring
//   gamma = 0.05) of its common tokens are kept unmerged, those with the largest angle;
//   a count makes memory predictable. A token's angle is the larger of its key angle and
//   value angle, so a token is either merged (K and V) or kept whole: the rows of one
//   slot always hold one token. Ties keep the earlier slot.
// - The share counts the tokens merged earlier: each merge keeps unmerged the
//   ceil(retain * (merged + candidates)) candidates with the largest angle, where the
//   candidates are all common tokens not merged yet (earlier outliers included). So the
//   share holds over the pair's lifetime, and nothing depends on when merges happen.
// - Tokens with a zero key or value in either layer have no direction; they are always
//   kept unmerged, outside the share.
// - Only tokens both layers hold are merged (after eviction, e.g. snapkv+minicache, the
//   layers may hold different tokens); the rest stay unmerged.
// - When: after every prefill call (the prompt, or the next chat turn with the tokens
//   generated before it), and every `merge_every` decoded tokens (0 = never).
// - start: default n_layers / 2 (the paper merges from the middle of the network),
//   resolved against the cache; it is left out of name() when not given.
#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "kv/merged_layers.h"
#include "kv/strategies/strategies.h"

namespace kvlm {

namespace {

class MiniCacheStrategy final : public CopyableStrategy<MiniCacheStrategy> {
 public:
  MiniCacheStrategy(int start, double t, double retain, int merge_every)
      : start_(start), t_(t), retain_(retain), merge_every_(merge_every) {}

  std::string name() const override {
    std::ostringstream s;
    s << "minicache:";
    if (start_ >= 0) s << "start=" << start_ << ",";
    s << "t=" << t_ << ",retain=" << retain_ << ",merge_every=" << merge_every_;
    return s.str();
  }

  void after_prefill(KVCache& cache) override {
    merge_all(cache);
    decode_steps_ = 0;
  }

  void on_decode_step(KVCache& cache, const DecodeObservation&) override {
    if (merge_every_ > 0 && ++decode_steps_ >= merge_every_) {
      merge_all(cache);
      decode_steps_ = 0;
    }
  }

  std::string report() const override { return report_; }

 private:
  int first_layer(const KVCache& cache) const {
    const int start = start_ >= 0 ? start_ : cache.n_layers() / 2;
    if (start + 1 >= cache.n_layers())
      throw std::invalid_argument("--kv minicache: start=" + std::to_string(start) +
                                  " leaves no pair of layers in a model of " +
                                  std::to_string(cache.n_layers()) + " layers");
    return start;
  }

  void merge_all(KVCache& cache) {
    const int start = first_layer(cache);
    long merged = 0, kept = 0, pairs = 0;
    for (int lower = start; lower + 1 < cache.n_layers(); lower += 2, pairs++)
      for (int h = 0; h < cache.n_kv_heads(); h++) {
        kept += merge_head(cache, lower, lower + 1, h);
        merged += cache.shared_length(lower, h);
      }
    std::ostringstream s;
    const double per_head = double(pairs * cache.n_kv_heads());
    s << "minicache: " << pairs << " layer pairs from layer " << start << "; per pair and head "
      << merged / per_head << " tokens merged, " << kept / per_head << " kept unmerged\n";
    report_ = s.str();
  }

  // Merges the not yet merged tokens both layers hold, except the outliers; returns how
  // many common tokens stay unmerged.
  int merge_head(KVCache& cache, int lower, int upper, int head) const {
    const std::vector<int32_t>& lower_positions = cache.positions(lower, head);
    const std::vector<int32_t>& upper_positions = cache.positions(upper, head);
    std::unordered_map<int32_t, int32_t> upper_slot;
    for (int slot = cache.shared_length(upper, head); slot < int(upper_positions.size()); slot++)
      upper_slot[upper_positions[slot]] = slot;
    std::vector<int32_t> lower_slots, upper_slots;
    for (int slot = cache.shared_length(lower, head); slot < int(lower_positions.size()); slot++) {
      auto it = upper_slot.find(lower_positions[slot]);
      if (it == upper_slot.end()) continue;
      lower_slots.push_back(slot);
      upper_slots.push_back(it->second);
    }
    if (lower_slots.empty()) return 0;

    MergedLayers& merged_layers = cache.merged_layers();
    const MergedLayers::PairAngles angles =
        merged_layers.pair_angles(cache, lower, upper, head, lower_slots, upper_slots);
    const int n = int(lower_slots.size());
    std::vector<float> angle(n);
    std::vector<int> mergeable;
    for (int i = 0; i < n; i++) {
      angle[i] = std::max(angles.keys[i], angles.values[i]);
      if (angles.keys[i] >= 0 && angles.values[i] >= 0) mergeable.push_back(i);
    }
    const int total = cache.shared_length(lower, head) + int(mergeable.size());
    const int n_retain =
        std::min(int(mergeable.size()), int(std::ceil(retain_ * total - 1e-9)));
    std::stable_sort(mergeable.begin(), mergeable.end(),
                     [&](int x, int y) { return angle[x] > angle[y]; });
    std::vector<bool> merge(n, false);
    for (size_t r = n_retain; r < mergeable.size(); r++) merge[mergeable[r]] = true;

    std::vector<int32_t> merge_lower, merge_upper;
    for (int i = 0; i < n; i++)
      if (merge[i]) {
        merge_lower.push_back(lower_slots[i]);
        merge_upper.push_back(upper_slots[i]);
      }
    merged_layers.merge(cache, lower, upper, head, merge_lower, merge_upper, float(t_));
    return n - int(merge_lower.size());
  }

  int start_;  // -1: the middle layer of the cache's model
  double t_, retain_;
  int merge_every_;
  int decode_steps_ = 0;  // decoded tokens since the last merge
  std::string report_;
};

}  // namespace

MethodInfo minicache_method_info() {
  return {"minicache",
          "merge the KV of adjacent deep layers: shared slerp directions + per-layer magnitudes",
          {{"start", "n_layers/2"}, {"t", "0.6"}, {"retain", "0.05"}, {"merge_every", "0"}},
          "MiniCache: KV Cache Compression in Depth Dimension for Large Language Models "
          "(arXiv 2405.14366)",
          {.merges_layers = true}};
}

std::unique_ptr<KVStrategy> make_minicache(const Params& params) {
  params.reject_unknown("minicache", {"start", "t", "retain", "merge_every"});
  return std::make_unique<MiniCacheStrategy>(
      params.get_int("start", -1, 0), params.get_double("t", 0.6, 0.0, 1.0),
      params.get_double("retain", 0.05, 0.0, 1.0), params.get_int("merge_every", 0, 0));
}

}  // namespace kvlm
