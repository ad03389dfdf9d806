// KVCache: the keys and values of every past token, per layer and per KV head.
//
// Each (layer, kv head) owns its own storage with its own live length, so compression
// methods can keep different numbers of tokens per head and per layer, and the attention
// op reads exactly those lengths. Keys are stored after RoPE, together with the original
// position of each token (positions() reports those in either mode below).
//
// Slots: what one (layer, head) attends over, in order; view() rows and positions()
// entries are slots. Usually a head's slots are its own rows. Cross-layer merging
// (kv/merged_layers.h) may move a head's leading tokens into storage shared with another
// layer: those "shared slots" come first, view() restores them, and they cannot be evicted.
//
// Rows are stored in the cache's KV dtype (f32, f16 or bf16), rounded once as they are
// appended; the kernels widen them to float32 as they read them.
//
// Positions (the angle RoPE turns a key by) come in two modes:
//  - Original (the default): a token keeps its index in the sequence for good. Its key is
//    rotated once, as it is appended, and eviction never touches it.
//  - Cache (pos=cache, StreamingLLM's rule): a token's position is its slot. A new token
//    takes the next slot of its layer, and when eviction moves a key to an earlier slot the
//    key is turned back by the same number of positions (Backend::rotate_keys; rotations
//    add up, so it reads exactly as if it had been rotated at its new slot). Positions then
//    never exceed what the cache holds, however long the sequence runs. This needs every
//    head of a layer to hold the same number of slots (one query position per layer).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "backend.h"
#include "kv/merged_layers.h"

namespace kvlm {

enum class KVPositions { Original, Cache };

// What rotate_keys needs to turn cached keys: the model's RoPE settings (Model owns them).
struct KeyRotation {
  const float* inv_freq = nullptr;  // backend memory, rope_dim / 2 frequencies
  int rope_dim = 0;
  bool adjacent_pairs = false;
};

struct KVStats {
  int tokens_seen = 0;                   // tokens ever appended (the next token's position)
  std::vector<std::vector<int>> lengths; // [layer][kv head] slots attended (shared included)
  size_t bytes_held = 0;                 // bytes of live keys + values (+ shared storage)
  size_t bytes_allocated = 0;            // bytes of storage reserved, live or not
  size_t bytes_scratch = 0;              // restore buffer of merged layers (one layer, reused)
  size_t bytes_full = 0;                 // bytes an uncompressed cache would hold now
  double compression() const { return bytes_held ? double(bytes_full) / double(bytes_held) : 1.0; }
};

class KVCache {
 public:
  // max_tokens: the context limit; no head ever holds more slots than this. kv_dtype: the
  // type rows are stored in (float32, the reference, unless a caller chooses otherwise).
  // rotation: needed only for KVPositions::Cache.
  KVCache(Backend& backend, int n_layers, int n_kv_heads, int head_dim, int max_tokens,
          DType kv_dtype = DType::F32, KeyRotation rotation = {});
  ~KVCache();
  KVCache(const KVCache&) = delete;
  KVCache& operator=(const KVCache&) = delete;

  // Bytes of keys + values one token takes in an uncompressed cache stored in kv_dtype.
  static size_t bytes_per_token(int n_layers, int n_kv_heads, int head_dim, DType kv_dtype) {
    return 2 * size_t(n_layers) * n_kv_heads * head_dim * dtype_bytes(kv_dtype);
  }

  int n_layers() const { return n_layers_; }
  int n_kv_heads() const { return n_kv_heads_; }
  int head_dim() const { return head_dim_; }
  int max_tokens() const { return max_tokens_; }
  int tokens_seen() const { return tokens_seen_; }
  DType kv_dtype() const { return dtype_; }

  // The mode, chosen while the cache is empty (else std::logic_error); Cache needs the
  // KeyRotation given at construction (else std::invalid_argument).
  void set_position_mode(KVPositions mode);
  KVPositions position_mode() const { return position_mode_; }
  // The position the next token appended to `layer` rotates by: tokens_seen() in Original
  // mode, the layer's number of slots in Cache mode. Without a layer: the largest over
  // layers (what a context limit checks).
  int next_position(int layer) const;
  int next_position() const;

  // Appends T new tokens, at positions first_position .. first_position + T - 1, to every
  // head of `layer`, in one backend op. keys/values are float32 backend buffers: row t of
  // head h starts at keys + t * row_stride + h * head_dim (row_stride >= n_kv_heads *
  // head_dim, so they may be columns of a wider buffer such as the fused QKV projection).
  void append(int layer, const float* keys, const float* values, int row_stride,
              int first_position, int T);
  // Appends every row `source` holds in `layer` (same shape and dtype, no shared slots),
  // with their positions, to this cache's empty `layer`: a copy of a prefill another cache
  // made (shared prefill, kv/observer.h). Else std::invalid_argument.
  void append_layer_from(const KVCache& source, int layer);
  // Called once per forward pass, after every layer appended its T tokens.
  void advance(int T) { tokens_seen_ += T; }

  // Keeps slots keep_indices (ascending, unique, < length) of one head, in order, and
  // returns storage that is no longer needed to the backend. In Cache mode the keys that
  // move are turned to their new slots. Shared slots cannot be
  // evicted: keep_indices must begin with 0..shared_length-1, else std::invalid_argument.
  void compact(int layer, int head, const std::vector<int32_t>& keep_indices);
  // Drops every token and all shared storage (and the checkpoint).
  void clear();

  // ---- undo (a chat turn that Ctrl-C or an error stops leaves no trace) -----------------
  // checkpoint() marks the cache as it is now; rollback() returns it to the mark, exactly
  // (rows, positions, shared storage, capacities); commit() keeps what came after. Both
  // end the checkpoint. Until then appends cost nothing more (rollback truncates them),
  // and the first eviction or merge that touches a head saves a copy of what it held at
  // the mark: a turn that only appended copies nothing, a turn that compressed copies
  // only the heads it rewrote, once each.
  void checkpoint();
  void rollback();
  void commit();

  int length(int layer, int head) const {
    const HeadStore& s = store(layer, head);
    return s.shared + s.len;
  }
  // Rows a head's storage holds room for (its own rows, not the shared slots).
  int capacity(int layer, int head) const { return store(layer, head).capacity; }
  // Original positions of the slots, in view() order.
  const std::vector<int32_t>& positions(int layer, int head) const {
    return store(layer, head).positions;
  }
  // Keys/values of every slot of every head of `layer`. Heads without shared slots point
  // into their storage (no copy); the others are restored into a scratch buffer, so their
  // pointers stay valid only until the next view() of a merged layer or any change.
  std::vector<KVHeadView> view(int layer) const;
  KVStats stats() const;

  // ---- shared slots (cross-layer merging) ---------------------------------------------
  // Leading slots of (layer, head) held in shared storage.
  int shared_length(int layer, int head) const { return store(layer, head).shared; }
  // The shared storage, created on first use.
  MergedLayers& merged_layers();
  // A head's own rows (the slots after the shared ones), as stored.
  KVHeadView rows(int layer, int head) const;
  // Moves rows `rows` (ascending) of a head out of its storage: their tokens become the
  // head's last shared slots, in order. Only the shared storage that now holds their
  // states calls this.
  void move_rows_to_shared(int layer, int head, const std::vector<int32_t>& rows);

 private:
  struct HeadStore {
    void* keys = nullptr;  // the rows: [capacity][head_dim] in the KV dtype
    void* values = nullptr;
    int capacity = 0;
    int len = 0;     // rows held
    int shared = 0;  // shared slots in front of the rows
    std::vector<int32_t> positions;  // shared + len entries, slot order
  };
  HeadStore& store(int layer, int head) { return heads_[size_t(layer) * n_kv_heads_ + head]; }
  const HeadStore& store(int layer, int head) const {
    return heads_[size_t(layer) * n_kv_heads_ + head];
  }
  void reallocate(HeadStore& s, int capacity);
  // Growth (kv_cache.cpp says the rule): the free rows a head keeps ahead of need, and the
  // capacity a head holding `rows` rows grows to.
  int reserve_rows() const { return 2 * n_layers_; }
  int grown_capacity(const HeadStore& s, int rows) const;
  // Keeps rows `keep` (ascending) of s, returning freed storage when it is worth it.
  void keep_rows(HeadStore& s, const std::vector<int32_t>& keep, bool shrink_to_fit);
  size_t row_bytes() const { return size_t(head_dim_) * dtype_bytes(dtype_); }
  // Under a checkpoint, saves the marked state of a head before its first change.
  void save_marked(int layer, int head);

  // A head at the checkpoint: its size, and its saved state once something rewrote it.
  struct HeadMark {
    int len = 0, capacity = 0;
    std::optional<HeadStore> saved;  // a copy of the head (its own storage) at the mark
  };
  struct Checkpoint {
    int tokens_seen = 0;
    std::vector<HeadMark> heads;                // as heads_
    std::optional<MergedLayers::Mark> merged;  // nullopt: no shared storage at the mark
  };

  Backend& backend_;
  int n_layers_, n_kv_heads_, head_dim_, max_tokens_;
  DType dtype_;
  KeyRotation rotation_;
  KVPositions position_mode_ = KVPositions::Original;
  int tokens_seen_ = 0;
  // The step (tokens_seen_) and layer of the last growth ahead of need: one layer per step.
  int ahead_step_ = -1, ahead_layer_ = -1;
  std::vector<HeadStore> heads_;
  std::unique_ptr<MergedLayers> merged_;  // null until a method merges layers
  std::optional<Checkpoint> checkpoint_;
};

}  // namespace kvlm
