#include "kv/kv_cache.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

namespace kvlm {

namespace {
// Storage grows by half again (amortised O(1) appends) in whole chunks of rows.
constexpr int kChunkRows = 64;
int round_up_rows(int rows) { return (rows + kChunkRows - 1) / kChunkRows * kChunkRows; }
}  // namespace

KVCache::KVCache(Backend& backend, int n_layers, int n_kv_heads, int head_dim, int max_tokens)
    : backend_(backend), n_layers_(n_layers), n_kv_heads_(n_kv_heads), head_dim_(head_dim),
      max_tokens_(max_tokens), heads_(size_t(n_layers) * n_kv_heads), partner_(n_layers, -1),
      shared_(size_t(n_layers) * n_kv_heads) {}

KVCache::~KVCache() { clear(); }

void KVCache::reallocate(HeadStore& s, int capacity) {
  float* keys = nullptr;
  float* values = nullptr;
  try {
    keys = capacity ? backend_.alloc(size_t(capacity) * head_dim_) : nullptr;
    values = capacity ? backend_.alloc(size_t(capacity) * head_dim_) : nullptr;
  } catch (const OutOfMemory& e) {
    if (keys) backend_.release(keys);
    throw OutOfMemory("the KV cache does not fit (" + std::to_string(capacity) +
                      " tokens for one head): " + e.what() +
                      " (lower --ctx-size, or compress with --kv)");
  }
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
    if (s.merged + s.len + T > max_tokens_)
      throw std::runtime_error("KV cache full: " + std::to_string(s.merged + s.len + T) +
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

void KVCache::keep_rows(HeadStore& s, const std::vector<int32_t>& keep, bool shrink_to_fit) {
  const int n = int(keep.size());
  backend_.compact_rows(s.keys, keep.data(), n, head_dim_);
  backend_.compact_rows(s.values, keep.data(), n, head_dim_);
  int32_t* row_positions = s.positions.data() + s.merged;
  for (int i = 0; i < n; i++) row_positions[i] = row_positions[keep[i]];
  s.positions.resize(size_t(s.merged) + n);
  s.len = n;
  // Give memory back once more than half the storage is dead (or at once, when asked):
  // a compressed cache must really hold fewer bytes, not just fewer live rows.
  const int fit = round_up_rows(n);
  if (shrink_to_fit ? s.capacity > fit : s.capacity > 2 * fit) reallocate(s, fit);
}

void KVCache::compact(int layer, int head, const std::vector<int32_t>& keep_indices) {
  HeadStore& s = store(layer, head);
  for (int i = 0; i < s.merged; i++)
    if (i >= int(keep_indices.size()) || keep_indices[i] != i)
      throw std::invalid_argument("KVCache::compact: layer " + std::to_string(layer) + " head " +
                                  std::to_string(head) + " shares its first " +
                                  std::to_string(s.merged) +
                                  " tokens with its merged partner layer; they cannot be evicted");
  std::vector<int32_t> keep(keep_indices.begin() + s.merged, keep_indices.end());
  for (int32_t& k : keep) k -= s.merged;
  keep_rows(s, keep, false);
}

void KVCache::clear() {
  for (HeadStore& s : heads_) {
    reallocate(s, 0);
    s.merged = 0;
    s.positions.clear();
  }
  for (SharedStore& sh : shared_) resize_shared(sh, 0);
  std::fill(partner_.begin(), partner_.end(), -1);
  if (scratch_keys_) backend_.release(scratch_keys_);
  if (scratch_values_) backend_.release(scratch_values_);
  scratch_keys_ = scratch_values_ = nullptr;
  scratch_rows_ = 0;
  tokens_seen_ = 0;
}

std::vector<KVHeadView> KVCache::view(int layer) const {
  std::vector<KVHeadView> v(n_kv_heads_);
  int restore_rows = 0;
  for (int h = 0; h < n_kv_heads_; h++)
    if (store(layer, h).merged > 0) restore_rows += length(layer, h);
  if (restore_rows > scratch_rows_) {
    if (scratch_keys_) backend_.release(scratch_keys_);
    if (scratch_values_) backend_.release(scratch_values_);
    scratch_rows_ = round_up_rows(restore_rows);
    scratch_keys_ = backend_.alloc(size_t(scratch_rows_) * head_dim_);
    scratch_values_ = backend_.alloc(size_t(scratch_rows_) * head_dim_);
  }
  size_t offset = 0;  // floats used in the scratch buffers so far
  for (int h = 0; h < n_kv_heads_; h++) {
    const HeadStore& s = store(layer, h);
    if (s.merged == 0) {
      v[h] = {s.keys, s.values, s.len};
      continue;
    }
    const int lower = std::min(layer, partner_[layer]);
    const int side = layer == lower ? 0 : 1;
    const SharedStore& sh = shared(lower, h);
    float* keys = scratch_keys_ + offset;
    float* values = scratch_values_ + offset;
    const size_t merged_floats = size_t(s.merged) * head_dim_;
    backend_.restore_rows(keys, sh.dir_keys, sh.mag_keys[side], s.merged, head_dim_);
    backend_.restore_rows(values, sh.dir_values, sh.mag_values[side], s.merged, head_dim_);
    backend_.copy_rows(keys + merged_floats, head_dim_, s.keys, head_dim_, s.len, head_dim_);
    backend_.copy_rows(values + merged_floats, head_dim_, s.values, head_dim_, s.len, head_dim_);
    v[h] = {keys, values, s.merged + s.len};
    offset += size_t(s.merged + s.len) * head_dim_;
  }
  return v;
}

void KVCache::resize_shared(SharedStore& sh, int len) {
  const int keep = std::min(sh.len, len);
  auto resize = [&](float*& buf, size_t floats_per_token) {
    float* fresh = len ? backend_.alloc(size_t(len) * floats_per_token) : nullptr;
    const int kept_floats = int(keep * floats_per_token);
    if (keep > 0) backend_.copy_rows(fresh, kept_floats, buf, kept_floats, 1, kept_floats);
    if (buf) backend_.release(buf);
    buf = fresh;
  };
  resize(sh.dir_keys, head_dim_);
  resize(sh.dir_values, head_dim_);
  for (int side = 0; side < 2; side++) {
    resize(sh.mag_keys[side], 1);
    resize(sh.mag_values[side], 1);
  }
  sh.len = len;
}

std::vector<int32_t> KVCache::rows_of(int layer, int head,
                                      const std::vector<int32_t>& slots) const {
  const HeadStore& s = store(layer, head);
  std::vector<int32_t> rows(slots.size());
  for (size_t i = 0; i < slots.size(); i++) {
    if (slots[i] < s.merged || slots[i] >= s.merged + s.len || (i > 0 && slots[i] <= slots[i - 1]))
      throw std::invalid_argument("KVCache: slots to merge must be ascending and unmerged (layer " +
                                  std::to_string(layer) + " head " + std::to_string(head) +
                                  ", slot " + std::to_string(slots[i]) + ")");
    rows[i] = slots[i] - s.merged;
  }
  return rows;
}

KVCache::PairAngles KVCache::pair_angles(int lower, int upper, int head,
                                         const std::vector<int32_t>& lower_slots,
                                         const std::vector<int32_t>& upper_slots) const {
  if (lower_slots.size() != upper_slots.size())
    throw std::invalid_argument("KVCache::pair_angles: slot lists differ in length");
  const std::vector<int32_t> lo = rows_of(lower, head, lower_slots);
  const std::vector<int32_t> up = rows_of(upper, head, upper_slots);
  const int n = int(lo.size());
  PairAngles angles{std::vector<float>(n), std::vector<float>(n)};
  if (n == 0) return angles;
  float* out = backend_.alloc(n);
  const HeadStore& a = store(lower, head);
  const HeadStore& b = store(upper, head);
  backend_.pair_angles(out, a.keys, lo.data(), b.keys, up.data(), n, head_dim_);
  backend_.download(angles.keys.data(), out, n);
  backend_.pair_angles(out, a.values, lo.data(), b.values, up.data(), n, head_dim_);
  backend_.download(angles.values.data(), out, n);
  backend_.release(out);
  return angles;
}

void KVCache::merge(int lower, int upper, int head, const std::vector<int32_t>& lower_slots,
                    const std::vector<int32_t>& upper_slots, float t) {
  const std::string where = "KVCache::merge(" + std::to_string(lower) + ", " +
                            std::to_string(upper) + "): ";
  if (!(0 <= lower && lower < upper && upper < n_layers_))
    throw std::invalid_argument(where + "needs 0 <= lower < upper < n_layers");
  if ((partner_[lower] != -1 && partner_[lower] != upper) ||
      (partner_[upper] != -1 && partner_[upper] != lower))
    throw std::invalid_argument(where + "a layer is already paired with another");
  if (lower_slots.size() != upper_slots.size())
    throw std::invalid_argument(where + "slot lists differ in length");
  const std::vector<int32_t> lo = rows_of(lower, head, lower_slots);
  const std::vector<int32_t> up = rows_of(upper, head, upper_slots);
  HeadStore& a = store(lower, head);
  HeadStore& b = store(upper, head);
  for (size_t i = 0; i < lower_slots.size(); i++)
    if (a.positions[lower_slots[i]] != b.positions[upper_slots[i]])
      throw std::invalid_argument(where + "slots hold different tokens");
  partner_[lower] = upper;
  partner_[upper] = lower;
  const int m = int(lo.size());
  if (m == 0) return;

  SharedStore& sh = shared(lower, head);
  const int first = sh.len;
  resize_shared(sh, first + m);
  const size_t dir_offset = size_t(first) * head_dim_;
  backend_.merge_pair(sh.dir_keys + dir_offset, sh.mag_keys[0] + first, sh.mag_keys[1] + first,
                      a.keys, lo.data(), b.keys, up.data(), m, head_dim_, t);
  backend_.merge_pair(sh.dir_values + dir_offset, sh.mag_values[0] + first,
                      sh.mag_values[1] + first, a.values, lo.data(), b.values, up.data(), m,
                      head_dim_, t);

  // The merged tokens move from each layer's rows to the end of its merged slots.
  for (auto [s, rows] : {std::pair{&a, &lo}, std::pair{&b, &up}}) {
    std::vector<int32_t> merged_positions(m), keep;
    for (int i = 0; i < m; i++) merged_positions[i] = s->positions[s->merged + (*rows)[i]];
    for (int r = 0, i = 0; r < s->len; r++) {
      if (i < m && (*rows)[i] == r) i++;
      else keep.push_back(r);
    }
    keep_rows(*s, keep, true);
    s->positions.insert(s->positions.begin() + s->merged, merged_positions.begin(),
                        merged_positions.end());
    s->merged += m;
  }
}

KVStats KVCache::stats() const {
  KVStats st;
  st.tokens_seen = tokens_seen_;
  st.lengths.assign(n_layers_, std::vector<int>(n_kv_heads_));
  for (int l = 0; l < n_layers_; l++)
    for (int h = 0; h < n_kv_heads_; h++) {
      const HeadStore& s = store(l, h);
      st.lengths[l][h] = s.merged + s.len;
      st.bytes_held += 2 * size_t(s.len) * row_bytes();
      st.bytes_allocated += 2 * size_t(s.capacity) * row_bytes();
      // Shared directions once per pair (keys + values), magnitudes once per layer.
      const SharedStore& sh = shared(l, h);
      const size_t shared_bytes = 2 * size_t(sh.len) * (row_bytes() + 2 * sizeof(float));
      st.bytes_held += shared_bytes;
      st.bytes_allocated += shared_bytes;
    }
  st.bytes_scratch = 2 * size_t(scratch_rows_) * row_bytes();
  st.bytes_full = 2 * size_t(tokens_seen_) * row_bytes() * n_layers_ * n_kv_heads_;
  return st;
}

}  // namespace kvlm
