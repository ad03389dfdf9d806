#include "kv/merged_layers.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "kv/kv_cache.h"

namespace kvlm {

namespace {
constexpr int kChunkRows = 64;  // the scratch grows in whole chunks, like the cache's rows
}  // namespace

MergedLayers::MergedLayers(Backend& backend, int n_layers, int n_kv_heads, int head_dim,
                           DType kv_dtype)
    : backend_(backend), ops_(merge_ops(backend)), n_layers_(n_layers), n_kv_heads_(n_kv_heads),
      head_dim_(head_dim), dtype_(kv_dtype), partner_(n_layers, -1),
      shared_(size_t(n_layers) * n_kv_heads) {}

MergedLayers::~MergedLayers() {
  for (SharedStore& sh : shared_) resize_shared(sh, 0);
  if (scratch_keys_) release(scratch_keys_);
  if (scratch_values_) release(scratch_values_);
}

void* MergedLayers::alloc_bytes(size_t bytes) const {
  return backend_.alloc((bytes + sizeof(float) - 1) / sizeof(float));
}

void MergedLayers::resize_shared(SharedStore& sh, int len) {
  const int keep = std::min(sh.len, len);
  auto resize = [&](auto*& buf, size_t bytes_per_token) {
    void* fresh = len ? alloc_bytes(len * bytes_per_token) : nullptr;
    const size_t kept_bytes = keep * bytes_per_token;
    if (keep > 0) backend_.copy_rows(fresh, kept_bytes, buf, kept_bytes, 1, kept_bytes);
    if (buf) release(buf);
    buf = static_cast<std::remove_reference_t<decltype(buf)>>(fresh);
  };
  resize(sh.dir_keys, row_bytes());
  resize(sh.dir_values, row_bytes());
  for (int side = 0; side < 2; side++) {
    resize(sh.mag_keys[side], sizeof(float));
    resize(sh.mag_values[side], sizeof(float));
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
  ops_.pair_angles(out, dtype_, a.keys, lo.data(), b.keys, up.data(), n, head_dim_);
  backend_.download(angles.keys.data(), out, n);
  ops_.pair_angles(out, dtype_, a.values, lo.data(), b.values, up.data(), n, head_dim_);
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
  const size_t dir_offset = size_t(first) * row_bytes();
  const KVHeadView a = cache.rows(lower, head), b = cache.rows(upper, head);
  ops_.merge_pair(static_cast<char*>(sh.dir_keys) + dir_offset, sh.mag_keys[0] + first,
                  sh.mag_keys[1] + first, dtype_, a.keys, lo.data(), b.keys, up.data(), m,
                  head_dim_, t);
  ops_.merge_pair(static_cast<char*>(sh.dir_values) + dir_offset, sh.mag_values[0] + first,
                  sh.mag_values[1] + first, dtype_, a.values, lo.data(), b.values, up.data(), m,
                  head_dim_, t);
  cache.move_rows_to_shared(lower, head, lo);
  cache.move_rows_to_shared(upper, head, up);
}

void MergedLayers::restore(const KVCache& cache, int layer, std::vector<KVHeadView>& heads) const {
  int restore_rows = 0;
  for (int h = 0; h < n_kv_heads_; h++)
    if (cache.shared_length(layer, h) > 0) restore_rows += cache.length(layer, h);
  if (restore_rows > scratch_rows_) {
    if (scratch_keys_) release(scratch_keys_);
    if (scratch_values_) release(scratch_values_);
    scratch_rows_ = (restore_rows + kChunkRows - 1) / kChunkRows * kChunkRows;
    scratch_keys_ = alloc_bytes(scratch_rows_ * row_bytes());
    scratch_values_ = alloc_bytes(scratch_rows_ * row_bytes());
  }
  const int lower = std::min(layer, partner_[layer]);
  const int side = layer == lower ? 0 : 1;
  const size_t row = row_bytes();
  size_t offset = 0;  // bytes used in the scratch buffers so far
  for (int h = 0; h < n_kv_heads_; h++) {
    const int m = cache.shared_length(layer, h);
    if (m == 0) continue;
    const SharedStore& sh = shared(lower, h);
    const KVHeadView own = heads[h];
    char* keys = static_cast<char*>(scratch_keys_) + offset;
    char* values = static_cast<char*>(scratch_values_) + offset;
    ops_.restore_rows(keys, dtype_, sh.dir_keys, sh.mag_keys[side], m, head_dim_);
    ops_.restore_rows(values, dtype_, sh.dir_values, sh.mag_values[side], m, head_dim_);
    backend_.copy_rows(keys + m * row, row, own.keys, row, own.len, row);
    backend_.copy_rows(values + m * row, row, own.values, row, own.len, row);
    heads[h] = {keys, values, m + own.len, dtype_};
    offset += (m + own.len) * row;
  }
}

size_t MergedLayers::bytes_held() const {
  size_t bytes = 0;
  for (const SharedStore& sh : shared_)
    bytes += 2 * size_t(sh.len) * (row_bytes() + 2 * sizeof(float));
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
  return 2 * size_t(scratch_rows_) * row_bytes();
}

}  // namespace kvlm
