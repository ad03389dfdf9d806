// KVCache: the keys and values of every past token, per layer and per KV head.
//
// Each (layer, kv head) owns its own storage with its own live length, so compression
// methods can keep different numbers of tokens per head and per layer, and the attention
// op reads exactly those lengths. Keys are stored after RoPE, together with the original
// position of each token, so eviction never changes what a kept key means.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "backend.h"

namespace kvlm {

struct KVStats {
  int tokens_seen = 0;                   // tokens ever appended (the next token's position)
  std::vector<std::vector<int>> lengths; // [layer][kv head] live rows
  size_t bytes_held = 0;                 // bytes of live keys + values
  size_t bytes_allocated = 0;            // bytes of storage reserved, live or not
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

  // Keeps rows keep_indices (ascending, unique, < length) of one head, in order, and
  // returns storage that is no longer needed to the backend.
  void compact(int layer, int head, const std::vector<int32_t>& keep_indices);
  void clear();

  int length(int layer, int head) const { return store(layer, head).len; }
  const std::vector<int32_t>& positions(int layer, int head) const {
    return store(layer, head).positions;
  }
  std::vector<KVHeadView> view(int layer) const;
  KVStats stats() const;

 private:
  struct HeadStore {
    float* keys = nullptr;
    float* values = nullptr;
    int capacity = 0;
    int len = 0;
    std::vector<int32_t> positions;
  };
  HeadStore& store(int layer, int head) { return heads_[size_t(layer) * n_kv_heads_ + head]; }
  const HeadStore& store(int layer, int head) const {
    return heads_[size_t(layer) * n_kv_heads_ + head];
  }
  void reallocate(HeadStore& s, int capacity);
  size_t row_bytes() const { return size_t(head_dim_) * sizeof(float); }

  Backend& backend_;
  int n_layers_, n_kv_heads_, head_dim_, max_tokens_;
  int tokens_seen_ = 0;
  std::vector<HeadStore> heads_;
};

}  // namespace kvlm
