// MergedLayers: storage that two layers of a KVCache share (MiniCache's cross-layer merging).
//
// Two layers may be paired. For each KV head, the pair then stores the tokens merged so
// far ("shared" tokens). Keys and values are stored apart, each in one of two forms:
// merged, ONCE as a unit direction [head_dim] plus one magnitude per layer, or kept
// exact, both layers' rows as they were (a token whose key differs too much between the
// layers to share a direction, while its value does not, or the reverse). In each layer
// the shared tokens are the head's first slots, in front of the rows it still holds
// itself; restore() rebuilds them (direction * magnitude, or the exact row) into a scratch
// buffer held here, so the memory saving is real. Directions, exact rows and the scratch
// are in the cache's KV dtype, magnitudes in float32. The ops come from the backend's
// MergeBackend interface.
#pragma once
#include <array>
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
  // Which halves of the tokens given to merge() are stored exact instead of merged:
  // keys[i] (values[i]) true keeps token i's key (value) rows of both layers as they are.
  // Empty: every half is merged. A token cannot be kept exact in both halves: such a token
  // stays an ordinary row, which costs the same and can still be merged later.
  struct ExactHalves {
    std::vector<bool> keys, values;
  };
  // Moves the tokens in slots lower_slots[i] of `lower` and upper_slots[i] of `upper`
  // (the same positions; not shared yet; each list ascending) into the pair's storage of
  // `head`: each half merged (direction by slerp with weight t toward `upper`, per-layer
  // magnitudes) unless `exact` keeps it. The tokens become the last shared slots of both
  // layers in the given order, and their rows are freed. Pairs the two layers on first use
  // (lower < upper; a layer belongs to one pair only). Throws std::invalid_argument.
  void merge(KVCache& cache, int lower, int upper, int head,
             const std::vector<int32_t>& lower_slots, const std::vector<int32_t>& upper_slots,
             float t, const ExactHalves& exact = {});
  // How many shared tokens of the pair (lower, head) have their key, or value, kept exact.
  struct ExactCounts {
    int keys = 0, values = 0;
  };
  ExactCounts exact_counts(int lower, int head) const;

  // KVCache::view: replaces the view of every head of `layer` that has shared slots with
  // its shared tokens restored, followed by its rows (heads[h] holds the rows on entry).
  void restore(const KVCache& cache, int layer, std::vector<KVHeadView>& heads) const;
  size_t bytes_held() const;     // directions once per pair, magnitudes and exact rows per layer
  size_t bytes_scratch() const;  // the restore buffer

  // KVCache::checkpoint: merges only append to the shared storage and pair layers, so the
  // lengths and pairs at the mark are all rollback() needs.
  struct Mark {
    std::vector<std::array<int, 3>> lengths;  // [lower layer][head]: tokens, exact keys, exact values
    std::vector<int> partner;                 // [layer]
  };
  Mark mark() const;
  void rollback(const Mark& mark);

 private:
  // The keys, or the values, of a pair's shared tokens for one head.
  struct SharedHalf {
    void* dir = nullptr;                 // [merged][head_dim] unit directions
    float* mag[2] = {nullptr, nullptr};  // [merged] per layer: 0 = lower, 1 = upper
    std::vector<int32_t> merged_slots;   // the shared slot of each direction, ascending
    void* exact[2] = {nullptr, nullptr};  // [kept exact][head_dim] per layer
    std::vector<int32_t> exact_slots;     // the shared slot of each exact row, ascending
    int merged() const { return int(merged_slots.size()); }
    int kept_exact() const { return int(exact_slots.size()); }
  };
  // What a pair of layers shares for one head: len tokens.
  struct SharedStore {
    SharedHalf keys, values;
    int len = 0;
  };
  // A pair's storage is kept under its lower layer.
  SharedStore& shared(int lower, int head) { return shared_[size_t(lower) * n_kv_heads_ + head]; }
  const SharedStore& shared(int lower, int head) const {
    return shared_[size_t(lower) * n_kv_heads_ + head];
  }
  // Cuts or grows a half's buffers to `merged` directions and `kept_exact` exact rows
  // (kept contents stay; the slot lists are the caller's).
  void resize_half(SharedHalf& half, int merged, int kept_exact);
  // Shrinks a store to its first len tokens, of which kept exact: `exact_keys` keys etc.
  void truncate_shared(SharedStore& sh, int len, int exact_keys, int exact_values);
  // Moves half of the given token pairs into `half` (shared slots first + i): merged,
  // or copied where exact[i].
  void store_half(SharedHalf& half, const void* a, const std::vector<int32_t>& a_rows,
                  const void* b, const std::vector<int32_t>& b_rows,
                  const std::vector<bool>& exact, int first, float t);
  // Rebuilds one layer's (side's) shared tokens of a half into out [len][head_dim].
  void restore_half(void* out, const SharedHalf& half, int side, int len) const;
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
