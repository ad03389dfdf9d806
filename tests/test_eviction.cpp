// The decode-time eviction helpers of kv/eviction.h: the slack rule, sinks plus recent,
// best-of-the-rest with a protected recent window, and SlotValues kept in step with a
// real KVCache through appends and compactions.
#include <gtest/gtest.h>

#include <numeric>
#include <stdexcept>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kv/eviction.h"
#include "kv/kv_cache.h"

namespace kvlm {
namespace {

using Indices = std::vector<int32_t>;
using Values = std::vector<float>;

constexpr int kLayers = 2, kHeads = 2, kDim = 2;

// Appends T tokens to every layer and advances, as one forward call does. The row
// contents do not matter here; SlotValues follows positions.
void append_tokens(KVCache& cache, int T) {
  const std::vector<float> rows(size_t(T) * kHeads * kDim, 1.0f);
  for (int l = 0; l < kLayers; l++)
    cache.append(l, rows.data(), rows.data(), kHeads * kDim, cache.tokens_seen(), T);
  cache.advance(T);
}

TEST(Eviction, OverBudgetOnlyPastTheSlack) {
  EXPECT_FALSE(over_budget(8, 8, 2));
  EXPECT_FALSE(over_budget(10, 8, 2));  // budget + slack rows are allowed
  EXPECT_TRUE(over_budget(11, 8, 2));
  EXPECT_TRUE(over_budget(9, 8, 0));  // no slack: cut at every token
}

TEST(Eviction, SinksAndRecent) {
  // len 10, 2 sinks, 3 recent: {0,1} and {7,8,9}.
  EXPECT_EQ(sinks_and_recent(10, 2, 3), (Indices{0, 1, 7, 8, 9}));
  EXPECT_EQ(sinks_and_recent(10, 0, 3), (Indices{7, 8, 9}));
  EXPECT_EQ(sinks_and_recent(10, 2, 0), (Indices{0, 1}));
}

TEST(Eviction, SinksAndRecentCountAnOverlapOnce) {
  // len 5, 3 sinks {0,1,2}, 3 recent {2,3,4}: slot 2 is both, listed once.
  EXPECT_EQ(sinks_and_recent(5, 3, 3), (Indices{0, 1, 2, 3, 4}));
  // len 4 < sinks + recent = 5: everything.
  EXPECT_EQ(sinks_and_recent(4, 2, 3), (Indices{0, 1, 2, 3}));
  EXPECT_EQ(sinks_and_recent(2, 4, 4), (Indices{0, 1}));
}

TEST(Eviction, BestWithRecentProtectsTheRecentSlots) {
  // Budget 4, recent 2: slots 4 and 5 stay whatever their (zero) scores; of the older
  // [9,1,8,1] the best 2 are slots 0 and 2.
  EXPECT_EQ(best_with_recent({9, 1, 8, 1, 0, 0}, 4, 2), (Indices{0, 2, 4, 5}));
  // recent 0: plain top-k.
  EXPECT_EQ(best_with_recent({9, 1, 8, 1, 0, 0}, 2, 0), (Indices{0, 2}));
}

TEST(Eviction, BestWithRecentTiesPreferTheLowerIndex) {
  // Older [1,5,5,5], 2 places among three 5s: slots 1 and 2; slot 4 is recent.
  EXPECT_EQ(best_with_recent({1, 5, 5, 5, 0}, 3, 1), (Indices{1, 2, 4}));
}

TEST(Eviction, BestWithRecentClampsToTheBudgetAndLength) {
  // recent 5 > budget 3: only the newest 3.
  EXPECT_EQ(best_with_recent({9, 9, 9, 1, 1, 1}, 3, 5), (Indices{3, 4, 5}));
  // budget >= length: everything.
  EXPECT_EQ(best_with_recent({3, 2, 1}, 5, 1), (Indices{0, 1, 2}));
}

TEST(Eviction, SlotValuesFillNewSlotsAndKeepOldValues) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 100);
  SlotValues values;
  append_tokens(cache, 3);
  Values& v = values.aligned(cache, 0, 1, -1.0f);
  EXPECT_EQ(v, (Values{-1, -1, -1}));
  v = {10, 11, 12};

  append_tokens(cache, 2);
  EXPECT_EQ(values.aligned(cache, 0, 1, 0.0f), (Values{10, 11, 12, 0, 0}));
  // Heads are separate: (0,0) and (1,1) have their own values, all new.
  EXPECT_EQ(values.aligned(cache, 0, 0, 7.0f), (Values{7, 7, 7, 7, 7}));
  EXPECT_EQ(values.aligned(cache, 1, 1, 8.0f), (Values{8, 8, 8, 8, 8}));
  EXPECT_EQ(values.aligned(cache, 0, 1, 99.0f), (Values{10, 11, 12, 0, 0})) << "nothing new";
}

// Another strategy of a composition may compact the cache directly: the survivors keep
// their values, found by position.
TEST(Eviction, SlotValuesFollowACompactionMadeElsewhere) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 100);
  SlotValues values;
  append_tokens(cache, 5);
  values.aligned(cache, 0, 1, 0.0f) = {10, 11, 12, 13, 14};

  cache.compact(0, 1, {0, 2, 4});  // positions 0, 2, 4 survive
  EXPECT_EQ(values.aligned(cache, 0, 1, -1.0f), (Values{10, 12, 14}));

  append_tokens(cache, 1);  // position 5, then another compaction dropping position 2
  cache.compact(0, 1, {0, 2, 3});
  ASSERT_EQ(cache.positions(0, 1), (Indices{0, 4, 5}));
  EXPECT_EQ(values.aligned(cache, 0, 1, -1.0f), (Values{10, 14, -1}));
}

TEST(Eviction, SlotValuesCompactKeepsValuesAndCacheInStep) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 100);
  SlotValues values;
  append_tokens(cache, 5);
  values.aligned(cache, 1, 0, 0.0f) = {10, 11, 12, 13, 14};
  values.compact(cache, 1, 0, {1, 3, 4});
  EXPECT_EQ(cache.positions(1, 0), (Indices{1, 3, 4}));
  EXPECT_EQ(cache.length(1, 0), 3);
  EXPECT_EQ(cache.length(1, 1), 5) << "only the named head";
  EXPECT_EQ(values.aligned(cache, 1, 0, -1.0f), (Values{11, 13, 14}));
}

TEST(Eviction, SlotValuesCompactRefusesValuesOutOfStep) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 100);
  SlotValues values;
  append_tokens(cache, 3);
  values.aligned(cache, 0, 0, 0.0f);
  append_tokens(cache, 1);  // aligned() not called since: the values miss a slot
  EXPECT_THROW(values.compact(cache, 0, 0, {0, 1}), std::logic_error);
  EXPECT_EQ(cache.length(0, 0), 4) << "the cache is left alone";
}

TEST(Eviction, SlotValuesClearForgetsEverything) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 100);
  SlotValues values;
  append_tokens(cache, 3);
  values.aligned(cache, 0, 0, 0.0f) = {10, 11, 12};
  values.aligned(cache, 1, 1, 0.0f) = {20, 21, 22};
  values.clear();
  // Same positions in the cache, yet every value is new.
  EXPECT_EQ(values.aligned(cache, 0, 0, 5.0f), (Values{5, 5, 5}));
  EXPECT_EQ(values.aligned(cache, 1, 1, 6.0f), (Values{6, 6, 6}));
}

// SlotValues carries values over any compaction of its head.
TEST(Eviction, SlotValuesFollowPositions) {
  CpuBackend b(1);
  KVCache cache(b, kLayers, kHeads, kDim, 64);
  append_tokens(cache, 5);
  SlotValues values;
  std::vector<float>& v = values.aligned(cache, 0, 0, 0.0f);
  v = {10, 11, 12, 13, 14};
  values.compact(cache, 0, 0, {1, 3, 4});
  cache.compact(0, 0, {0, 2});  // someone else keeps tokens 1 and 4
  append_tokens(cache, 2);
  EXPECT_EQ(values.aligned(cache, 0, 0, -1.0f), (std::vector<float>{11, 14, -1, -1}));
  EXPECT_EQ(sinks_and_recent(10, 2, 3), (std::vector<int32_t>{0, 1, 7, 8, 9}));
  EXPECT_EQ(sinks_and_recent(4, 2, 3), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(best_with_recent({5, 1, 3, 0.5f, 2}, 3, 1), (std::vector<int32_t>{0, 2, 4}));
}

}  // namespace
}  // namespace kvlm
