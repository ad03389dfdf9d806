#include "kv/kv_cache.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace kvlm {

namespace {
// Storage grows by half again (amortised O(1) appends) in whole chunks of rows.
constexpr int kChunkRows = 64;
int round_up_rows(int rows) { return (rows + kChunkRows - 1) / kChunkRows * kChunkRows; }
}  // namespace

KVCache::KVCache(Backend& backend, int n_layers, int n_kv_heads, int head_dim, int max_tokens)
    : backend_(backend), n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim),
      max_tokens_(max_tokens), heads_(size_t(n_layers) * n_kv_heads) {}

KVCache::~KVCache() {
  for (HeadStore& s : heads_) reallocate(s, 0);
}

void KVCache::reallocate(HeadStore& s, int capacity) {
  float* keys = capacity ? backend_.alloc(size_t(capacity) * head_dim_) : nullptr;
  float* values = capacity ? backend_.alloc(size_t(capacity) * head_dim_) : nullptr;
  int keep = std::min(s.len, capacity);
  if (keep > 0) {
    backend_.copy_rows(keys, head_dim_, s.keys, head_dim_, keep, head_dim_);
    backend_.copy_rows(values, head_dim_, s.values, head_dim_, keep, head_dim_);
  }
  if (s.keys) backend_.release(s.keys);
  if (s.values) backend_.release(s.values);
  s.keys = keys;
  s.values = values;
  s.capacity = capacity;
  s.len = keep;
}

void KVCache::append(int layer, const float* keys, const float* values, const int32_t* positions,
                     int T) {
  const int kv_dim = n_kv_heads_ * head_dim_;
  for (int h = 0; h < n_kv_heads_; h++) {
    HeadStore& s = store(layer, h);
    if (s.len + T > max_tokens_)
      throw std::runtime_error("KV cache full: " + std::to_string(s.len + T) +
                               " tokens exceed the context size of " +
                               std::to_string(max_tokens_) + " (raise --ctx-size)");
    if (s.len + T > s.capacity)
      reallocate(s, std::min(max_tokens_, round_up_rows(std::max(s.len + T, s.capacity * 3 / 2))));
    backend_.copy_rows(s.keys + size_t(s.len) * head_dim_, head_dim_, keys + h * head_dim_, kv_dim,
                       T, head_dim_);
    backend_.copy_rows(s.values + size_t(s.len) * head_dim_, head_dim_, values + h * head_dim_,
                       kv_dim, T, head_dim_);
    s.positions.insert(s.positions.end(), positions, positions + T);
    s.len += T;
  }
}

void KVCache::compact(int layer, int head, const std::vector<int32_t>& keep_indices) {
  HeadStore& s = store(layer, head);
  const int n = int(keep_indices.size());
  backend_.compact_rows(s.keys, keep_indices.data(), n, head_dim_);
  backend_.compact_rows(s.values, keep_indices.data(), n, head_dim_);
  for (int i = 0; i < n; i++) s.positions[i] = s.positions[keep_indices[i]];
  s.positions.resize(n);
  s.len = n;
  // Give memory back once more than half the storage is dead: a compressed cache must
  // really hold fewer bytes, not just fewer live rows.
  if (s.capacity > 2 * round_up_rows(n)) reallocate(s, round_up_rows(n));
}

void KVCache::clear() {
  for (HeadStore& s : heads_) {
    reallocate(s, 0);
    s.positions.clear();
  }
  tokens_seen_ = 0;
}

std::vector<KVHeadView> KVCache::view(int layer) const {
  std::vector<KVHeadView> v(n_kv_heads_);
  for (int h = 0; h < n_kv_heads_; h++) {
    const HeadStore& s = store(layer, h);
    v[h] = {s.keys, s.values, s.len};
  }
  return v;
}

KVStats KVCache::stats() const {
  KVStats st;
  st.tokens_seen = tokens_seen_;
  st.lengths.assign(n_layers_, std::vector<int>(n_kv_heads_));
  for (int l = 0; l < n_layers_; l++)
    for (int h = 0; h < n_kv_heads_; h++) {
      const HeadStore& s = store(l, h);
      st.lengths[l][h] = s.len;
      st.bytes_held += 2 * size_t(s.len) * row_bytes();
      st.bytes_allocated += 2 * size_t(s.capacity) * row_bytes();
    }
  st.bytes_full = 2 * size_t(tokens_seen_) * row_bytes() * n_layers_ * n_kv_heads_;
  return st;
}

}  // namespace kvlm
