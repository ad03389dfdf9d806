// Sampling: each filter on hand-made logits, reproducibility, and the drawn frequencies.
#include <gtest/gtest.h>

#include <cmath>
#include <set>

#include "sample.h"

namespace kvlm {
namespace {

SamplingParams params(float temp, int top_k, float top_p, float min_p, float penalty = 1.0f) {
  SamplingParams p;
  p.temperature = temp;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.repeat_penalty = penalty;
  return p;
}

// Distinct tokens drawn in many samples: the support a filter leaves.
std::set<int32_t> support(const SamplingParams& p, const std::vector<float>& logits) {
  Sampler s(p);
  std::set<int32_t> seen;
  for (int i = 0; i < 3000; i++) seen.insert(s.sample(logits, {}));
  return seen;
}

// Probabilities at temperature 1: 0.5, 0.25, 0.125, 0.0625, 0.0625.
const std::vector<float> kLogits = {std::log(0.5f), std::log(0.25f), std::log(0.125f),
                                    std::log(0.0625f), std::log(0.0625f)};

TEST(Sample, GreedyTakesArgmaxLowestIndexOnTies) {
  Sampler s(params(0, 40, 0.95f, 0.05f));
  EXPECT_EQ(s.sample({0.1f, 3.0f, -1.0f, 3.0f}, {}), 1);
  EXPECT_EQ(argmax({2.0f, 5.0f, 5.0f}), 1);
}

TEST(Sample, TopKLimitsTheCandidates) {
  EXPECT_EQ(support(params(1, 2, 1, 0), kLogits), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(support(params(1, 1, 1, 0), kLogits), (std::set<int32_t>{0}));
}

TEST(Sample, TopPKeepsSmallestSetReachingP) {
  // 0.5 + 0.25 = 0.75 >= 0.7: two tokens; 0.8 needs a third.
  EXPECT_EQ(support(params(1, 0, 0.7f, 0), kLogits), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(support(params(1, 0, 0.8f, 0), kLogits), (std::set<int32_t>{0, 1, 2}));
}

TEST(Sample, MinPDropsTokensFarBelowTheBest) {
  // Relative to the best: 1, 0.5, 0.25, 0.125, 0.125.
  EXPECT_EQ(support(params(1, 0, 1, 0.3f), kLogits), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(support(params(1, 0, 1, 0.2f), kLogits), (std::set<int32_t>{0, 1, 2}));
  EXPECT_EQ(support(params(1, 0, 1, 0.1f), kLogits), (std::set<int32_t>{0, 1, 2, 3, 4}));
}

TEST(Sample, FrequenciesFollowTemperedSoftmax) {
  for (float temp : {1.0f, 0.5f}) {
    Sampler s(params(temp, 0, 1, 0));
    std::vector<int> count(kLogits.size());
    const int n = 40000;
    for (int i = 0; i < n; i++) count[s.sample(kLogits, {})]++;
    double z = 0;
    for (float l : kLogits) z += std::exp(l / temp);
    for (size_t i = 0; i < kLogits.size(); i++) {
      double expected = std::exp(kLogits[i] / temp) / z;
      EXPECT_NEAR(double(count[i]) / n, expected, 0.01) << "token " << i << " temp " << temp;
    }
  }
}

TEST(Sample, SameSeedSameTokensOtherSeedOtherTokens) {
  auto draw = [](uint64_t seed) {
    SamplingParams p = params(1, 0, 1, 0);
    p.seed = seed;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 50; i++) out.push_back(s.sample(kLogits, {}));
    return out;
  };
  EXPECT_EQ(draw(7), draw(7));
  EXPECT_NE(draw(7), draw(8));
}

TEST(Sample, RepetitionPenaltyDemotesRecentTokens) {
  // Token 0 would win greedily; once it was seen, the penalty (2x) lets token 1 win.
  const std::vector<float> logits = {2.0f, 1.5f, -1.0f};
  EXPECT_EQ(Sampler(params(0, 0, 1, 0, 2.0f)).sample(logits, {}), 0);
  EXPECT_EQ(Sampler(params(0, 0, 1, 0, 2.0f)).sample(logits, {0, 0}), 1);
  // Negative logits move down (multiplied), not up.
  EXPECT_EQ(Sampler(params(0, 0, 1, 0, 2.0f)).sample({-1.0f, -1.5f}, {0}), 1);
  // Only the last repeat_last_n tokens count.
  SamplingParams p = params(0, 0, 1, 0, 2.0f);
  p.repeat_last_n = 1;
  EXPECT_EQ(Sampler(p).sample(logits, {0, 2}), 0);
}

}  // namespace
// A checkpoint's hints replace kvlm's defaults only for the flags the user did not give.
TEST(Sample, ModelHintsFillOnlyTheFlagsNotGiven) {
  SamplingHints hints;
  hints.temperature = 0.2f;
  hints.top_p = 0.9f;
  hints.source = "generation_config.json";
  SamplingParams user;
  user.temperature = 1.1f;
  SamplingFlagsGiven given;
  given.temperature = true;
  const SamplingParams p = with_model_hints(user, hints, given);
  EXPECT_EQ(p.temperature, 1.1f) << "the flag wins";
  EXPECT_EQ(p.top_p, 0.9f) << "the hint replaces the default";
  EXPECT_EQ(p.top_k, SamplingParams{}.top_k) << "no hint: kvlm's default";
  EXPECT_EQ(hints_used(hints, given), "top-p from generation_config.json");
  EXPECT_EQ(hints_used(hints, {}), "temperature, top-p from generation_config.json");
  EXPECT_EQ(hints_used({}, {}), "");
  EXPECT_EQ(describe(with_model_hints({}, hints, {})), "temperature 0.2, top-k 40, top-p 0.9, min-p 0.05");
  SamplingParams greedy;
  greedy.temperature = 0;
  EXPECT_EQ(describe(greedy), "greedy");
}

}  // namespace kvlm
