// minicache: MiniCache (Liu et al., arXiv 2405.14366). From layer `start` upward, layers
// are paired (start, start+1), (start+2, start+3), ... For each pair and KV head, a token
// both layers hold is split into one shared direction (slerp of the two unit vectors,
// weight t toward the upper layer) and one magnitude per layer; keys and values are
// merged separately. The cache's MergedLayers store the pair's directions once and restore
// each layer's states (direction * magnitude) for attention, so the memory saving is real.
//
// Choices (the reasons, and the worked examples the tests check: minicache.md):
// - Retention: which tokens stay unmerged, those whose states differ most between the
//   two layers (largest angle). Two rules:
//   - share (default): per pair and head, `retain` (0.05) of its common tokens stay
//     unmerged, those with the largest angle; a count makes memory predictable.
//   - gamma: the paper's threshold on the range of angular distances. With d = angle / pi
//     over the candidates of one merge, a token stays unmerged when
//     d > d_min + gamma * (d_max - d_min). How many stay depends on the data.
//   The paper's text and code were not at hand when this was written (its repository,
//   AkideLiu/MiniCache, holds only the project page): the form of the threshold is as
//   recalled from the paper, which is why the share stays the default.
// - K and V: by default a token's angle is the larger of its key angle and value angle,
//   and it is either merged (K and V) or kept whole. With separate=1 keys and values
//   decide apart, as in MiniCache's peers: each half has its own ranking (or threshold),
//   a token kept in both halves stays a row, and one kept in one half only is merged
//   with that half stored exact. At the same share both modes keep as many halves.
// - The share counts over the pair's lifetime: each merge keeps unmerged
//   ceil(retain * (merged + candidates)) halves (minus those stored exact earlier), where
//   the candidates are all common tokens still rows (earlier outliers included). So the
//   share holds however merges are batched. Ties keep the earlier slot.
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
#include <iomanip>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

#include "kv/merged_layers.h"
#include "kv/strategies/strategies.h"

namespace kvlm {

namespace {

// How a pair decides which halves stay unmerged.
struct Retention {
  double retain = 0.05;         // share rule: the share kept unmerged
  std::optional<double> gamma;  // threshold rule, when given (replaces the share)
  bool separate = false;        // keys and values decide apart
};

class MiniCacheStrategy final : public CopyableStrategy<MiniCacheStrategy> {
 public:
  MiniCacheStrategy(int start, double t, Retention retention, int merge_every)
      : start_(start), t_(t), retention_(retention), merge_every_(merge_every) {}

  std::string name() const override {
    std::ostringstream s;
    s << "minicache:";
    if (start_ >= 0) s << "start=" << start_ << ",";
    s << "t=" << t_ << ",";
    if (retention_.gamma)
      s << "gamma=" << *retention_.gamma;
    else
      s << "retain=" << retention_.retain;
    if (retention_.separate) s << ",separate=1";
    s << ",merge_every=" << merge_every_;
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

  bool compresses_while_decoding() const override { return merge_every_ > 0; }

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
    long merged = 0, kept = 0, pairs = 0, exact_keys = 0, exact_values = 0;
    for (int lower = start; lower + 1 < cache.n_layers(); lower += 2, pairs++)
      for (int h = 0; h < cache.n_kv_heads(); h++) {
        kept += merge_head(cache, lower, lower + 1, h);
        merged += cache.shared_length(lower, h);
        const MergedLayers::ExactCounts exact = cache.merged_layers().exact_counts(lower, h);
        exact_keys += exact.keys;
        exact_values += exact.values;
      }
    std::ostringstream s;
    s << std::fixed << std::setprecision(1);
    const double per_head = double(pairs * cache.n_kv_heads());
    s << "minicache: " << pairs << " layer pairs from layer " << start << "; per pair and head "
      << merged / per_head << " tokens merged, " << kept / per_head << " kept unmerged ("
      << 100.0 * kept / std::max(1L, merged + kept) << "%)";
    if (retention_.separate)
      s << "; of the merged, " << exact_keys / per_head << " keep their key and "
        << exact_values / per_head << " their value exact";
    s << "\n";
    report_ = s.str();
  }

  // retained[i]: candidate i keeps this half unmerged, by the share or the threshold rule.
  // `shared`: tokens of the pair merged earlier, `already_exact`: of those, how many keep
  // this half exact.
  std::vector<bool> retained(const std::vector<float>& angle, int shared,
                             int already_exact) const {
    const int n = int(angle.size());
    std::vector<bool> keep(n, false);
    if (n == 0) return keep;
    if (retention_.gamma) {
      // d = angle / pi: dividing every distance by pi moves the threshold with them.
      const auto [lo, hi] = std::minmax_element(angle.begin(), angle.end());
      const double threshold = *lo + *retention_.gamma * (double(*hi) - *lo);
      for (int i = 0; i < n; i++) keep[i] = angle[i] > threshold;
      return keep;
    }
    const int target = int(std::ceil(retention_.retain * (shared + n) - 1e-9));
    const int n_keep = std::clamp(target - already_exact, 0, n);
    std::vector<int> order(n);
    for (int i = 0; i < n; i++) order[i] = i;
    std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return angle[x] > angle[y]; });
    for (int r = 0; r < n_keep; r++) keep[order[r]] = true;
    return keep;
  }

  // Merges the not yet merged tokens both layers hold, except what retention keeps;
  // returns how many common tokens stay rows.
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
    // Candidates: the tokens with a direction in every state.
    std::vector<int> candidate;
    std::vector<float> key_angle, value_angle, token_angle;
    for (int i = 0; i < int(lower_slots.size()); i++)
      if (angles.keys[i] >= 0 && angles.values[i] >= 0) {
        candidate.push_back(i);
        key_angle.push_back(angles.keys[i]);
        value_angle.push_back(angles.values[i]);
        token_angle.push_back(std::max(angles.keys[i], angles.values[i]));
      }
    const int shared = cache.shared_length(lower, head);
    std::vector<bool> keep_key, keep_value;
    if (retention_.separate) {
      const MergedLayers::ExactCounts exact = merged_layers.exact_counts(lower, head);
      keep_key = retained(key_angle, shared, exact.keys);
      keep_value = retained(value_angle, shared, exact.values);
    } else {
      keep_key = keep_value = retained(token_angle, shared, 0);
    }

    std::vector<int32_t> merge_lower, merge_upper;
    MergedLayers::ExactHalves exact;
    for (size_t c = 0; c < candidate.size(); c++) {
      if (keep_key[c] && keep_value[c]) continue;  // kept whole: stays a row
      merge_lower.push_back(lower_slots[candidate[c]]);
      merge_upper.push_back(upper_slots[candidate[c]]);
      exact.keys.push_back(keep_key[c]);
      exact.values.push_back(keep_value[c]);
    }
    merged_layers.merge(cache, lower, upper, head, merge_lower, merge_upper, float(t_), exact);
    return int(lower_slots.size() - merge_lower.size());
  }

  int start_;  // -1: the middle layer of the cache's model
  double t_;
  Retention retention_;
  int merge_every_;
  int decode_steps_ = 0;  // decoded tokens since the last merge
  std::string report_;
};

}  // namespace

MethodInfo minicache_method_info() {
  return {"minicache",
          "merge the KV of adjacent deep layers: shared slerp directions + per-layer magnitudes",
          {{"start", "n_layers/2"},
           {"t", "0.6"},
           {"retain", "0.05 (share of each pair's tokens kept unmerged, largest angles)"},
           {"gamma", "off (e.g. 0.05: keep unmerged d > d_min + gamma (d_max - d_min), instead of retain)"},
           {"separate", "0 (1: keys and values decide apart)"},
           {"merge_every", "0"}},
          "MiniCache: KV Cache Compression in Depth Dimension for Large Language Models "
          "(arXiv 2405.14366)",
          {.merges_layers = true}};
}

std::unique_ptr<KVStrategy> make_minicache(const Params& params) {
  params.reject_unknown("minicache", {"start", "t", "retain", "gamma", "separate", "merge_every"});
  Retention retention;
  if (params.values.count("gamma")) {
    if (params.values.count("retain"))
      throw std::invalid_argument("--kv minicache: retain= (a share kept unmerged) and gamma= "
                                  "(a threshold on the angle range) are two rules; give one");
    retention.gamma = params.get_double("gamma", 0.05, 0.0, 1.0);
  }
  retention.retain = params.get_double("retain", 0.05, 0.0, 1.0);
  retention.separate = params.get_choice("separate", {"0", "1"}) == "1";
  return std::make_unique<MiniCacheStrategy>(params.get_int("start", -1, 0),
                                             params.get_double("t", 0.6, 0.0, 1.0), retention,
                                             params.get_int("merge_every", 0, 0));
}

}  // namespace kvlm
