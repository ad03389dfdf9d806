// KVCache: the keys and values of every past token, per layer and per KV head.
//
// Each (layer, kv head) owns its own storage with its own live length, so compression
// methods can keep different numbers of tokens per head and per layer, and the attention
// op reads exactly those lengths. Keys are stored after RoPE, together with the original
// position of each token, so eviction never changes what a kept key means.
//
// Slots: what one (layer, head) attends over, in order; view() rows and positions()
// entries are slots. A plain layer's slots are its stored rows.
//
// Merged layers (MiniCache, cross-layer sharing): two layers may be paired. For each
// head, the pair then stores the tokens merged so far ONCE as shared unit directions
// (keys and values separately, [m][head_dim]) plus per-layer magnitudes ([m] each); each
// layer keeps its other tokens (not merged, or appended later) as ordinary rows. A merged
// layer's slots are [its m merged tokens] then [its rows], so new tokens stay last.
// view() restores a merged head's keys/values (direction * magnitude, then the rows) into
// one scratch buffer owned by the cache.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend.h"

namespace kvlm {

struct KVStats {
  int tokens_seen = 0;                   // tokens ever appended (the next token's position)
  std::vector<std::vector<int>> lengths; // [layer][kv head] slots attended (merged included)
  size_t bytes_held = 0;                 // bytes of live keys + values (+ merged storage)
  size_t bytes_allocated = 0;            // bytes of storage reserved, live or not
  size_t bytes_scratch = 0;              // restore buffer of merged layers (one layer, reused)
  size_t bytes_full = 0;                 // bytes an uncompressed cache would hold now
  double compression() const { return bytes_held ? double(bytes_full) / double(bytes_held) : 1.0; }
};

class KVCache {
 public:
  // max_tokens: the context limit; no head ever holds more rows than this.
  KVCache(Backend& backend, int n_layers, int n_kv_heads, int head_dim, int max_tokens);
  ~KVCache();
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  int n_layers() const { return n_layers_; }
  int n_kv_heads() const { return n_kv_heads_; }
  int head_dim() const { return head_dim_; }
  int max_tokens() const { return max_tokens_; }
  int tokens_seen() const { return tokens_seen_; }

  // Appends T new tokens to every head of `layer`. keys/values are backend buffers of
  // [T][n_kv_heads * head_dim]; positions[T] are host values.
  void append(int layer, const float* keys, const float* values, const int32_t* positions, int T);
  // Called once per forward pass, after every layer appended its T tokens.
  void advance(int T) { tokens_seen_ += T; }

  // Keeps slots keep_indices (ascending, unique, < length) of one head, in order, and
  // returns storage that is no longer needed to the backend. Merged tokens cannot be
  // evicted (the other layer of the pair shares them): on a merged head keep_indices
  // must begin with every merged slot 0..merged_length-1, else std::invalid_argument.
  void compact(int layer, int head, const std::vector<int32_t>& keep_indices);
  // Drops every token and every merge (layers are no longer paired).
  void clear();

  // Slots of one head: merged tokens + rows.
  int length(int layer, int head) const {
    const HeadStore& s = store(layer, head);
    return s.merged + s.len;
  }
  // Original positions of the slots, in view() order.
  const std::vector<int32_t>& positions(int layer, int head) const {
    return store(layer, head).positions;
  }
  // Keys/values of every slot of every head of `layer`. Plain heads point into their
  // storage (no copy). Merged heads are restored into the cache's scratch buffer, so their
  // pointers stay valid only until the next view() of a merged layer or any change.
  std::vector<KVHeadView> view(int layer) const;
  KVStats stats() const;

  // ---- cross-layer merging (MiniCache) --------------------------------------------------
  // The layer paired with `layer` by merge(), or -1.
  int partner(int layer) const { return partner_[layer]; }
  // Leading slots of (layer, head) that are merged tokens.
  int merged_length(int layer, int head) const { return store(layer, head).merged; }

  // Angles (radians, [0, pi]; -1 where a state is all zeros) between the states of the same
  // tokens in two layers: slot lower_slots[i] of `lower` against upper_slots[i] of `upper`.
  struct PairAngles {
    std::vector<float> keys, values;
  };
  PairAngles pair_angles(int lower, int upper, int head, const std::vector<int32_t>& lower_slots,
                         const std::vector<int32_t>& upper_slots) const;
  // Merges the tokens in slots lower_slots[i] of `lower` and upper_slots[i] of `upper`
  // (the same positions; unmerged slots; each list ascending) into the pair's shared
  // storage of `head`: directions by slerp with weight t toward `upper`, per-layer
  // magnitudes, keys and values separately. The tokens become the last merged slots of
  // both layers in the given order, their rows are freed. Pairs the two layers on first
  // use (lower < upper; a layer belongs to one pair only). Throws std::invalid_argument.
  void merge(int lower, int upper, int head, const std::vector<int32_t>& lower_slots,
             const std::vector<int32_t>& upper_slots, float t);

 private:
  struct HeadStore {
    float* keys = nullptr;  // the rows: [capacity][head_dim]
    float* values = nullptr;
    int capacity = 0;
    int len = 0;     // rows held
    int merged = 0;  // merged tokens in front of the rows (in the pair's SharedStore)
    std::vector<int32_t> positions;  // merged + len entries, slot order
  };
  // What a pair of layers shares for one head: m merged tokens.
  struct SharedStore {
    float* dir_keys = nullptr;  // [m][head_dim] unit directions
    float* dir_values = nullptr;
    float* mag_keys[2] = {nullptr, nullptr};  // [m] per layer: 0 = lower, 1 = upper
    float* mag_values[2] = {nullptr, nullptr};
    int len = 0;  // m
  };
  HeadStore& store(int layer, int head) { return heads_[size_t(layer) * n_kv_heads_ + head]; }
  const HeadStore& store(int layer, int head) const {
    return heads_[size_t(layer) * n_kv_heads_ + head];
  }
  // A pair's storage is kept under its lower layer.
  SharedStore& shared(int lower, int head) { return shared_[size_t(lower) * n_kv_heads_ + head]; }
  const SharedStore& shared(int lower, int head) const {
    return shared_[size_t(lower) * n_kv_heads_ + head];
  }
  void reallocate(HeadStore& s, int capacity);
  void resize_shared(SharedStore& s, int len);
  // Keeps rows `keep` (ascending) of s, returning freed storage when it is worth it.
  void keep_rows(HeadStore& s, const std::vector<int32_t>& keep, bool shrink_to_fit);
  std::vector<int32_t> rows_of(int layer, int head, const std::vector<int32_t>& slots) const;
  size_t row_bytes() const { return size_t(head_dim_) * sizeof(float); }

  Backend& backend_;
  int n_layers_, n_kv_heads_, head_dim_, max_tokens_;
  int tokens_seen_ = 0;
  std::vector<HeadStore> heads_;
  std::vector<int> partner_;          // [layer] the other layer of its pair, or -1
  std::vector<SharedStore> shared_;   // [lower layer][head]
  // view()'s restore target for merged heads: logically not state, so a const view()
  // may fill it. [scratch_rows_][head_dim] each.
  mutable float* scratch_keys_ = nullptr;
  mutable float* scratch_values_ = nullptr;
  mutable int scratch_rows_ = 0;
};

}  // namespace kvlm
