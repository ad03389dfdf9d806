// The scoring building blocks of kv/scoring.h on hand-checked numbers: GQA reduction,
// 1-D pooling, top-k with deterministic ties, the window's slots, and the option parsers.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

#include "kv/scoring.h"

namespace kvlm {
namespace {

using Scores = std::vector<float>;
using Indices = std::vector<int32_t>;

// Two KV heads, GQA group 2: query heads 0,1 read KV head 0; query heads 2,3 read KV head 1.
const std::vector<Scores> kPerQueryHead = {
    {1, 2, 3, 100},  // the last slot lies beyond n = 3 in the tests below
    {3, 2, 1, 100},
    {0, 4, 8, 100},
    {2, 2, 2, 100},
};

TEST(Scoring, GroupMeanAveragesTheGroupsQueryHeads) {
  // KV head 0: ((1+3)/2, (2+2)/2, (3+1)/2) = (2, 2, 2)
  EXPECT_EQ(group_scores(kPerQueryHead, 0, 2, 3, GroupReduce::Mean), (Scores{2, 2, 2}));
  // KV head 1: ((0+2)/2, (4+2)/2, (8+2)/2) = (1, 3, 5)
  EXPECT_EQ(group_scores(kPerQueryHead, 1, 2, 3, GroupReduce::Mean), (Scores{1, 3, 5}));
}

TEST(Scoring, GroupMaxTakesTheLargestOfTheGroup) {
  // KV head 0: (max(1,3), max(2,2), max(3,1)) = (3, 2, 3)
  EXPECT_EQ(group_scores(kPerQueryHead, 0, 2, 3, GroupReduce::Max), (Scores{3, 2, 3}));
  // KV head 1: (max(0,2), max(4,2), max(8,2)) = (2, 4, 8)
  EXPECT_EQ(group_scores(kPerQueryHead, 1, 2, 3, GroupReduce::Max), (Scores{2, 4, 8}));
}

TEST(Scoring, GroupScoresCoverOnlyTheFirstNSlots) {
  EXPECT_EQ(group_scores(kPerQueryHead, 1, 2, 2, GroupReduce::Mean), (Scores{1, 3}));
  // Group 1 (no GQA): a query head's own row.
  EXPECT_EQ(group_scores(kPerQueryHead, 2, 1, 3, GroupReduce::Mean), (Scores{0, 4, 8}));
}

TEST(Scoring, PoolKernelOneIsTheIdentity) {
  const Scores s = {0.5f, -2, 7, 0};
  EXPECT_EQ(pool1d(s, 1, Pool::Max), s);
  EXPECT_EQ(pool1d(s, 1, Pool::Avg), s);
}

TEST(Scoring, MaxPoolPadsWithMinusInfinity) {
  // [3,0,0,6] -> max over (pad,3,0) (3,0,0) (0,0,6) (0,6,pad) = [3,3,6,6]
  EXPECT_EQ(pool1d({3, 0, 0, 6}, 3, Pool::Max), (Scores{3, 3, 6, 6}));
  // All negative: a zero padding would show up as 0 at both ends.
  // [-1,-5,-3] -> (pad,-1,-5) (-1,-5,-3) (-5,-3,pad) = [-1,-1,-3]
  EXPECT_EQ(pool1d({-1, -5, -3}, 3, Pool::Max), (Scores{-1, -1, -3}));
}

TEST(Scoring, AvgPoolDividesByTheKernelIncludingPadding) {
  // [3,0,0,6] -> (0+3+0)/3, (3+0+0)/3, (0+0+6)/3, (0+6+0)/3 = [1,1,2,2]
  EXPECT_EQ(pool1d({3, 0, 0, 6}, 3, Pool::Avg), (Scores{1, 1, 2, 2}));
  // Kernel 5 on [5,5,5]: every window holds all three 5s and pads: 15/5 = 3.
  EXPECT_EQ(pool1d({5, 5, 5}, 5, Pool::Avg), (Scores{3, 3, 3}));
}

TEST(Scoring, PoolRejectsAnEvenOrZeroKernel) {
  EXPECT_THROW(pool1d({1, 2, 3}, 2, Pool::Max), std::invalid_argument);
  EXPECT_THROW(pool1d({1, 2, 3}, 0, Pool::Avg), std::invalid_argument);
}

TEST(Scoring, TopKReturnsAscendingIndices) {
  // The two largest are 9 (index 2) and 5 (index 0): returned in index order, not score order.
  EXPECT_EQ(top_k({5, 1, 9}, 2), (Indices{0, 2}));
  EXPECT_EQ(top_k({0.1f, 0.7f, 0.3f, 0.9f, 0.2f}, 3), (Indices{1, 2, 3}));
}

TEST(Scoring, TopKTiesPreferTheLowerIndex) {
  // 0.9 at 1 and 3: one place goes to index 1.
  EXPECT_EQ(top_k({0.1f, 0.9f, 0.5f, 0.9f}, 1), (Indices{1}));
  // Four equal scores, two places: the first two.
  EXPECT_EQ(top_k({2, 2, 2, 2}, 2), (Indices{0, 1}));
  // 7 is certain; the 3s at 1 and 4 tie for the second place.
  EXPECT_EQ(top_k({1, 3, 0, 7, 3}, 2), (Indices{1, 3}));
}

TEST(Scoring, TopKEdgeCounts) {
  EXPECT_EQ(top_k({4, 2, 3}, 3), (Indices{0, 1, 2}));
  EXPECT_EQ(top_k({4, 2, 3}, 10), (Indices{0, 1, 2}));
  EXPECT_TRUE(top_k({4, 2, 3}, 0).empty());
  EXPECT_TRUE(top_k({}, 2).empty());
}

TEST(Scoring, WithWindowAppendsTheLastSlots) {
  // len 6, window 2: slots 4 and 5 follow the chosen prefix slots.
  EXPECT_EQ(with_window({0, 2}, 6, 2), (Indices{0, 2, 4, 5}));
  EXPECT_EQ(with_window({1}, 4, 0), (Indices{1}));
  // A window longer than the head keeps every slot.
  EXPECT_EQ(with_window({}, 3, 5), (Indices{0, 1, 2}));
}

TEST(Scoring, ParsesPoolAndGroupReduceNames) {
  EXPECT_EQ(parse_pool("max"), Pool::Max);
  EXPECT_EQ(parse_pool("avg"), Pool::Avg);
  EXPECT_THROW(parse_pool("mean"), std::invalid_argument);
  EXPECT_THROW(parse_pool(""), std::invalid_argument);
  EXPECT_EQ(parse_group_reduce("mean"), GroupReduce::Mean);
  EXPECT_EQ(parse_group_reduce("max"), GroupReduce::Max);
  EXPECT_THROW(parse_group_reduce("avg"), std::invalid_argument);
}

}  // namespace
}  // namespace kvlm
