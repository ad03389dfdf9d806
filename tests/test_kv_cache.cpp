// KVCache: ragged per-head storage, positions, compaction, byte accounting, undo to a
// checkpoint, and the full strategy leaving it untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "cache_contents.h"
#include "kernels/cpu/cpu_backend.h"
#include "kv/kv_cache.h"
#include "kv/strategy.h"

namespace kvlm {
namespace {

constexpr int kLayers = 2, kHeads = 3, kDim = 4;

// Keys/values for T tokens whose every element encodes (token, head, dim) so that
// where a row ended up can be read off its contents.
std::vector<float> rows(int first_token, int T, float tag) {
  std::vector<float> v(size_t(T) * kHeads * kDim);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < kHeads; h++)
      for (int d = 0; d < kDim; d++)
        v[(t * kHeads + h) * kDim + d] = tag + 1000.0f * (first_token + t) + 10.0f * h + d;
  return v;
}

void append_tokens(KVCache& cache, int T) {
  const int first = cache.tokens_seen();
  for (int l = 0; l < kLayers; l++)
    cache.append(l, rows(first, T, 0).data(), rows(first, T, 0.5f).data(), kHeads * kDim, first, T);
  cache.advance(T);
}

TEST(KVCache, AppendKeepsRowsPositionsAndBytes) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 1000);
  append_tokens(cache, 5);
  append_tokens(cache, 1);
  KVStats st = cache.stats();
  EXPECT_EQ(st.tokens_seen, 6);
  EXPECT_EQ(st.bytes_held, size_t(2) * kLayers * kHeads * 6 * kDim * sizeof(float));
  EXPECT_EQ(st.bytes_full, st.bytes_held);
  EXPECT_GE(st.bytes_allocated, st.bytes_held);
  std::vector<KVHeadView> view = cache.view(1);
  ASSERT_EQ(view.size(), size_t(kHeads));
  EXPECT_EQ(view[2].len, 6);
  EXPECT_EQ(test::f32_rows(view[2].keys)[5 * kDim + 1], 5000.0f + 20 + 1);    // token 5, head 2, dim 1
  EXPECT_EQ(test::f32_rows(view[2].values)[5 * kDim + 1], 5000.5f + 20 + 1);
  EXPECT_EQ(cache.positions(0, 1), (std::vector<int32_t>{0, 1, 2, 3, 4, 5}));
}

TEST(KVCache, CompactKeepsOrderAndOriginalPositionsPerHead) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 1000);
  append_tokens(cache, 10);
  cache.compact(0, 1, {0, 3, 4, 9});
  cache.compact(1, 2, {});
  EXPECT_EQ(cache.length(0, 0), 10);
  EXPECT_EQ(cache.length(0, 1), 4);
  EXPECT_EQ(cache.length(1, 2), 0);
  EXPECT_EQ(cache.positions(0, 1), (std::vector<int32_t>{0, 3, 4, 9}));
  const KVHeadView h = cache.view(0)[1];
  for (int r = 0; r < 4; r++)
    EXPECT_EQ(test::f32_rows(h.keys)[r * kDim], 1000.0f * cache.positions(0, 1)[r] + 10);
  KVStats st = cache.stats();
  EXPECT_EQ(st.lengths[0], (std::vector<int>{10, 4, 10}));
  EXPECT_EQ(st.bytes_held, size_t(2) * (10 + 4 + 10 + 10 + 10 + 0) * kDim * sizeof(float));
  EXPECT_EQ(st.bytes_full, size_t(2) * kLayers * kHeads * 10 * kDim * sizeof(float));

  // New tokens continue after the seen ones, whatever the head's length.
  append_tokens(cache, 2);
  EXPECT_EQ(cache.positions(0, 1), (std::vector<int32_t>{0, 3, 4, 9, 10, 11}));
  EXPECT_EQ(cache.positions(1, 2), (std::vector<int32_t>{10, 11}));
}

TEST(KVCache, CompactionReleasesStorage) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 100000);
  append_tokens(cache, 4000);
  const size_t before = cache.stats().bytes_allocated;
  for (int l = 0; l < kLayers; l++)
    for (int h = 0; h < kHeads; h++) cache.compact(l, h, {0, 1, 2, 3999});
  const KVStats after = cache.stats();
  EXPECT_LT(after.bytes_allocated * 20, before) << "compaction must give the memory back";
  EXPECT_EQ(test::f32_rows(cache.view(1)[2].keys)[3 * kDim], 3999000.0f + 20);
}

TEST(KVCache, RefusesToGrowPastTheContext) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 8);
  append_tokens(cache, 8);
  EXPECT_THROW(append_tokens(cache, 1), std::runtime_error);
  cache.clear();
  EXPECT_EQ(cache.stats().bytes_allocated, 0u);
  EXPECT_EQ(cache.tokens_seen(), 0);
  append_tokens(cache, 3);
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 1, 2}));
}

// The attention op reads the compacted rows exactly as if only they had been appended.
TEST(KVCache, AttentionOverCompactedHeadEqualsFreshCache) {
  CpuBackend b(1);
  KVCache compacted(b, 1, kHeads, kDim, 100), fresh(b, 1, kHeads, kDim, 100);
  std::vector<float> k = rows(0, 6, 0), v = rows(0, 6, 0.5f);
  for (float& x : k) x = std::sin(x);  // keep the scores in a sensible range
  compacted.append(0, k.data(), v.data(), kHeads * kDim, 0, 6);
  const std::vector<int32_t> keep = {1, 4, 5};
  for (int h = 0; h < kHeads; h++) compacted.compact(0, h, keep);
  std::vector<float> k_kept, v_kept;
  for (int32_t r : keep) {
    k_kept.insert(k_kept.end(), k.begin() + r * kHeads * kDim, k.begin() + (r + 1) * kHeads * kDim);
    v_kept.insert(v_kept.end(), v.begin() + r * kHeads * kDim, v.begin() + (r + 1) * kHeads * kDim);
  }
  fresh.append(0, k_kept.data(), v_kept.data(), kHeads * kDim, 0, 3);  // positions unread
  std::vector<float> q(kHeads * kDim, 0.3f), out_a(q.size()), out_b(q.size());
  b.attention(out_a.data(), q.data(), compacted.view(0), 1, kHeads, kDim);
  b.attention(out_b.data(), q.data(), fresh.view(0), 1, kHeads, kDim);
  EXPECT_EQ(out_a, out_b);
}

TEST(KVCache, FullStrategyLeavesCacheBitIdentical) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 100);
  append_tokens(cache, 7);
  std::vector<float> before(7 * kDim);
  std::memcpy(before.data(), cache.view(1)[1].keys, before.size() * sizeof(float));
  auto full = make_strategy("full");
  EXPECT_EQ(full->needs().window, 0);
  for (int l = 0; l < kLayers; l++) {
    Observation obs;
    obs.layer = l;
    full->on_prefill_layer(cache, obs);
  }
  full->after_prefill(cache);
  full->on_decode_step(cache, DecodeObservation{});
  EXPECT_EQ(cache.stats().lengths, (std::vector<std::vector<int>>(kLayers, std::vector<int>(kHeads, 7))));
  EXPECT_EQ(std::memcmp(before.data(), cache.view(1)[1].keys, before.size() * sizeof(float)), 0);
}

// A forward pass that Ctrl-C stopped halfway: some layers appended, some heads compacted.
TEST(KVCache, RollbackUndoesPartialAppendsAndEvictions) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 1000);
  append_tokens(cache, 70);  // past one chunk of rows, so capacities move too
  cache.compact(1, 0, {0, 5, 69});
  const test::CacheContents before = test::contents(cache);

  cache.checkpoint();
  cache.append(0, rows(70, 100, 0).data(), rows(70, 100, 0.5f).data(), kHeads * kDim, 70, 100);
  cache.compact(0, 2, {1, 2, 150});  // an old row evicted, a new one kept
  cache.compact(0, 2, {0, 2});       // the copy saved before the first change must stay
  cache.rollback();
  EXPECT_TRUE(test::contents(cache) == before);

  // The cache works on from there, and a commit keeps what it commits.
  cache.checkpoint();
  append_tokens(cache, 3);
  cache.compact(1, 1, {0, 72});
  cache.commit();
  cache.rollback();  // no checkpoint: nothing to undo
  EXPECT_EQ(cache.tokens_seen(), 73);
  EXPECT_EQ(cache.positions(1, 1), (std::vector<int32_t>{0, 72}));
  EXPECT_EQ(cache.positions(0, 2).back(), 72);
}

// Storage grows ahead of need and one layer at a time: over a long decode no step grows
// the heads of two layers, few steps grow any, and capacity stays within x1.5 (plus the
// reserve) of what is held.
TEST(KVCache, DecodeGrowsOneLayerPerStepAndRarely) {
  CpuBackend b(1);
  constexpr int kManyLayers = 6;
  KVCache cache(b, kManyLayers, kHeads, kDim, 4096);
  auto capacities = [&] {
    std::vector<int> c;
    for (int l = 0; l < kManyLayers; l++)
      for (int h = 0; h < kHeads; h++) c.push_back(cache.capacity(l, h));
    return c;
  };
  auto step = [&](int T) {
    const int first = cache.tokens_seen();
    for (int l = 0; l < kManyLayers; l++)
      cache.append(l, rows(first, T, 0).data(), rows(first, T, 0.5f).data(), kHeads * kDim, first, T);
    cache.advance(T);
  };
  step(128);  // a prompt that fills whole chunks: every head grows now, with room to spare
  int growths = 0, steps_with_growth = 0;
  for (int i = 0; i < 600; i++) {
    const std::vector<int> before = capacities();
    step(1);
    const std::vector<int> after = capacities();
    std::vector<bool> layer_grew(kManyLayers, false);
    for (size_t j = 0; j < after.size(); j++)
      if (after[j] != before[j]) layer_grew[j / kHeads] = true, growths++;
    const int layers = int(std::count(layer_grew.begin(), layer_grew.end(), true));
    ASSERT_LE(layers, 1) << "decode step " << i << " grew " << layers << " layers";
    steps_with_growth += layers;
    for (int l = 0; l < kManyLayers; l++)  // every head always has room for the next token
      ASSERT_GT(cache.capacity(l, 0), cache.length(l, 0)) << "layer " << l << " step " << i;
  }
  // 129 -> 729 rows at x1.5 per growth is 5 growths per head (each rounded to chunks).
  EXPECT_LE(growths, 5 * kManyLayers * kHeads);
  EXPECT_LE(steps_with_growth, 5 * kManyLayers);
  EXPECT_GT(steps_with_growth, 0);
  for (int cap : capacities()) EXPECT_LE(cap, 729 * 3 / 2 + 64 + 2 * kManyLayers);
  EXPECT_EQ(test::f32_rows(cache.view(5)[2].keys)[700 * kDim + 3], 700000.0f + 20 + 3);
}

// A half-precision cache: rows are the appended values rounded once to nearest (between
// 4096 and 8192 f16 steps by 4 and bf16 by 32, so value 5020.5 is 5020 or 5024; between
// 1024 and 2048 by 1 and 8, so key 2021 is 2021 or 2024), bytes are half, and a rollback
// restores the 16-bit state exactly.
TEST(KVCache, HalfPrecisionRowsBytesAndRollback) {
  CpuBackend b(1);
  for (DType dtype : {DType::F16, DType::BF16}) {
    KVCache cache(b, kLayers, kHeads, kDim, 1000, dtype);
    EXPECT_EQ(cache.kv_dtype(), dtype);
    append_tokens(cache, 6);
    const KVStats st = cache.stats();
    EXPECT_EQ(st.bytes_held, size_t(2) * kLayers * kHeads * 6 * kDim * 2);
    EXPECT_EQ(st.bytes_full, st.bytes_held);
    const KVHeadView v = cache.view(1)[2];
    EXPECT_EQ(v.dtype, dtype);
    const std::vector<float> values = test::host_floats(v.values, dtype, size_t(6) * kDim);
    EXPECT_EQ(values[5 * kDim + 0], dtype == DType::F16 ? 5020.0f : 5024.0f);
    EXPECT_EQ(test::host_floats(v.keys, dtype, size_t(6) * kDim)[2 * kDim + 1],
              dtype == DType::F16 ? 2021.0f : 2024.0f);

    const test::CacheContents before = test::contents(cache);
    cache.checkpoint();
    append_tokens(cache, 70);
    cache.compact(0, 1, {0, 3, 70});
    cache.rollback();
    EXPECT_TRUE(test::contents(cache) == before) << dtype_name(dtype);
  }
}

}  // namespace
}  // namespace kvlm
