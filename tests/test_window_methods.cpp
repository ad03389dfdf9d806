// The window-voting methods (snapkv, pyramidkv, adakv, dynamickv) on a real KVCache with
// hand-made observations: the worked examples of the method notes in src/kv/strategies
// (snapkv.md examples A and B and T1-T3, pyramidkv.md, adakv.md, dynamickv.md T7), invariants on random observations, short prompts, continued prefill and
// the parameter handling.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

#include "kernels/cpu/cpu_backend.h"
#include "kv/kv_cache.h"
#include "kv/strategy.h"
#include "kv/window_scores.h"

namespace kvlm {
namespace {

constexpr int kDim = 2;
constexpr size_t kRowBytes = 2 * kDim * sizeof(float);  // one key + one value

using Rows = std::vector<std::vector<float>>;  // [query head][slot]
using Slots = std::vector<int32_t>;

// A cache on the CPU backend, driven the way the forward pass drives a strategy.
struct Harness {
  Harness(int n_layers, int n_kv_heads, int group = 1)
      : cache(backend, n_layers, n_kv_heads, kDim, 1 << 14), group(group) {}

  // T new tokens join every head of `layer`.
  void append(int layer, int T) {
    const int first = cache.tokens_seen();
    std::vector<float> rows(size_t(T) * cache.n_kv_heads() * kDim);
    for (size_t i = 0; i < rows.size(); i++) rows[i] = float(first) + 0.001f * float(i);
    cache.append(layer, rows.data(), rows.data(), cache.n_kv_heads() * kDim, first, T);
  }

  Observation observe(int layer, int T, int window, Rows rows) const {
    Observation obs;
    obs.layer = layer;
    obs.n_new = T;
    obs.n_tokens = cache.tokens_seen() + T;
    obs.window = std::min(window, T);
    obs.window_attention = std::move(rows);
    return obs;
  }

  // One prefill call of T tokens through every layer. rows_for(layer) gives the window
  // attention once the layer holds the new tokens; inspect sees each observation first.
  void prefill(KVStrategy& strategy, int T, const std::function<Rows(int)>& rows_for,
               const std::function<void(const Observation&)>& inspect = nullptr) {
    if (cache.tokens_seen() == 0) strategy.begin_sequence(cache, T);
    for (int l = 0; l < cache.n_layers(); l++) {
      append(l, T);
      const Observation obs = observe(l, T, strategy.needs().window, rows_for(l));
      if (inspect) inspect(obs);
      strategy.on_prefill_layer(cache, obs);
    }
    cache.advance(T);
    strategy.after_prefill(cache);
  }

  // Random window attention for every query head of a layer; coarse values make ties.
  std::function<Rows(int)> random_rows(std::mt19937& rng, bool coarse) {
    return [this, &rng, coarse](int layer) {
      std::uniform_real_distribution<float> u(0.0f, 1.0f);
      Rows rows(size_t(cache.n_kv_heads()) * group);
      for (size_t qh = 0; qh < rows.size(); qh++) {
        rows[qh].resize(cache.length(layer, int(qh) / group));
        for (float& x : rows[qh]) x = coarse ? std::floor(u(rng) * 8) / 8 : u(rng);
      }
      return rows;
    };
  }

  Slots kept(int layer, int head) const { return cache.positions(layer, head); }
  int prefix(int layer, int head, int window) const { return cache.length(layer, head) - window; }

  CpuBackend backend{1};
  KVCache cache;
  int group;
};

// A window-attention row: the prefix scores, then `window` filler slots.
std::vector<float> row(std::vector<float> prefix, int window) {
  prefix.insert(prefix.end(), window, 0.5f);
  return prefix;
}

// {prefix..., the window's positions n - window .. n - 1}
Slots with_window_slots(Slots prefix, int n, int window) {
  for (int j = n - window; j < n; j++) prefix.push_back(j);
  return prefix;
}

Slots range(int first, int end) {
  Slots s(end - first);
  std::iota(s.begin(), s.end(), first);
  return s;
}

std::unique_ptr<KVStrategy> make(const std::string& spec) { return make_strategy(spec); }

// One layer, one row per head (group 1): prefill n tokens with these window rows.
std::unique_ptr<Harness> one_layer(const std::string& spec, const Rows& rows, int n,
                                   int group = 1) {
  auto hs = std::make_unique<Harness>(1, int(rows.size()) / group, group);
  auto strategy = make(spec);
  hs->prefill(*strategy, n, [&](int) { return rows; });
  return hs;
}

// Rows are in position order, unique, in range; the window is whole; no head is empty; the
// cache's stats agree with the heads.
void expect_well_formed(const KVCache& cache, int n_tokens, int window) {
  const KVStats stats = cache.stats();
  size_t rows = 0;
  for (int l = 0; l < cache.n_layers(); l++)
    for (int h = 0; h < cache.n_kv_heads(); h++) {
      const Slots& pos = cache.positions(l, h);
      SCOPED_TRACE("layer " + std::to_string(l) + " head " + std::to_string(h));
      ASSERT_GE(int(pos.size()), window);
      EXPECT_EQ(int(pos.size()), cache.length(l, h));
      EXPECT_EQ(stats.lengths[l][h], cache.length(l, h));
      EXPECT_TRUE(std::adjacent_find(pos.begin(), pos.end(), std::greater_equal<int32_t>()) ==
                  pos.end());
      EXPECT_GE(pos.front(), 0);
      EXPECT_EQ(Slots(pos.end() - window, pos.end()), range(n_tokens - window, n_tokens));
      rows += pos.size();
    }
  EXPECT_EQ(stats.bytes_held, rows * kRowBytes);
  EXPECT_EQ(stats.tokens_seen, n_tokens);
}

// On a fresh prompt (slot = position): every kept prefix slot outranks every evicted one
// (a higher score, or the same score and a lower index).
void expect_top_scores(const std::vector<float>& scores, const Slots& kept_positions) {
  std::vector<bool> kept(scores.size(), false);
  for (int32_t p : kept_positions)
    if (p < int(scores.size())) kept[p] = true;
  for (size_t k = 0; k < scores.size(); k++)
    for (size_t e = 0; e < scores.size(); e++)
      if (kept[k] && !kept[e]) {
        EXPECT_TRUE(scores[k] > scores[e] || (scores[k] == scores[e] && k < e))
            << "kept " << k << " (" << scores[k] << ") vs evicted " << e << " (" << scores[e]
            << ")";
      }
}

double kept_mass(const Rows& rows, const KVCache& cache, int prefix_len) {
  double mass = 0;
  for (size_t h = 0; h < rows.size(); h++)
    for (int32_t p : cache.positions(0, int(h)))
      if (p < prefix_len) mass += rows[h][p];
  return mass;
}

VotingParams voting(int window, int kernel, Pool pool, GroupReduce gqa = GroupReduce::Mean) {
  return {window, kernel, pool, gqa};
}

// ---- snapkv -------------------------------------------------------------------------------

// README example A: w = 2, L = 10, B = 5, kernel 3.
TEST(SnapKV, ExampleAPoolingChangesTheChoice) {
  const Rows rows = {row({0.9f, 0.1f, 0.0f, 0.2f, 0.05f, 0.6f, 0.0f, 0.1f}, 2)};
  EXPECT_EQ(one_layer("snapkv:budget=5,window=2,kernel=3", rows, 10)->kept(0, 0),
            (Slots{0, 1, 4, 8, 9}));  // max-pooled; the j4/j5/j6 tie goes to j4
  EXPECT_EQ(one_layer("snapkv:budget=5,window=2,kernel=1", rows, 10)->kept(0, 0),
            (Slots{0, 3, 5, 8, 9}));  // unpooled
}

// T1: n = 6, w = 2, one head; the window attention comes from the CPU backend's observation
// kernel (mean over the window queries), then SnapKV with C = 4, k = 1 keeps {0, 3} + window.
TEST(SnapKV, T1ScoresFromLogits) {
  constexpr int n = 6, d = 6;
  CpuBackend backend(1);
  KVCache cache(backend, 1, 1, d, 16);
  // Key j = sqrt(d) * e_j, so q . k_j / sqrt(d) = q[j]: each query row is its logits.
  std::vector<float> keys(n * d, 0.0f);
  for (int j = 0; j < n; j++) keys[j * d + j] = std::sqrt(float(d));
  cache.append(0, keys.data(), keys.data(), d, 0, n);
  std::vector<float> q(n * d, 0.0f);
  const float q4[] = {2.0f, 0.0f, 1.0f, 0.0f, 0.5f, 0.0f},
              q5[] = {1.0f, 0.0f, 0.0f, 2.0f, 0.0f, 1.0f};
  std::copy(q4, q4 + d, q.begin() + 4 * d);
  std::copy(q5, q5 + d, q.begin() + 5 * d);
  std::vector<float> attention(n);
  backend.attention_scores(attention.data(), n, q.data(), cache.view(0), n, n - 2, 2, 1, d, true);
  const float expected[] = {0.354457f, 0.067942f, 0.130397f, 0.269800f};
  for (int j = 0; j < 4; j++) EXPECT_NEAR(attention[j], expected[j], 1e-5) << j;

  auto snapkv = make("snapkv:budget=4,window=2,kernel=1");
  Observation obs;
  obs.n_new = obs.n_tokens = n;
  obs.window = 2;
  obs.window_attention = {attention};
  snapkv->on_prefill_layer(cache, obs);
  EXPECT_EQ(cache.positions(0, 0), (Slots{0, 3, 4, 5}));
}

// T2: one head, P = 8, w = 2: pooled scores and kept sets for each pooling variant.
TEST(SnapKV, T2PoolingVariants) {
  const std::vector<float> s = {0.30f, 0.02f, 0.05f, 0.01f, 0.20f, 0.03f, 0.02f, 0.10f};
  Observation obs;
  obs.window = 2;
  obs.window_attention = {row(s, 2)};
  const std::vector<float> avg = prefix_scores(obs, 1, 0, 8, voting(2, 3, Pool::Avg));
  const std::vector<float> avg_expected = {0.106667f, 0.123333f, 0.026667f, 0.086667f,
                                           0.080000f, 0.083333f, 0.050000f, 0.040000f};
  const std::vector<float> max = prefix_scores(obs, 1, 0, 8, voting(2, 3, Pool::Max));
  const std::vector<float> max_expected = {0.30f, 0.30f, 0.05f, 0.20f, 0.20f, 0.20f, 0.10f, 0.10f};
  for (int j = 0; j < 8; j++) {
    EXPECT_NEAR(avg[j], avg_expected[j], 1e-6) << j;
    EXPECT_FLOAT_EQ(max[j], max_expected[j]) << j;
  }

  const struct {
    const char* spec;
    Slots prefix;
  } cases[] = {
      {"snapkv:budget=5,window=2,kernel=1", {0, 4, 7}},
      {"snapkv:budget=5,window=2,kernel=3,pool=avg", {0, 1, 3}},
      {"snapkv:budget=7,window=2,kernel=3,pool=avg", {0, 1, 3, 4, 5}},
      {"snapkv:budget=7,window=2,kernel=3,pool=max", {0, 1, 3, 4, 5}},
      {"snapkv:budget=4,window=2,kernel=3,pool=max", {0, 1}},
      {"snapkv:budget=5,window=2,kernel=3,pool=max", {0, 1, 3}},  // inside the 0.20 plateau
  };
  for (const auto& c : cases)
    EXPECT_EQ(one_layer(c.spec, {row(s, 2)}, 10)->kept(0, 0), with_window_slots(c.prefix, 10, 2))
        << c.spec;
}

// T3: two query heads share one KV head, P = 4, B = 2 (w = 1 here).
TEST(SnapKV, T3GqaReductions) {
  const Rows rows = {row({0.45f, 0.02f, 0.35f, 0.18f}, 1), row({0.02f, 0.55f, 0.30f, 0.13f}, 1)};
  EXPECT_EQ(one_layer("snapkv:budget=3,window=1,kernel=1", rows, 5, 2)->kept(0, 0),
            (Slots{1, 2, 4}));  // mean [0.235, 0.285, 0.325, 0.155]
  EXPECT_EQ(one_layer("snapkv:budget=3,window=1,kernel=1,gqa=max", rows, 5, 2)->kept(0, 0),
            (Slots{0, 1, 4}));  // max [0.45, 0.55, 0.35, 0.18]
}

TEST(SnapKV, RatioBudgetCountsTheWindow) {
  std::mt19937 rng(7);
  Harness hs(2, 2, 3);
  auto snapkv = make("snapkv:ratio=0.25,window=2");
  hs.prefill(*snapkv, 41, hs.random_rows(rng, false));  // ceil(0.25 * 41) = 11
  for (int l = 0; l < 2; l++)
    for (int h = 0; h < 2; h++) EXPECT_EQ(hs.cache.length(l, h), 11);
  expect_well_formed(hs.cache, 41, 2);

  // A ratio budget below the window keeps the window only.
  Harness small(1, 1);
  auto tiny = make("snapkv:ratio=0.05,window=4");
  small.prefill(*tiny, 40, small.random_rows(rng, false));
  EXPECT_EQ(small.kept(0, 0), range(36, 40));
}

TEST(SnapKV, RandomObservationsKeepTheTopScoresOfEveryHead) {
  for (int seed = 0; seed < 12; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const int kernel = 1 + 2 * (seed % 4);
    const Pool pool = seed % 2 ? Pool::Avg : Pool::Max;
    const GroupReduce gqa = seed % 3 ? GroupReduce::Mean : GroupReduce::Max;
    const int n = 30 + 7 * seed, budget = 16, window = 4;
    auto snapkv = make("snapkv:budget=16,window=4,kernel=" + std::to_string(kernel) +
                       ",pool=" + (pool == Pool::Avg ? "avg" : "max") +
                       ",gqa=" + (gqa == GroupReduce::Mean ? "mean" : "max"));
    Harness hs(3, 2, 3);
    std::vector<Rows> scores(3);  // [layer][kv head]
    hs.prefill(*snapkv, n, hs.random_rows(rng, seed % 2 == 0), [&](const Observation& obs) {
      for (int h = 0; h < 2; h++)
        scores[obs.layer].push_back(
            prefix_scores(obs, 2, h, n - window, voting(window, kernel, pool, gqa)));
    });
    expect_well_formed(hs.cache, n, window);
    for (int l = 0; l < 3; l++)
      for (int h = 0; h < 2; h++) {
        EXPECT_EQ(hs.cache.length(l, h), budget);
        expect_top_scores(scores[l][h], hs.kept(l, h));
      }
  }
}

// ---- short prompts, continued prefill, fresh prompts ---------------------------------------

const char* const kEveryMethod[] = {
    "snapkv:budget=20,window=4",
    "pyramidkv:budget=20,window=4",
    "pyramidkv:budget=20,window=4,faithful=1",
    "adakv:budget=20,window=4",
    "adakv:budget=20,window=4,faithful=1",
    "adakv:budget=20,window=4,pyramid=1",
    "adakv:budget=20,window=4,pyramid=1,faithful=1",
    "dynamickv:budget=20,window=4,every=2",
    "dynamickv:budget=20,window=4,faithful=1",
};

TEST(WindowMethods, ShortPromptsEvictNothing) {
  for (const char* spec : kEveryMethod)
    for (int n : {5, 19, 20}) {
      SCOPED_TRACE(std::string(spec) + " n=" + std::to_string(n));
      std::mt19937 rng(n);
      Harness hs(4, 2, 2);
      auto strategy = make(spec);
      hs.prefill(*strategy, n, hs.random_rows(rng, false));
      for (int l = 0; l < 4; l++)
        for (int h = 0; h < 2; h++) EXPECT_EQ(hs.kept(l, h), range(0, n));
    }
}

TEST(WindowMethods, ContinuedPrefillReselectsOverAllSlots) {
  for (const char* spec : kEveryMethod) {
    SCOPED_TRACE(spec);
    std::mt19937 rng(3);
    Harness hs(4, 3, 2);
    auto strategy = make(spec);
    hs.prefill(*strategy, 60, hs.random_rows(rng, false));
    expect_well_formed(hs.cache, 60, 4);
    hs.prefill(*strategy, 25, hs.random_rows(rng, true));  // next turn, window 4
    expect_well_formed(hs.cache, 85, 4);
    hs.prefill(*strategy, 3, hs.random_rows(rng, false));  // a turn shorter than the window
    expect_well_formed(hs.cache, 88, 3);
    // The average budget holds after every turn (faithful arithmetic may overshoot it).
    int total = 0;
    for (int l = 0; l < 4; l++)
      for (int h = 0; h < 3; h++) total += hs.cache.length(l, h);
    if (std::string(spec).find("faithful=1") == std::string::npos) {
      EXPECT_LE(total, 4 * 3 * 20);
    }
  }
}

TEST(WindowMethods, ANewPromptOnAnEmptyCacheStartsFresh) {
  for (const char* spec : kEveryMethod) {
    SCOPED_TRACE(spec);
    std::mt19937 rng_a(1), rng_b(2), rng_b_again(2);
    Harness reused(4, 2, 1), fresh(4, 2, 1);
    auto strategy = make(spec);
    reused.prefill(*strategy, 70, reused.random_rows(rng_a, false));
    reused.cache.clear();
    reused.prefill(*strategy, 50, reused.random_rows(rng_b, false));
    auto fresh_strategy = make(spec);
    fresh.prefill(*fresh_strategy, 50, fresh.random_rows(rng_b_again, false));
    for (int l = 0; l < 4; l++)
      for (int h = 0; h < 2; h++) EXPECT_EQ(reused.kept(l, h), fresh.kept(l, h));
  }
}

// ---- pyramidkv -----------------------------------------------------------------------------

TEST(PyramidKV, ToyBudgets) {
  // 4 layers, budget 40, window 8 -> P = 32, min = 1, max = 63.
  EXPECT_EQ(pyramid_prefix_budgets(4, 32, 1000, 8, 20, PyramidRule::Kvlm),
            (std::vector<int>{63, 42, 21, 1}));  // sum 127 <= 4 * 32
  EXPECT_EQ(pyramid_prefix_budgets(4, 32, 1000, 8, 20, PyramidRule::PyramidKV),
            (std::vector<int>{63, 43, 23, 3}));  // sum 132
  EXPECT_EQ(pyramid_prefix_budgets(4, 32, 1000, 8, 20, PyramidRule::AdaKV),
            (std::vector<int>{63, 43, 23, 3}));
  // Real size: 32 layers, window 8, budget 128, n = 8000: official 234 .. 17, sum 4016.
  const std::vector<int> official =
      pyramid_prefix_budgets(32, 120, 8000, 8, 20, PyramidRule::PyramidKV);
  EXPECT_EQ(official.front(), 234);
  EXPECT_EQ(official.back(), 17);
  EXPECT_EQ(std::accumulate(official.begin(), official.end(), 0), 4016);
  const std::vector<int> kvlm = pyramid_prefix_budgets(32, 120, 8000, 8, 20, PyramidRule::Kvlm);
  EXPECT_LE(std::accumulate(kvlm.begin(), kvlm.end(), 0), 32 * 120);
  EXPECT_TRUE(std::is_sorted(kvlm.rbegin(), kvlm.rend()));
  // One layer: no slope, the uniform budget.
  for (PyramidRule rule : {PyramidRule::Kvlm, PyramidRule::PyramidKV, PyramidRule::AdaKV})
    EXPECT_EQ(pyramid_prefix_budgets(1, 32, 1000, 8, 20, rule), std::vector<int>{32});
}

// T4: L = 4, w = 2, C = 10 (P = 8), beta = 4.
TEST(PyramidKV, T4ClampingBranches) {
  using V = std::vector<int>;
  for (PyramidRule rule : {PyramidRule::Kvlm, PyramidRule::PyramidKV, PyramidRule::AdaKV})
    EXPECT_EQ(pyramid_prefix_budgets(4, 8, 30, 2, 4, rule), (V{14, 10, 6, 2}));
  EXPECT_EQ(pyramid_prefix_budgets(4, 8, 14, 2, 4, PyramidRule::PyramidKV),
            (V{8, 8, 8, 8}));  // n < 2P
  EXPECT_EQ(pyramid_prefix_budgets(4, 8, 14, 2, 4, PyramidRule::AdaKV), (V{12, 10, 8, 6}));
  EXPECT_EQ(pyramid_prefix_budgets(4, 8, 14, 2, 4, PyramidRule::Kvlm), (V{12, 9, 6, 4}));
  EXPECT_EQ(pyramid_prefix_budgets(4, 8, 9, 2, 4, PyramidRule::PyramidKV), (V{7, 7, 7, 7}));  // all
  EXPECT_EQ(pyramid_prefix_budgets(4, 8, 9, 2, 4, PyramidRule::AdaKV), (V{7, 8, 9, 10}));  // grows
  EXPECT_EQ(pyramid_prefix_budgets(4, 8, 9, 2, 4, PyramidRule::Kvlm),
            (V{8, 8, 8, 8}));  // max < min

  // The same through the strategy: cache lengths per layer (window 2 included).
  const struct {
    int n;
    const char* spec;
    V lengths;
  } cases[] = {
      {30, "pyramidkv:budget=10,window=2,beta=4", {16, 12, 8, 4}},
      {30, "pyramidkv:budget=10,window=2,beta=4,faithful=1", {16, 12, 8, 4}},
      {14, "pyramidkv:budget=10,window=2,beta=4", {14, 11, 8, 6}},
      {14, "pyramidkv:budget=10,window=2,beta=4,faithful=1", {10, 10, 10, 10}},
      {9, "pyramidkv:budget=10,window=2,beta=4", {9, 9, 9, 9}},
      {9, "pyramidkv:budget=10,window=2,beta=4,faithful=1", {9, 9, 9, 9}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(std::string(c.spec) + " n=" + std::to_string(c.n));
    std::mt19937 rng(c.n);
    Harness hs(4, 2, 2);
    auto pyramid = make(c.spec);
    hs.prefill(*pyramid, c.n, hs.random_rows(rng, false));
    expect_well_formed(hs.cache, c.n, 2);
    for (int l = 0; l < 4; l++)
      for (int h = 0; h < 2; h++) EXPECT_EQ(hs.cache.length(l, h), c.lengths[l]) << l;
  }
}

TEST(PyramidKV, ToyThroughTheStrategy) {
  for (bool faithful : {false, true}) {
    std::mt19937 rng(11);
    Harness hs(4, 2, 3);
    auto pyramid =
        make(std::string("pyramidkv:budget=40,window=8") + (faithful ? ",faithful=1" : ""));
    std::vector<Rows> scores(4);
    hs.prefill(*pyramid, 200, hs.random_rows(rng, true), [&](const Observation& obs) {
      for (int h = 0; h < 2; h++)
        scores[obs.layer].push_back(prefix_scores(obs, 2, h, 192, voting(8, 7, Pool::Max)));
    });
    expect_well_formed(hs.cache, 200, 8);
    const std::vector<int> lengths =
        faithful ? std::vector<int>{71, 51, 31, 11} : std::vector<int>{71, 50, 29, 9};
    for (int l = 0; l < 4; l++)
      for (int h = 0; h < 2; h++) {
        EXPECT_EQ(hs.cache.length(l, h), lengths[l]);
        expect_top_scores(scores[l][h], hs.kept(l, h));
      }
  }
}

TEST(PyramidKV, RandomObservationsFollowTheLayerBudgets) {
  for (int seed = 0; seed < 10; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const int n_layers = 1 + seed % 6, n = 20 + 13 * seed, budget = 24, window = 6;
    const bool faithful = seed % 2;
    auto pyramid = make("pyramidkv:budget=24,window=6,kernel=5,beta=" + std::to_string(2 + seed) +
                        (faithful ? ",faithful=1" : ""));
    const std::vector<int> budgets =
        pyramid_prefix_budgets(n_layers, budget - window, n, window, 2 + seed,
                               faithful ? PyramidRule::PyramidKV : PyramidRule::Kvlm);
    Harness hs(n_layers, 2, 2);
    hs.prefill(*pyramid, n, hs.random_rows(rng, seed % 3 == 0));
    expect_well_formed(hs.cache, n, window);
    int prefix_total = 0;
    for (int l = 0; l < n_layers; l++)
      for (int h = 0; h < 2; h++) {
        EXPECT_EQ(hs.prefix(l, h, window), std::min(n - window, budgets[l]));
        prefix_total += hs.prefix(l, h, window);
      }
    if (!faithful) {
      EXPECT_LE(prefix_total, 2 * n_layers * (budget - window));
    }
  }
}

// ---- adakv ---------------------------------------------------------------------------------

// README example B: 3 KV heads, 5 prefix tokens each, prefix budget 2 per head (w = 1).
TEST(AdaKV, ExampleBAdaptiveVersusUniform) {
  const Rows rows = {row({0.89f, 0.05f, 0.01f, 0.02f, 0.01f}, 1),
                     row({0.32f, 0.22f, 0.19f, 0.01f, 0.08f}, 1),
                     row({0.68f, 0.10f, 0.08f, 0.04f, 0.09f}, 1)};
  auto uniform = one_layer("snapkv:budget=3,window=1,kernel=1", rows, 6);
  for (int h = 0; h < 3; h++) EXPECT_EQ(uniform->kept(0, h), (Slots{0, 1, 5}));
  EXPECT_NEAR(kept_mass(rows, uniform->cache, 5), 2.26, 1e-5);

  for (const char* spec : {"adakv:budget=3,window=1,kernel=1,alpha=0",
                           "adakv:budget=3,window=1,kernel=1,alpha=0,faithful=1"}) {
    SCOPED_TRACE(spec);
    auto adaptive = one_layer(spec, rows, 6);  // caps [1, 3, 2]
    EXPECT_EQ(adaptive->kept(0, 0), (Slots{0, 5}));
    EXPECT_EQ(adaptive->kept(0, 1), (Slots{0, 1, 2, 5}));
    EXPECT_EQ(adaptive->kept(0, 2), (Slots{0, 1, 5}));
    EXPECT_NEAR(kept_mass(rows, adaptive->cache, 5), 2.40, 1e-5);
  }
  auto even = one_layer("adakv:budget=3,window=1,kernel=1,alpha=1", rows, 6);  // caps [2, 2, 2]
  for (int h = 0; h < 3; h++) EXPECT_EQ(even->kept(0, h), (Slots{0, 1, 5}));
}

// T5: one layer, 3 KV heads, P = 8, w = 2, C = 6 (B = 4): global top-12 counts [7, 2, 3].
TEST(AdaKV, T5Allocation) {
  const std::vector<std::vector<float>> prefix = {
      {0.20f, 0.15f, 0.12f, 0.11f, 0.10f, 0.09f, 0.08f, 0.05f},
      {0.70f, 0.02f, 0.03f, 0.01f, 0.13f, 0.04f, 0.006f, 0.014f},
      {0.40f, 0.035f, 0.25f, 0.045f, 0.025f, 0.065f, 0.055f, 0.075f}};
  EXPECT_EQ(top_k_counts(prefix, 12), (std::vector<int>{7, 2, 3}));
  const Rows rows = {row(prefix[0], 2), row(prefix[1], 2), row(prefix[2], 2)};
  const struct {
    const char* params;
    std::vector<Slots> kept_prefix;
  } cases[] = {
      {"", {{0, 1, 2, 3, 4, 5, 6}, {0, 4}, {0, 2, 7}}},                     // alpha 0.2: [7, 2, 3]
      {",faithful=1", {{0, 1, 2, 3, 4, 5}, {0, 4}, {0, 2}}},                // [6, 2, 2]
      {",alpha=0", {{0, 1, 2, 3, 4, 5, 6}, {0, 4}, {0, 2, 7}}},             // [7, 2, 3]
      {",alpha=0.25", {{0, 1, 2, 3, 4, 5}, {0, 4, 5}, {0, 2, 7}}},          // [6, 3, 3]
      {",alpha=0.25,faithful=1", {{0, 1, 2, 3, 4, 5}, {0, 4}, {0, 2, 7}}},  // half-even [6, 2, 3]
      {",alpha=0.5", {{0, 1, 2, 3, 4, 5}, {0, 4, 5}, {0, 2, 7}}},           // [6, 3, 3]
      {",alpha=0.5,faithful=1", {{0, 1, 2, 3, 4, 5}, {0, 4, 5}, {0, 2, 5, 7}}},  // [6, 3, 4]
      {",alpha=1", {{0, 1, 2, 3}, {0, 2, 4, 5}, {0, 2, 5, 7}}},                  // uniform = snapkv
  };
  for (const auto& c : cases) {
    const std::string spec = std::string("adakv:budget=6,window=2,kernel=1") + c.params;
    SCOPED_TRACE(spec);
    auto hs = one_layer(spec, rows, 10);
    for (int h = 0; h < 3; h++)
      EXPECT_EQ(hs->kept(0, h), with_window_slots(c.kept_prefix[h], 10, 2)) << "head " << h;
  }
}

// T6: Ada-Pyramid with T4's budgets [14, 10, 6, 2] (n = 30, w = 2, C = 10, beta = 4) and
// alpha = 0.2: floors [2, 2, 1, 0]; each layer shares H * B_l.
TEST(AdaKV, T6AdaPyramid) {
  const int floors[] = {2, 2, 1, 0}, budgets[] = {14, 10, 6, 2};
  for (bool faithful : {false, true})
    for (int seed = 0; seed < 5; seed++) {
      SCOPED_TRACE("faithful " + std::to_string(faithful) + " seed " + std::to_string(seed));
      std::mt19937 rng(seed);
      Harness hs(4, 3, 2);
      auto ada = make(std::string("adakv:budget=10,window=2,beta=4,pyramid=1,kernel=3") +
                      (faithful ? ",faithful=1" : ""));
      hs.prefill(*ada, 30, hs.random_rows(rng, false));
      expect_well_formed(hs.cache, 30, 2);
      for (int l = 0; l < 4; l++) {
        int layer_total = 0;
        for (int h = 0; h < 3; h++) {
          EXPECT_GE(hs.prefix(l, h, 2), floors[l]);
          layer_total += hs.prefix(l, h, 2);
        }
        if (faithful)
          EXPECT_LE(layer_total, 3 * budgets[l] + 3);  // rounding, no correction
        else
          EXPECT_EQ(layer_total, 3 * budgets[l]);
      }
    }
}

TEST(AdaKV, RandomObservationsShareTheLayerBudgetExactly) {
  for (int seed = 0; seed < 16; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const double alphas[] = {0, 0.05, 0.2, 0.37, 1};
    const double alpha = alphas[seed % 5];
    const int n = 40 + 9 * seed, budget = 12 + seed % 5, window = 3, heads = 2 + seed % 3;
    const int B = budget - window;
    std::ostringstream spec;
    spec << "adakv:budget=" << budget << ",window=3,kernel=3,alpha=" << alpha;
    auto ada = make(spec.str());
    Harness hs(2, heads, 2);
    std::vector<Rows> scores(2);
    hs.prefill(*ada, n, hs.random_rows(rng, seed % 2 == 0), [&](const Observation& obs) {
      for (int h = 0; h < heads; h++)
        scores[obs.layer].push_back(
            prefix_scores(obs, heads, h, n - window, voting(3, 3, Pool::Max)));
    });
    expect_well_formed(hs.cache, n, window);
    for (int l = 0; l < 2; l++) {
      const std::vector<int> counts = top_k_counts(scores[l], heads * B);
      int total = 0;
      for (int h = 0; h < heads; h++) {
        const int cap = hs.prefix(l, h, window);
        total += cap;
        EXPECT_GE(cap, int(std::floor(alpha * B)));
        EXPECT_LE(cap, n - window);
        if (alpha == 0) {
          EXPECT_EQ(cap, counts[h]);
        }
        if (alpha == 1) {
          EXPECT_EQ(cap, B);
        }
        expect_top_scores(scores[l][h], hs.kept(l, h));
      }
      EXPECT_EQ(total, heads * B);
    }
  }
}

// ---- dynamickv -----------------------------------------------------------------------------

// T7: 4 layers, 1 head, n = 18, w = 2 (window {16, 17}), C = 6 (base 4), rmax 3 (bs 12).
const Rows kT7Scores = {{.85f, .84f, .83f, .82f, .60f, .59f, .50f, .49f, .10f, .09f, .08f, .07f,
                         .06f, .05f, .04f, .03f},
                        {.55f, .54f, .30f, .29f, .28f, .27f, .26f, .25f, .24f, .23f, .22f, .21f,
                         .20f, .19f, .18f, .17f},
                        {.99f, .98f, .97f, .96f, .95f, .94f, .93f, .92f, .16f, .15f, .14f, .13f,
                         .12f, .11f, .105f, .095f},
                        {.31f, .32f, .33f, .89f, .34f, .35f, .36f, .88f, .37f, .38f, .39f, .87f,
                         .40f, .41f, .42f, .86f}};

TEST(DynamicKV, T7ProgressiveRebalances) {
  for (const char* spec : {"dynamickv:budget=6,window=2,kernel=1,rmax=3,every=2",
                           "dynamickv:budget=6,window=2,kernel=1,rmax=3,every=2,faithful=1",
                           "dynamickv:budget=6,window=2,kernel=1,rmax=3,every=4"}) {
    SCOPED_TRACE(spec);
    Harness hs(4, 1);
    auto dynamic = make(spec);
    const bool every_two = std::string(spec).find("every=2") != std::string::npos;
    for (int l = 0; l < 4; l++) {
      hs.append(l, 18);
      dynamic->on_prefill_layer(hs.cache, hs.observe(l, 18, 2, {row(kT7Scores[l], 2)}));
      if (l == 1 && every_two) {  // Z = [12, 4]
        EXPECT_EQ(hs.kept(0, 0), with_window_slots(range(0, 12), 18, 2));
        EXPECT_EQ(hs.kept(1, 0), with_window_slots({0, 1, 2, 3}, 18, 2));
      }
      if (l == 2) {
        EXPECT_EQ(hs.cache.length(2, 0), 14);  // bs candidates until the rebalance
      }
    }
    hs.cache.advance(18);
    dynamic->after_prefill(hs.cache);
    // Z = [4, 0, 8, 4]
    EXPECT_EQ(hs.kept(0, 0), with_window_slots({0, 1, 2, 3}, 18, 2));
    EXPECT_EQ(hs.kept(1, 0), with_window_slots({}, 18, 2));
    EXPECT_EQ(hs.kept(2, 0), with_window_slots(range(0, 8), 18, 2));
    EXPECT_EQ(hs.kept(3, 0), with_window_slots({3, 7, 11, 15}, 18, 2));
    expect_well_formed(hs.cache, 18, 2);
  }
}

// One global rebalance (every = L), rmax >= L and a long prefix: nothing clamps, so the
// layers hold exactly base * L prefix rows per KV head.
TEST(DynamicKV, RandomObservationsKeepTheModelBudget) {
  for (int seed = 0; seed < 8; seed++) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937 rng(seed);
    const int n_layers = 4, heads = 2, window = 2, budget = 12, base = budget - window;
    const bool avg = seed % 2;
    auto dynamic = make(std::string("dynamickv:budget=12,window=2,rmax=10,every=4,pool=") +
                        (avg ? "avg" : "max"));
    Harness hs(n_layers, heads, 3);
    const int n = 300 + seed;
    std::vector<Rows> scores(n_layers);
    hs.prefill(*dynamic, n, hs.random_rows(rng, seed % 3 == 0), [&](const Observation& obs) {
      for (int h = 0; h < heads; h++)
        scores[obs.layer].push_back(prefix_scores(obs, heads, h, n - window,
                                                  voting(window, 7, avg ? Pool::Avg : Pool::Max)));
    });
    expect_well_formed(hs.cache, n, window);
    for (int h = 0; h < heads; h++) {
      int total = 0;
      for (int l = 0; l < n_layers; l++) {
        EXPECT_EQ(hs.cache.length(l, h), hs.cache.length(l, 0));  // same count per layer
        expect_top_scores(scores[l][h], hs.kept(l, h));
        total += hs.prefix(l, h, window);
      }
      EXPECT_EQ(total, base * n_layers);
    }
  }
}

// Several rebalances, clamps and (faithful) an unbalanced tail: 6 layers, every 4.
TEST(DynamicKV, TailRebalance) {
  for (bool faithful : {false, true})
    for (int seed = 0; seed < 6; seed++) {
      SCOPED_TRACE("faithful " + std::to_string(faithful) + " seed " + std::to_string(seed));
      std::mt19937 rng(seed);
      const int n_layers = 6, heads = 2, window = 2, base = 10, candidates = 40, n = 200;
      auto dynamic = make(std::string("dynamickv:budget=12,window=2,rmax=4,kernel=3") +
                          (faithful ? ",faithful=1" : ""));
      Harness hs(n_layers, heads, 2);
      std::vector<Rows> scores(n_layers);
      hs.prefill(*dynamic, n, hs.random_rows(rng, false), [&](const Observation& obs) {
        for (int h = 0; h < heads; h++)
          scores[obs.layer].push_back(
              prefix_scores(obs, heads, h, n - window, voting(window, 3, Pool::Avg)));
      });
      expect_well_formed(hs.cache, n, window);
      for (int h = 0; h < heads; h++) {
        int rebalanced = 0;
        for (int l = 0; l < n_layers; l++) {
          EXPECT_EQ(hs.cache.length(l, h), hs.cache.length(l, 0));
          expect_top_scores(scores[l][h], hs.kept(l, h));
          if (faithful && l >= 4)
            EXPECT_EQ(hs.prefix(l, h, window), candidates);  // never rebalanced
          else
            rebalanced += hs.prefix(l, h, window);
        }
        EXPECT_LE(rebalanced, base * n_layers);
        EXPECT_GT(rebalanced, 0);
      }
    }
}

// ratio=r is the token budget ceil(r * n), fixed for the prefill; below the window only
// the window stays.
TEST(DynamicKV, RatioIsTheEquivalentTokenBudget) {
  const int n = 203;  // ceil(0.25 * 203) = 51
  std::mt19937 rng_ratio(3), rng_tokens(3);
  Harness by_ratio(4, 2, 3), by_tokens(4, 2, 3);
  auto ratio = make("dynamickv:ratio=0.25,window=4,every=2");
  auto tokens = make("dynamickv:budget=51,window=4,every=2");
  by_ratio.prefill(*ratio, n, by_ratio.random_rows(rng_ratio, false));
  by_tokens.prefill(*tokens, n, by_tokens.random_rows(rng_tokens, false));
  for (int l = 0; l < 4; l++)
    for (int h = 0; h < 2; h++) EXPECT_EQ(by_ratio.kept(l, h), by_tokens.kept(l, h));
  expect_well_formed(by_ratio.cache, n, 4);
  EXPECT_EQ(ratio->name(), "dynamickv:ratio=0.25,window=4,kernel=7,pool=avg,rmax=10,every=2,faithful=0");

  Harness small(2, 1);
  auto tiny = make("dynamickv:ratio=0.05,window=4");
  small.prefill(*tiny, 40, small.random_rows(rng_ratio, false));  // ceil(0.05 * 40) = 2 < 4
  EXPECT_EQ(small.kept(0, 0), range(36, 40));
  EXPECT_EQ(small.kept(1, 0), range(36, 40));
}

// Peak KV rows per head during prefill <= base*L + (every-1)*bs + L*window + n; the
// prefill ends at base*L + L*window.
TEST(DynamicKV, PeakMemoryOnALongPrompt) {
  const int n_layers = 8, heads = 2, n = 3000, window = 8, base = 32, candidates = 320, every = 4;
  std::mt19937 rng(5);
  Harness hs(n_layers, heads, 3);
  auto dynamic = make("dynamickv:budget=40,window=8,rmax=10,every=4");
  size_t peak = 0;
  auto measure = [&] { peak = std::max(peak, hs.cache.stats().bytes_held); };
  const auto rows = hs.random_rows(rng, false);
  for (int l = 0; l < n_layers; l++) {
    hs.append(l, n);
    measure();
    dynamic->on_prefill_layer(hs.cache, hs.observe(l, n, window, rows(l)));
    measure();
  }
  hs.cache.advance(n);
  dynamic->after_prefill(hs.cache);
  const size_t bound = size_t(base * n_layers + (every - 1) * candidates + n_layers * window + n);
  EXPECT_LE(peak, bound * heads * kRowBytes);
  EXPECT_GT(peak, size_t(n) * heads * kRowBytes);  // the layer being prefilled holds all n
  EXPECT_LE(hs.cache.stats().bytes_held, size_t(base + window) * n_layers * heads * kRowBytes);
  expect_well_formed(hs.cache, n, window);
}

// ---- parameters ----------------------------------------------------------------------------

TEST(WindowMethods, NamesCarryEveryParameter) {
  const std::pair<const char*, const char*> cases[] = {
      {"snapkv", "snapkv:budget=128,window=32,kernel=7,pool=max,gqa=mean,pos=original"},
      {"snapkv:ratio=0.1,pool=avg,gqa=max", "snapkv:ratio=0.1,window=32,kernel=7,pool=avg,gqa=max,pos=original"},
      {"pyramidkv", "pyramidkv:budget=128,window=32,kernel=7,pool=max,gqa=mean,beta=20,faithful=0,pos=original"},
      {"pyramidkv:window=8,faithful=1",
       "pyramidkv:budget=128,window=8,kernel=7,pool=max,gqa=mean,beta=20,faithful=1,pos=original"},
      {"adakv",
       "adakv:budget=128,window=32,kernel=7,pool=max,gqa=mean,alpha=0.2,pyramid=0,"
       "beta=20,faithful=0"},
      {"adakv:ratio=0.2,alpha=0.05,pyramid=1",
       "adakv:ratio=0.2,window=32,kernel=7,pool=max,gqa=mean,alpha=0.05,pyramid=1,beta=20,"
       "faithful=0"},
      {"dynamickv", "dynamickv:budget=128,window=8,kernel=7,pool=avg,rmax=10,every=4,faithful=0"},
      {"dynamickv:rmax=2.5,pool=max",
       "dynamickv:budget=128,window=8,kernel=7,pool=max,rmax=2.5,every=4,faithful=0"},
  };
  for (const auto& [spec, name] : cases) {
    EXPECT_EQ(make(spec)->name(), name);
    EXPECT_EQ(make(name)->name(), name);
    const Needs needs = make(spec)->needs();
    EXPECT_GT(needs.window, 0);
    EXPECT_FALSE(needs.all_queries || needs.key_norms || needs.decode_attention);
  }
}

TEST(WindowMethods, BadParametersAreRejected) {
  const std::pair<const char*, const char*> cases[] = {
      {"snapkv:foo=1", "foo"},
      {"snapkv:kernel=4", "odd"},
      {"snapkv:budget=32,window=32", "window"},
      {"snapkv:budget=8,ratio=0.5", "not both"},
      {"snapkv:window=0", "window"},
      {"snapkv:pool=mean", "pool"},
      {"snapkv:gqa=per-query-head", "gqa"},
      {"pyramidkv:beta=0", "beta"},
      {"pyramidkv:faithful=2", "faithful"},
      {"adakv:alpha=1.5", "alpha"},
      {"adakv:pyramid=2", "pyramid"},
      {"adakv:budget=10,window=12", "window"},
      {"dynamickv:budget=8,ratio=0.5", "not both"},
      {"dynamickv:gqa=mean", "gqa"},
      {"dynamickv:rmax=0.5", "rmax"},
      {"dynamickv:every=0", "every"},
      {"dynamickv:budget=8,window=8", "window"},
  };
  for (const auto& [spec, mention] : cases) {
    try {
      make(spec);
      ADD_FAILURE() << spec << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(mention), std::string::npos) << spec << ": " << e.what();
    }
  }
}

TEST(WindowMethods, MethodsListDefaultsAndPapers) {
  const std::pair<const char*, const char*> papers[] = {{"snapkv", "2404.14469"},
                                                        {"pyramidkv", "2406.02069"},
                                                        {"adakv", "2407.11550"},
                                                        {"dynamickv", "2412.14838"}};
  for (const auto& [id, arxiv] : papers) {
    const auto& methods = known_methods();
    auto it = std::find_if(methods.begin(), methods.end(),
                           [&](const MethodInfo& m) { return m.name == id; });
    ASSERT_NE(it, methods.end()) << id;
    EXPECT_NE(it->paper.find(arxiv), std::string::npos) << id;
    EXPECT_FALSE(it->summary.empty());
    ASSERT_FALSE(it->params.empty());
    EXPECT_EQ(it->params.front().first, "budget");
    EXPECT_EQ(it->params.front().second.substr(0, 3), "128");
  }
}

}  // namespace
}  // namespace kvlm
