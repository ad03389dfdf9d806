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
  for (SharedStore& sh : shared_) truncate_shared(sh, 0, 0, 0);
  if (scratch_keys_) release(scratch_keys_);
  if (scratch_values_) release(scratch_values_);
}

void* MergedLayers::alloc_bytes(size_t bytes) const {
  return backend_.alloc((bytes + sizeof(float) - 1) / sizeof(float));
}

void MergedLayers::resize_half(SharedHalf& half, int merged, int kept_exact) {
  // buf holds `old_n` items of `item_bytes`; afterwards it holds `n`, the first ones kept.
  auto resize = [&](auto*& buf, int old_n, int n, size_t item_bytes) {
    if (n == old_n) return;
    void* fresh = n ? alloc_bytes(n * item_bytes) : nullptr;
    const size_t kept_bytes = std::min(old_n, n) * item_bytes;
    if (kept_bytes > 0) backend_.copy_rows(fresh, kept_bytes, buf, kept_bytes, 1, kept_bytes);
    if (buf) release(buf);
    buf = static_cast<std::remove_reference_t<decltype(buf)>>(fresh);
  };
  resize(half.dir, half.merged(), merged, row_bytes());
  for (int side = 0; side < 2; side++) {
    resize(half.mag[side], half.merged(), merged, sizeof(float));
    resize(half.exact[side], half.kept_exact(), kept_exact, row_bytes());
  }
}

void MergedLayers::truncate_shared(SharedStore& sh, int len, int exact_keys, int exact_values) {
  auto truncate = [&](SharedHalf& half, int kept_exact) {
    resize_half(half, len - kept_exact, kept_exact);
    half.merged_slots.resize(len - kept_exact);
    half.exact_slots.resize(kept_exact);
  };
  truncate(sh.keys, exact_keys);
  truncate(sh.values, exact_values);
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
                         const std::vector<int32_t>& upper_slots, float t,
                         const ExactHalves& exact) {
  const std::string where = "KVCache::merge(" + std::to_string(lower) + ", " +
                            std::to_string(upper) + "): ";
  if (!(0 <= lower && lower < upper && upper < n_layers_))
    throw std::invalid_argument(where + "needs 0 <= lower < upper < n_layers");
  if ((partner_[lower] != -1 && partner_[lower] != upper) ||
      (partner_[upper] != -1 && partner_[upper] != lower))
    throw std::invalid_argument(where + "a layer is already paired with another");
  const size_t m = lower_slots.size();
  if (upper_slots.size() != m)
    throw std::invalid_argument(where + "slot lists differ in length");
  const std::vector<bool> none(m, false);
  const std::vector<bool>& exact_keys = exact.keys.empty() ? none : exact.keys;
  const std::vector<bool>& exact_values = exact.values.empty() ? none : exact.values;
  if (exact_keys.size() != m || exact_values.size() != m)
    throw std::invalid_argument(where + "exact-half lists differ in length from the slots");
  for (size_t i = 0; i < m; i++)
    if (exact_keys[i] && exact_values[i])
      throw std::invalid_argument(where + "a token kept exact in keys and values stays a row");
  const std::vector<int32_t> lo = rows_of(cache, lower, head, lower_slots);
  const std::vector<int32_t> up = rows_of(cache, upper, head, upper_slots);
  for (size_t i = 0; i < m; i++)
    if (cache.positions(lower, head)[lower_slots[i]] != cache.positions(upper, head)[upper_slots[i]])
      throw std::invalid_argument(where + "slots hold different tokens");
  partner_[lower] = upper;
  partner_[upper] = lower;
  if (m == 0) return;

  SharedStore& sh = shared(lower, head);
  const int first = sh.len;
  const KVHeadView a = cache.rows(lower, head), b = cache.rows(upper, head);
  store_half(sh.keys, a.keys, lo, b.keys, up, exact_keys, first, t);
  store_half(sh.values, a.values, lo, b.values, up, exact_values, first, t);
  sh.len = first + int(m);
  cache.move_rows_to_shared(lower, head, lo);
  cache.move_rows_to_shared(upper, head, up);
}

void MergedLayers::store_half(SharedHalf& half, const void* a, const std::vector<int32_t>& a_rows,
                              const void* b, const std::vector<int32_t>& b_rows,
                              const std::vector<bool>& exact, int first, float t) {
  const int merged_before = half.merged(), exact_before = half.kept_exact();
  const int n_exact = int(std::count(exact.begin(), exact.end(), true));
  resize_half(half, merged_before + int(a_rows.size()) - n_exact, exact_before + n_exact);
  const size_t row = row_bytes();
  std::vector<int32_t> merge_a, merge_b;
  for (size_t i = 0; i < a_rows.size(); i++) {
    if (!exact[i]) {
      merge_a.push_back(a_rows[i]);
      merge_b.push_back(b_rows[i]);
      half.merged_slots.push_back(first + int(i));
      continue;
    }
    const size_t at = size_t(half.kept_exact()) * row;
    half.exact_slots.push_back(first + int(i));
    backend_.copy_rows(static_cast<char*>(half.exact[0]) + at, row,
                       static_cast<const char*>(a) + a_rows[i] * row, row, 1, row);
    backend_.copy_rows(static_cast<char*>(half.exact[1]) + at, row,
                       static_cast<const char*>(b) + b_rows[i] * row, row, 1, row);
  }
  ops_.merge_pair(static_cast<char*>(half.dir) + size_t(merged_before) * row,
                  half.mag[0] + merged_before, half.mag[1] + merged_before, dtype_, a,
                  merge_a.data(), b, merge_b.data(), int(merge_a.size()), head_dim_, t);
}

MergedLayers::ExactCounts MergedLayers::exact_counts(int lower, int head) const {
  const SharedStore& sh = shared(lower, head);
  return {sh.keys.kept_exact(), sh.values.kept_exact()};
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
    restore_half(keys, sh.keys, side, m);
    restore_half(values, sh.values, side, m);
    backend_.copy_rows(keys + m * row, row, own.keys, row, own.len, row);
    backend_.copy_rows(values + m * row, row, own.values, row, own.len, row);
    heads[h] = {keys, values, m + own.len, dtype_};
    offset += (m + own.len) * row;
  }
}

void MergedLayers::restore_half(void* out, const SharedHalf& half, int side, int len) const {
  if (half.merged() == len) {  // no exact rows: the directions are the slots in order
    ops_.restore_rows(out, nullptr, dtype_, half.dir, half.mag[side], len, head_dim_);
    return;
  }
  ops_.restore_rows(out, half.merged_slots.data(), dtype_, half.dir, half.mag[side],
                    half.merged(), head_dim_);
  ops_.restore_rows(out, half.exact_slots.data(), dtype_, half.exact[side], nullptr,
                    half.kept_exact(), head_dim_);
}

size_t MergedLayers::bytes_held() const {
  size_t bytes = 0;
  for (const SharedStore& sh : shared_)
    for (const SharedHalf* half : {&sh.keys, &sh.values})
      bytes += size_t(half->merged()) * (row_bytes() + 2 * sizeof(float)) +
               size_t(half->kept_exact()) * 2 * row_bytes();
  return bytes;
}

MergedLayers::Mark MergedLayers::mark() const {
  Mark m{{}, partner_};
  for (const SharedStore& sh : shared_)
    m.lengths.push_back({sh.len, sh.keys.kept_exact(), sh.values.kept_exact()});
  return m;
}

void MergedLayers::rollback(const Mark& mark) {
  for (size_t i = 0; i < shared_.size(); i++) {
    const auto [len, exact_keys, exact_values] = mark.lengths[i];
    if (shared_[i].len != len) truncate_shared(shared_[i], len, exact_keys, exact_values);
  }
  partner_ = mark.partner;
}

size_t MergedLayers::bytes_scratch() const {
  return 2 * size_t(scratch_rows_) * row_bytes();
}

}  // namespace kvlm
