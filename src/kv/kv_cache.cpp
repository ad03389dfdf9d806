#include "kv/kv_cache.h"

#include <algorithm>
#include <stdexcept>
#include <string>

namespace kvlm {

// Growth. A head's storage grows by half again (amortised O(1) appends), in whole chunks
// of rows, and ahead of need, so that a steady decode step allocates nothing and no step
// regrows every head at once:
//  - a head keeps a reserve of 2 x n_layers free rows. When an append leaves it less, it
//    grows now, unless another layer already grew ahead in this step (tokens_seen): then
//    it waits. Layers that cross the line together grow in consecutive steps, one layer's
//    heads per step, and the reserve covers the up to n_layers steps a layer may wait.
//  - an append that does not fit at all (a prompt, a chat turn) grows at once, to hold the
//    new rows plus the reserve.
// Either way the new capacity is max(rows + reserve, capacity x 1.5), rounded up to a chunk
// and capped at the context size.
namespace {
constexpr int kChunkRows = 64;
int round_up_rows(int rows) { return (rows + kChunkRows - 1) / kChunkRows * kChunkRows; }
}  // namespace

KVCache::KVCache(Backend& backend, int n_layers, int n_kv_heads, int head_dim, int max_tokens,
                 DType kv_dtype, KeyRotation rotation)
    : backend_(backend), n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim),
      max_tokens_(max_tokens), dtype_(kv_dtype), rotation_(rotation),
      heads_(size_t(n_layers) * n_kv_heads) {}

void KVCache::set_position_mode(KVPositions mode) {
  if (tokens_seen_ > 0) throw std::logic_error("KVCache: the position mode changes only when empty");
  if (mode == KVPositions::Cache && !rotation_.inv_freq)
    throw std::invalid_argument("KVCache: positions in the cache need the model's RoPE settings");
  position_mode_ = mode;
}

int KVCache::next_position(int layer) const {
  if (position_mode_ == KVPositions::Original) return tokens_seen_;
  int slots = 0;  // the heads hold equally many; the largest is the safe reading regardless
  for (int h = 0; h < n_kv_heads_; h++) slots = std::max(slots, length(layer, h));
  return slots;
}

int KVCache::next_position() const {
  if (position_mode_ == KVPositions::Original) return tokens_seen_;
  int slots = 0;
  for (int l = 0; l < n_layers_; l++) slots = std::max(slots, next_position(l));
  return slots;
}

KVCache::~KVCache() { clear(); }

void KVCache::reallocate(HeadStore& s, int capacity) {
  const size_t floats = (size_t(capacity) * row_bytes() + sizeof(float) - 1) / sizeof(float);
  float* keys = nullptr;
  float* values = nullptr;
  try {
    keys = capacity ? backend_.alloc(floats) : nullptr;
    values = capacity ? backend_.alloc(floats) : nullptr;
  } catch (const OutOfMemory& e) {
    if (keys) backend_.release(keys);
    throw OutOfMemory("the KV cache does not fit (" + std::to_string(capacity) +
                      " tokens for one head): " + e.what() +
                      " (lower --ctx-size, or compress with --kv)");
  }
  int keep = std::min(s.len, capacity);
  if (keep > 0) {
    backend_.copy_rows(keys, row_bytes(), s.keys, row_bytes(), keep, row_bytes());
    backend_.copy_rows(values, row_bytes(), s.values, row_bytes(), keep, row_bytes());
  }
  if (s.keys) backend_.release(static_cast<float*>(s.keys));
  if (s.values) backend_.release(static_cast<float*>(s.values));
  s.keys = keys;
  s.values = values;
  s.capacity = capacity;
  s.len = keep;
}

int KVCache::grown_capacity(const HeadStore& s, int rows) const {
  return std::min(max_tokens_, round_up_rows(std::max(rows + reserve_rows(), s.capacity * 3 / 2)));
}

void KVCache::append(int layer, const float* keys, const float* values, int row_stride,
                     int first_position, int T) {
  const bool may_grow_ahead = ahead_step_ != tokens_seen_ || ahead_layer_ == layer;
  std::vector<KVAppendTarget> targets(n_kv_heads_);
  for (int h = 0; h < n_kv_heads_; h++) {
    HeadStore& s = store(layer, h);
    if (s.shared + s.len + T > max_tokens_)
      throw std::runtime_error("KV cache full: " + std::to_string(s.shared + s.len + T) +
                               " tokens exceed the context size of " +
                               std::to_string(max_tokens_) + " (raise --ctx-size)");
    const int rows = s.len + T, grown = grown_capacity(s, rows);
    const bool ahead = rows <= s.capacity && rows + reserve_rows() > s.capacity &&
                       grown > s.capacity && may_grow_ahead;
    if (rows > s.capacity || ahead) reallocate(s, grown);
    if (ahead) ahead_step_ = tokens_seen_, ahead_layer_ = layer;
    const size_t end = size_t(s.len) * row_bytes();
    targets[h] = {static_cast<char*>(s.keys) + end, static_cast<char*>(s.values) + end};
  }
  backend_.append_kv(targets, dtype_, keys, values, row_stride, head_dim_, T);
  for (int h = 0; h < n_kv_heads_; h++) {
    HeadStore& s = store(layer, h);
    for (int t = 0; t < T; t++) s.positions.push_back(first_position + t);
    s.len += T;
  }
}

void KVCache::append_layer_from(const KVCache& source, int layer) {
  if (source.n_kv_heads_ != n_kv_heads_ || source.head_dim_ != head_dim_ || source.dtype_ != dtype_)
    throw std::invalid_argument("KVCache::append_layer_from: the caches differ in shape or dtype");
  for (int h = 0; h < n_kv_heads_; h++) {
    const HeadStore& from = source.store(layer, h);
    HeadStore& s = store(layer, h);
    if (s.shared + s.len > 0 || from.shared > 0 || from.len > max_tokens_)
      throw std::invalid_argument("KVCache::append_layer_from: layer " + std::to_string(layer) +
                                  " is not empty here, shared there, or too long");
    if (from.len > s.capacity) reallocate(s, grown_capacity(s, from.len));
    backend_.copy_rows(s.keys, row_bytes(), from.keys, row_bytes(), from.len, row_bytes());
    backend_.copy_rows(s.values, row_bytes(), from.values, row_bytes(), from.len, row_bytes());
    s.len = from.len;
    s.positions = from.positions;
  }
}

void KVCache::keep_rows(HeadStore& s, const std::vector<int32_t>& keep, bool shrink_to_fit) {
  const int n = int(keep.size());
  backend_.compact_rows(s.keys, keep.data(), n, row_bytes());
  backend_.compact_rows(s.values, keep.data(), n, row_bytes());
  int32_t* row_positions = s.positions.data() + s.shared;
  for (int i = 0; i < n; i++) row_positions[i] = row_positions[keep[i]];
  s.positions.resize(size_t(s.shared) + n);
  s.len = n;
  // Give memory back once more than half the storage is dead (or at once, when asked):
  // a compressed cache must really hold fewer bytes, not just fewer live rows.
  const int fit = round_up_rows(n);
  if (shrink_to_fit ? s.capacity > fit : s.capacity > 2 * fit) reallocate(s, fit);
}

void KVCache::compact(int layer, int head, const std::vector<int32_t>& keep_indices) {
  save_marked(layer, head);
  HeadStore& s = store(layer, head);
  for (int i = 0; i < s.shared; i++)
    if (i >= int(keep_indices.size()) || keep_indices[i] != i)
      throw std::invalid_argument("KVCache::compact: layer " + std::to_string(layer) + " head " +
                                  std::to_string(head) + " shares its first " +
                                  std::to_string(s.shared) +
                                  " tokens with its merged partner layer; they cannot be evicted");
  std::vector<int32_t> keep(keep_indices.begin() + s.shared, keep_indices.end());
  for (int32_t& k : keep) k -= s.shared;
  keep_rows(s, keep, false);
  if (position_mode_ == KVPositions::Cache) {
    std::vector<int32_t> shifts(keep.size());  // row i was row keep[i]: it moved i - keep[i]
    bool moved = false;
    for (size_t i = 0; i < keep.size(); i++) moved |= (shifts[i] = int32_t(i) - keep[i]) != 0;
    if (moved)
      backend_.rotate_keys(s.keys, dtype_, shifts.data(), s.len, head_dim_, rotation_.inv_freq,
                           rotation_.rope_dim, rotation_.adjacent_pairs);
  }
}

void KVCache::clear() {
  commit();
  for (HeadStore& s : heads_) {
    reallocate(s, 0);
    s.shared = 0;
    s.positions.clear();
  }
  merged_.reset();
  tokens_seen_ = 0;
  ahead_step_ = ahead_layer_ = -1;
}

void KVCache::checkpoint() {
  commit();
  Checkpoint c;
  c.tokens_seen = tokens_seen_;
  for (const HeadStore& s : heads_) c.heads.push_back({s.len, s.capacity, std::nullopt});
  if (merged_) c.merged = merged_->mark();
  checkpoint_ = std::move(c);
}

void KVCache::save_marked(int layer, int head) {
  if (!checkpoint_) return;
  HeadMark& mark = checkpoint_->heads[size_t(layer) * n_kv_heads_ + head];
  if (mark.saved) return;
  // Until now the head only grew: its first mark.len rows and their positions (after any
  // shared slots, which only a change saved here can alter) are what it held at the mark.
  const HeadStore& s = store(layer, head);
  HeadStore copy;
  reallocate(copy, mark.capacity);
  if (mark.len > 0) {
    backend_.copy_rows(copy.keys, row_bytes(), s.keys, row_bytes(), mark.len, row_bytes());
    backend_.copy_rows(copy.values, row_bytes(), s.values, row_bytes(), mark.len, row_bytes());
  }
  copy.len = mark.len;
  copy.shared = s.shared;
  copy.positions.assign(s.positions.begin(), s.positions.begin() + s.shared + mark.len);
  mark.saved = std::move(copy);
}

void KVCache::rollback() {
  if (!checkpoint_) return;
  Checkpoint c = std::move(*checkpoint_);
  checkpoint_.reset();
  for (size_t i = 0; i < heads_.size(); i++) {
    HeadStore& s = heads_[i];
    const HeadMark& mark = c.heads[i];
    if (mark.saved) {
      reallocate(s, 0);
      s = *mark.saved;  // takes over the copy's storage
      continue;
    }
    s.len = mark.len;  // rows appended after the mark go
    s.positions.resize(size_t(s.shared) + s.len);
    if (s.capacity != mark.capacity) reallocate(s, mark.capacity);
  }
  if (c.merged) merged_->rollback(*c.merged);
  else merged_.reset();
  tokens_seen_ = c.tokens_seen;
}

void KVCache::commit() {
  if (!checkpoint_) return;
  for (HeadMark& mark : checkpoint_->heads)
    if (mark.saved) reallocate(*mark.saved, 0);
  checkpoint_.reset();
}

MergedLayers& KVCache::merged_layers() {
  if (!merged_)
    merged_ = std::make_unique<MergedLayers>(backend_, n_layers_, n_kv_heads_, head_dim_, dtype_);
  return *merged_;
}

KVHeadView KVCache::rows(int layer, int head) const {
  const HeadStore& s = store(layer, head);
  return {s.keys, s.values, s.len, dtype_};
}

void KVCache::move_rows_to_shared(int layer, int head, const std::vector<int32_t>& rows) {
  save_marked(layer, head);
  HeadStore& s = store(layer, head);
  std::vector<int32_t> moved_positions, keep;
  for (int r = 0, i = 0; r < s.len; r++) {
    if (i < int(rows.size()) && rows[i] == r) moved_positions.push_back(s.positions[s.shared + r]), i++;
    else keep.push_back(r);
  }
  keep_rows(s, keep, true);
  s.positions.insert(s.positions.begin() + s.shared, moved_positions.begin(),
                     moved_positions.end());
  s.shared += int(moved_positions.size());
}

std::vector<KVHeadView> KVCache::view(int layer) const {
  std::vector<KVHeadView> v(n_kv_heads_);
  bool any_shared = false;
  for (int h = 0; h < n_kv_heads_; h++) {
    v[h] = rows(layer, h);
    any_shared = any_shared || store(layer, h).shared > 0;
  }
  if (any_shared) merged_->restore(*this, layer, v);
  return v;
}

KVStats KVCache::stats() const {
  KVStats st;
  st.tokens_seen = tokens_seen_;
  st.lengths.assign(n_layers_, std::vector<int>(n_kv_heads_));
  for (int l = 0; l < n_layers_; l++)
    for (int h = 0; h < n_kv_heads_; h++) {
      const HeadStore& s = store(l, h);
      st.lengths[l][h] = s.shared + s.len;
      st.bytes_held += 2 * size_t(s.len) * row_bytes();
      st.bytes_allocated += 2 * size_t(s.capacity) * row_bytes();
    }
  if (merged_) {
    st.bytes_held += merged_->bytes_held();
    st.bytes_allocated += merged_->bytes_held();
    st.bytes_scratch = merged_->bytes_scratch();
  }
  st.bytes_full = size_t(tokens_seen_) * bytes_per_token(n_layers_, n_kv_heads_, head_dim_, dtype_);
  return st;
}

}  // namespace kvlm
