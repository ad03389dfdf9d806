// MergedLayers: storage that two layers of a KVCache share (MiniCache's cross-layer merging).
//
// Two layers may be paired. For each KV head, the pair then stores the tokens merged so
// far ONCE as unit directions (keys and values separately, [m][head_dim]) plus one
// magnitude per token and layer ([m] each). In each layer those tokens are the head's
// shared slots, in front of the rows it still holds itself; view() restores them
// (direction * magnitude) into a scratch buffer held here, so the memory saving is real.
// Directions and the scratch are in the cache's KV dtype, magnitudes in float32.
// The ops come from the backend's MergeBackend interface.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend.h"
#include "merge_backend.h"

namespace kvlm {

class KVCache;

class MergedLayers {
 public:
  MergedLayers(Backend& backend, int n_layers, int n_kv_heads, int head_dim, DType kv_dtype);
  ~MergedLayers();
  MergedLayers(const MergedLayers&) = delete;
  MergedLayers& operator=(const MergedLayers&) = delete;

  // The layer paired with `layer` by merge(), or -1.
  int partner(int layer) const { return partner_[layer]; }

  // Angles (radians, [0, pi]; -1 where a state is all zeros) between the states of the same
  // tokens in two layers: slot lower_slots[i] of `lower` against upper_slots[i] of `upper`.
  struct PairAngles {
    std::vector<float> keys, values;
  };
  PairAngles pair_angles(const KVCache& cache, int lower, int upper, int head,
                         const std::vector<int32_t>& lower_slots,
                         const std::vector<int32_t>& upper_slots) const;
  // Merges the tokens in slots lower_slots[i] of `lower` and upper_slots[i] of `upper`
  // (the same positions; not shared yet; each list ascending) into the pair's storage of
  // `head`: directions by slerp with weight t toward `upper`, per-layer magnitudes, keys and
  // values separately. The tokens become the last shared slots of both layers in the given
  // order, and their rows are freed. Pairs the two layers on first use (lower < upper; a
  // layer belongs to one pair only). Throws std::invalid_argument.
  void merge(KVCache& cache, int lower, int upper, int head,
             const std::vector<int32_t>& lower_slots, const std::vector<int32_t>& upper_slots,
             float t);

  // KVCache::view: replaces the view of every head of `layer` that has shared slots with
  // its shared tokens restored, followed by its rows (heads[h] holds the rows on entry).
  void restore(const KVCache& cache, int layer, std::vector<KVHeadView>& heads) const;
  size_t bytes_held() const;     // directions once per pair, magnitudes once per layer
  size_t bytes_scratch() const;  // the restore buffer

  // KVCache::checkpoint: merges only append to the shared storage and pair layers, so the
  // lengths and pairs at the mark are all rollback() needs.
  struct Mark {
    std::vector<int> lengths;  // [lower layer][head] tokens in the shared storage
    std::vector<int> partner;  // [layer]
  };
  Mark mark() const;
  void rollback(const Mark& mark);

 private:
  // What a pair of layers shares for one head: m merged tokens.
  struct SharedStore {
    void* dir_keys = nullptr;  // [m][head_dim] unit directions, in the KV dtype
    void* dir_values = nullptr;
    float* mag_keys[2] = {nullptr, nullptr};  // [m] per layer: 0 = lower, 1 = upper
    float* mag_values[2] = {nullptr, nullptr};
    int len = 0;  // m
  };
  // A pair's storage is kept under its lower layer.
  SharedStore& shared(int lower, int head) { return shared_[size_t(lower) * n_kv_heads_ + head]; }
  const SharedStore& shared(int lower, int head) const {
    return shared_[size_t(lower) * n_kv_heads_ + head];
  }
  void resize_shared(SharedStore& s, int len);
  size_t row_bytes() const { return size_t(head_dim_) * dtype_bytes(dtype_); }
  void* alloc_bytes(size_t bytes) const;
  void release(void* p) const { backend_.release(static_cast<float*>(p)); }
  // Row indices of `slots` of a head (ascending, not shared), or std::invalid_argument.
  std::vector<int32_t> rows_of(const KVCache& cache, int layer, int head,
                               const std::vector<int32_t>& slots) const;

  Backend& backend_;
  MergeBackend& ops_;
  int n_layers_, n_kv_heads_, head_dim_;
  DType dtype_;
  std::vector<int> partner_;         // [layer] the other layer of its pair, or -1
  std::vector<SharedStore> shared_;  // [lower layer][head]
  // restore()'s target: logically not state, so a const view may fill it.
  // [scratch_rows_][head_dim] each, in the KV dtype.
  mutable void* scratch_keys_ = nullptr;
  mutable void* scratch_values_ = nullptr;
  mutable int scratch_rows_ = 0;
};

}  // namespace kvlm
