// What the methods that keep a fixed budget while tokens arrive (streaming, h2o, knorm,
// simlayerkv's lazy layers) share: when to cut a head back, which slots a
// sinks-plus-recent rule keeps, a best-of-the-rest choice with a protected recent window,
// and per-slot values (scores, norms) kept aligned with the cache through evictions.
#pragma once
#include <cstdint>
#include <vector>

#include "kv/kv_cache.h"

namespace kvlm {

// Decode-time maintenance is amortised: a head may grow to budget + slack rows, then is
// cut back to budget in one compaction (one row copy per `slack` tokens instead of one per
// token). Bytes held never exceed budget + slack rows.
inline bool over_budget(int len, int budget, int slack) { return len > budget + slack; }

// Slots [0, sinks) and the last `recent` of `len` slots, ascending; every slot when the
// two ranges cover them all.
std::vector<int32_t> sinks_and_recent(int len, int sinks, int recent);

// The `budget` slots of scores.size() to keep: the newest `recent` always, and the
// budget - recent highest-scoring older ones (ties: the lower index). Ascending.
std::vector<int32_t> best_with_recent(const std::vector<float>& scores, int budget, int recent);

// One float per cached slot for every (layer, KV head), e.g. H2O's accumulated attention.
// Values are tied to the positions the cache stores, so they stay aligned with the slots
// through any compaction, also one made by another strategy of a composition.
class SlotValues {
 public:
  // Forgets every value (a fresh prompt starts over).
  void clear() { heads_.clear(); }
  // The values of head (layer, head) for the cache's current slots, in slot order; slots
  // not seen before (tokens appended since) get `fill`. The reference stays valid until
  // the next call for the same head.
  std::vector<float>& aligned(const KVCache& cache, int layer, int head, float fill);
  // Keeps rows `keep` (ascending) of the cache head and of its values alike. Call right
  // after aligned() for the same head.
  void compact(KVCache& cache, int layer, int head, const std::vector<int32_t>& keep);

 private:
  struct Head {
    std::vector<int32_t> positions;
    std::vector<float> values;
  };
  Head& head(const KVCache& cache, int layer, int kv_head);
  std::vector<Head> heads_;  // [layer * n_kv_heads + kv head]
};

}  // namespace kvlm
