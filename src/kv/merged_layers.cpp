#include "kv/merged_layers.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "kv/kv_cache.h"

namespace kvlm {

namespace {
constexpr int kChunkRows = 64;  // the scratch grows in whole chunks, like the cache's rows
}  // namespace

MergedLayers::MergedLayers(Backend& backend, int n_layers, int n_kv_heads, int head_dim)
    : backend_(backend), ops_(merge_ops(backend)), n_layers_(n_layers), n_kv_heads_(n_kv_heads),
      head_dim_(head_dim), partner_(n_layers, -1), shared_(size_t(n_layers) * n_kv_heads) {}

MergedLayers::~MergedLayers() {
  for (SharedStore& sh : shared_) resize_shared(sh, 0);
  if (scratch_keys_) backend_.release(scratch_keys_);
  if (scratch_values_) backend_.release(scratch_values_);
}

void MergedLayers::resize_shared(SharedStore& sh, int len) {
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

std::vector<int32_t> MergedLayers::rows_of(const KVCache& cache, int layer, int head,
                                           const std::vector<int32_t>& slots) const {
  const int shared_len = cache.shared_length(layer, head), len = cache.length(layer, head);
  std::vector<int32_t> rows(slots.size());
  for (size_t i = 0; i < slots.size(); i++) {
    if (slots[i] < shared_len || slots[i] >= len || (i > 0 && slots[i] <= slots[i - 1]))
      throw std::invalid_argument("KVCache: slots to merge must be ascending and unmerged (layer " +
                                  std::to_string(layer) + " head " + std::to_string(head) +
                                  ", slot " + std::to_string(slots[i]) + ")");
    rows[i] = slots[i] - shared_len;
  }
  return rows;
}

MergedLayers::PairAngles MergedLayers::pair_angles(const KVCache& cache, int lower, int upper,
                                                   int head,
                                                   const std::vector<int32_t>& lower_slots,
                                                   const std::vector<int32_t>& upper_slots) const {
  if (lower_slots.size() != upper_slots.size())
    throw std::invalid_argument("KVCache::pair_angles: slot lists differ in length");
  const std::vector<int32_t> lo = rows_of(cache, lower, head, lower_slots);
  const std::vector<int32_t> up = rows_of(cache, upper, head, upper_slots);
  const int n = int(lo.size());
  PairAngles angles{std::vector<float>(n), std::vector<float>(n)};
  if (n == 0) return angles;
  float* out = backend_.alloc(n);
  const KVHeadView a = cache.rows(lower, head), b = cache.rows(upper, head);
  ops_.pair_angles(out, a.keys, lo.data(), b.keys, up.data(), n, head_dim_);
  backend_.download(angles.keys.data(), out, n);
  ops_.pair_angles(out, a.values, lo.data(), b.values, up.data(), n, head_dim_);
  backend_.download(angles.values.data(), out, n);
  backend_.release(out);
  return angles;
}

void MergedLayers::merge(KVCache& cache, int lower, int upper, int head,
                         const std::vector<int32_t>& lower_slots,
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
  const std::vector<int32_t> lo = rows_of(cache, lower, head, lower_slots);
  const std::vector<int32_t> up = rows_of(cache, upper, head, upper_slots);
  for (size_t i = 0; i < lower_slots.size(); i++)
    if (cache.positions(lower, head)[lower_slots[i]] != cache.positions(upper, head)[upper_slots[i]])
      throw std::invalid_argument(where + "slots hold different tokens");
  partner_[lower] = upper;
  partner_[upper] = lower;
  const int m = int(lo.size());
  if (m == 0) return;

  SharedStore& sh = shared(lower, head);
  const int first = sh.len;
  resize_shared(sh, first + m);
  const size_t dir_offset = size_t(first) * head_dim_;
  const KVHeadView a = cache.rows(lower, head), b = cache.rows(upper, head);
  ops_.merge_pair(sh.dir_keys + dir_offset, sh.mag_keys[0] + first, sh.mag_keys[1] + first,
                  a.keys, lo.data(), b.keys, up.data(), m, head_dim_, t);
  ops_.merge_pair(sh.dir_values + dir_offset, sh.mag_values[0] + first,
                  sh.mag_values[1] + first, a.values, lo.data(), b.values, up.data(), m,
                  head_dim_, t);
  cache.move_rows_to_shared(lower, head, lo);
  cache.move_rows_to_shared(upper, head, up);
}

void MergedLayers::restore(const KVCache& cache, int layer, std::vector<KVHeadView>& heads) const {
  int restore_rows = 0;
  for (int h = 0; h < n_kv_heads_; h++)
    if (cache.shared_length(layer, h) > 0) restore_rows += cache.length(layer, h);
  if (restore_rows > scratch_rows_) {
    if (scratch_keys_) backend_.release(scratch_keys_);
    if (scratch_values_) backend_.release(scratch_values_);
    scratch_rows_ = (restore_rows + kChunkRows - 1) / kChunkRows * kChunkRows;
    scratch_keys_ = backend_.alloc(size_t(scratch_rows_) * head_dim_);
    scratch_values_ = backend_.alloc(size_t(scratch_rows_) * head_dim_);
  }
  const int lower = std::min(layer, partner_[layer]);
  const int side = layer == lower ? 0 : 1;
  size_t offset = 0;  // floats used in the scratch buffers so far
  for (int h = 0; h < n_kv_heads_; h++) {
    const int m = cache.shared_length(layer, h);
    if (m == 0) continue;
    const SharedStore& sh = shared(lower, h);
    const KVHeadView own = heads[h];
    float* keys = scratch_keys_ + offset;
    float* values = scratch_values_ + offset;
    const size_t shared_floats = size_t(m) * head_dim_;
    ops_.restore_rows(keys, sh.dir_keys, sh.mag_keys[side], m, head_dim_);
    ops_.restore_rows(values, sh.dir_values, sh.mag_values[side], m, head_dim_);
    backend_.copy_rows(keys + shared_floats, head_dim_, own.keys, head_dim_, own.len, head_dim_);
    backend_.copy_rows(values + shared_floats, head_dim_, own.values, head_dim_, own.len, head_dim_);
    heads[h] = {keys, values, m + own.len};
    offset += size_t(m + own.len) * head_dim_;
  }
}

size_t MergedLayers::bytes_held() const {
  size_t bytes = 0;
  for (const SharedStore& sh : shared_)
    bytes += 2 * size_t(sh.len) * (size_t(head_dim_) + 2) * sizeof(float);
  return bytes;
}

MergedLayers::Mark MergedLayers::mark() const {
  Mark m{{}, partner_};
  for (const SharedStore& sh : shared_) m.lengths.push_back(sh.len);
  return m;
}

void MergedLayers::rollback(const Mark& mark) {
  for (size_t i = 0; i < shared_.size(); i++)
    if (shared_[i].len != mark.lengths[i]) resize_shared(shared_[i], mark.lengths[i]);
  partner_ = mark.partner;
}

size_t MergedLayers::bytes_scratch() const {
  return 2 * size_t(scratch_rows_) * head_dim_ * sizeof(float);
}

}  // namespace kvlm
