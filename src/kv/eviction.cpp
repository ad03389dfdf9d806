#include "kv/eviction.h"

#include <algorithm>
#include <stdexcept>

#include "kv/scoring.h"

namespace kvlm {

std::vector<int32_t> sinks_and_recent(int len, int sinks, int recent) {
  std::vector<int32_t> keep;
  const int first_recent = std::max(0, len - recent);
  for (int j = 0; j < std::min(sinks, first_recent); j++) keep.push_back(j);
  for (int j = first_recent; j < len; j++) keep.push_back(j);
  return keep;
}

std::vector<int32_t> best_with_recent(const std::vector<float>& scores, int budget, int recent) {
  const int len = int(scores.size());
  recent = std::min({recent, budget, len});
  const std::vector<float> older(scores.begin(), scores.end() - recent);
  return with_window(top_k(older, budget - recent), len, recent);
}

SlotValues::Head& SlotValues::head(const KVCache& cache, int layer, int kv_head) {
  heads_.resize(size_t(cache.n_layers()) * cache.n_kv_heads());
  return heads_[size_t(layer) * cache.n_kv_heads() + kv_head];
}

std::vector<float>& SlotValues::aligned(const KVCache& cache, int layer, int kv_head,
                                        float fill) {
  Head& h = head(cache, layer, kv_head);
  const std::vector<int32_t>& now = cache.positions(layer, kv_head);
  const size_t known = h.positions.size();
  // Usual case: only appends since the last call.
  if (known <= now.size() && std::equal(h.positions.begin(), h.positions.end(), now.begin())) {
    h.positions.insert(h.positions.end(), now.begin() + known, now.end());
    h.values.resize(now.size(), fill);
    return h.values;
  }
  // Someone else compacted this head: both position lists ascend, so one merge walk
  // carries every surviving value over.
  std::vector<float> values(now.size(), fill);
  size_t i = 0;
  for (size_t s = 0; s < now.size(); s++) {
    while (i < known && h.positions[i] < now[s]) i++;
    if (i < known && h.positions[i] == now[s]) values[s] = h.values[i];
  }
  h.positions = now;
  h.values = std::move(values);
  return h.values;
}

void SlotValues::compact(KVCache& cache, int layer, int kv_head,
                         const std::vector<int32_t>& keep) {
  Head& h = head(cache, layer, kv_head);
  if (h.positions != cache.positions(layer, kv_head))
    throw std::logic_error("SlotValues::compact: values not aligned with the cache (call aligned() first)");
  cache.compact(layer, kv_head, keep);
  for (size_t i = 0; i < keep.size(); i++) h.values[i] = h.values[keep[i]];
  h.values.resize(keep.size());
  h.positions = cache.positions(layer, kv_head);
}

}  // namespace kvlm
