// The decode-time methods (streaming, h2o, knorm, simlayerkv) driven through the registry
// on a real KVCache with hand-made observations: the worked examples of their notes
// (src/kv/strategies/<method>.md), invariants on random observations, and long decode runs that
// must keep every head within budget + slack rows and the cache's memory bounded.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <random>
#include <stdexcept>

#include "cache_contents.h"
#include "kernels/cpu/cpu_backend.h"
#include "kv/kv_cache.h"
#include "kv/strategy.h"

namespace kvlm {
namespace {

constexpr int kDim = 4;

// Key/value rows for T tokens from `first` on: element 0 of every row is the token's
// position, so a row's contents show which token it is after compactions.
std::vector<float> token_rows(int n_kv_heads, int first, int T, float tag) {
  std::vector<float> v(size_t(T) * n_kv_heads * kDim);
  for (int t = 0; t < T; t++)
    for (int h = 0; h < n_kv_heads; h++)
      for (int d = 0; d < kDim; d++)
        v[(size_t(t) * n_kv_heads + h) * kDim + d] = d == 0 ? float(first + t) : tag + h + 0.1f * d;
  return v;
}

void append_layer(KVCache& cache, int layer, int T) {
  const int first = cache.tokens_seen();
  const int n = cache.n_kv_heads();
  cache.append(layer, token_rows(n, first, T, 0.0f).data(), token_rows(n, first, T, 0.5f).data(),
               n * kDim, first, T);
}

// One prefill call as the forward pass and the observer make it: a new sequence on an
// empty cache, then per layer append and observe; the cache advances after the last layer.
// `fill` adds the observation fields the test hands over.
void prefill(KVStrategy& s, KVCache& cache, int T,
             const std::function<void(Observation&)>& fill = {}) {
  if (cache.tokens_seen() == 0) s.begin_sequence(cache, T);
  for (int l = 0; l < cache.n_layers(); l++) {
    append_layer(cache, l, T);
    Observation obs;
    obs.layer = l;
    obs.n_new = T;
    obs.n_tokens = cache.tokens_seen() + T;
    if (fill) fill(obs);
    s.on_prefill_layer(cache, obs);
  }
  cache.advance(T);
  s.after_prefill(cache);
}

// One decoded token: every layer appends it, the cache advances, then the strategy sees
// the step (attention from `attend`, which sees the cache with the token appended).
void decode(KVStrategy& s, KVCache& cache,
            const std::function<DecodeObservation(const KVCache&)>& attend = {}) {
  if (cache.tokens_seen() == 0) s.begin_sequence(cache, 1);  // a one-token prompt
  for (int l = 0; l < cache.n_layers(); l++) append_layer(cache, l, 1);
  cache.advance(1);
  s.on_decode_step(cache, attend ? attend(cache) : DecodeObservation{});
}

// Per query head, the same row for every head of a layer: [n_heads][slots of its KV head].
std::vector<std::vector<float>> same_rows(const KVCache& cache, int layer, int group,
                                          const std::vector<float>& row) {
  std::vector<std::vector<float>> rows;
  for (int h = 0; h < cache.n_kv_heads() * group; h++) {
    EXPECT_EQ(int(row.size()), cache.length(layer, h / group));
    rows.push_back(row);
  }
  return rows;
}

// Random softmax-like rows (positive, summing to 1) over each query head's slots.
std::vector<std::vector<float>> random_rows(const KVCache& cache, int layer, int group,
                                            std::mt19937& rng) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<std::vector<float>> rows(size_t(cache.n_kv_heads()) * group);
  for (size_t h = 0; h < rows.size(); h++) {
    rows[h].resize(cache.length(layer, int(h) / group));
    float sum = 0;
    for (float& x : rows[h]) sum += x = u(rng) * u(rng);
    for (float& x : rows[h]) x /= sum;
  }
  return rows;
}

DecodeObservation random_decode_attention(const KVCache& cache, int group, std::mt19937& rng) {
  DecodeObservation obs;
  for (int l = 0; l < cache.n_layers(); l++) obs.attention.push_back(random_rows(cache, l, group, rng));
  return obs;
}

std::vector<int32_t> range(int first, int last) {  // [first, last)
  std::vector<int32_t> v(std::max(0, last - first));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// Every head holds ascending unique positions, rows that match them, and stats that add up.
void expect_consistent(const KVCache& cache) {
  const KVStats st = cache.stats();
  size_t rows = 0;
  for (int l = 0; l < cache.n_layers(); l++) {
    const std::vector<KVHeadView> view = cache.view(l);
    for (int h = 0; h < cache.n_kv_heads(); h++) {
      const std::vector<int32_t>& pos = cache.positions(l, h);
      ASSERT_EQ(int(pos.size()), cache.length(l, h));
      ASSERT_EQ(st.lengths[l][h], cache.length(l, h));
      ASSERT_GE(cache.length(l, h), 1) << "a head must never be emptied";
      for (size_t i = 1; i < pos.size(); i++) ASSERT_LT(pos[i - 1], pos[i]) << "order, no duplicates";
      for (size_t i = 0; i < pos.size(); i++) ASSERT_EQ(test::f32_rows(view[h].keys)[i * kDim], float(pos[i]));
      rows += pos.size();
    }
  }
  EXPECT_EQ(st.bytes_held, 2 * rows * kDim * sizeof(float));
  EXPECT_EQ(st.bytes_full,
            2 * size_t(cache.tokens_seen()) * cache.n_layers() * cache.n_kv_heads() * kDim * sizeof(float));
  EXPECT_GE(st.bytes_allocated, st.bytes_held);
}

// Indices (ascending) of the k best scores, ties to the lower index: the reference the
// methods' choices are compared with.
std::vector<int32_t> reference_best(const std::vector<float>& scores, int k) {
  std::vector<int32_t> idx = range(0, int(scores.size()));
  std::stable_sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) { return scores[a] > scores[b]; });
  idx.resize(std::min<size_t>(idx.size(), size_t(std::max(0, k))));
  std::sort(idx.begin(), idx.end());
  return idx;
}

// ---------------------------------------------------------------------------------------
// streaming

TEST(Streaming, SpecToyPrefillThenDecode) {
  CpuBackend b(1);
  KVCache cache(b, 2, 2, kDim, 64);
  auto s = make_strategy("streaming:budget=5,sinks=2");
  EXPECT_EQ(s->name(), "streaming:budget=5,sinks=2,slack=0,pos=cache");
  const Needs n = s->needs();
  EXPECT_FALSE(n.window || n.all_queries || n.key_norms || n.decode_attention) << "needs no scores";
  prefill(*s, cache, 10);
  for (int l = 0; l < 2; l++)
    for (int h = 0; h < 2; h++) EXPECT_EQ(cache.positions(l, h), (std::vector<int32_t>{0, 1, 7, 8, 9}));
  decode(*s, cache);
  for (int l = 0; l < 2; l++)
    for (int h = 0; h < 2; h++) EXPECT_EQ(cache.positions(l, h), (std::vector<int32_t>{0, 1, 8, 9, 10}));
  expect_consistent(cache);
}

TEST(Streaming, SlackAmortisesDecodeEviction) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("streaming:budget=5,sinks=2,slack=3");
  prefill(*s, cache, 10);
  EXPECT_EQ(cache.length(0, 0), 5) << "prefill cuts to the budget itself";
  for (int t = 0; t < 3; t++) decode(*s, cache);
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 1, 7, 8, 9, 10, 11, 12}));
  decode(*s, cache);  // 9 rows > 5 + 3: back to 5 in one step
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 1, 11, 12, 13}));
}

TEST(Streaming, ChatTurnAppliesThePrefillRuleOverAllSlots) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("streaming:budget=5,sinks=2");
  prefill(*s, cache, 10);
  decode(*s, cache);
  prefill(*s, cache, 4);  // positions 11..14 join [0, 1, 8, 9, 10]
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 1, 12, 13, 14}));
  // A new prompt on a cleared cache starts over.
  cache.clear();
  prefill(*s, cache, 3);
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 1, 2}));
}

TEST(Streaming, RatioBudgetIsFixedAtThePrompt) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 128);
  auto s = make_strategy("streaming:ratio=0.25,sinks=1");
  EXPECT_EQ(s->name(), "streaming:ratio=0.25,sinks=1,slack=0,pos=cache");
  prefill(*s, cache, 20);  // ceil(0.25 * 20) = 5
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 16, 17, 18, 19}));
  for (int t = 0; t < 10; t++) decode(*s, cache);
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 26, 27, 28, 29}));
  // A share too small for the sinks keeps fewer sinks, never fewer recent tokens than 1.
  KVCache small(b, 1, 1, kDim, 128);
  auto tight = make_strategy("streaming:ratio=0.1,sinks=4");
  prefill(*tight, small, 20);  // ceil(2.0) = 2
  EXPECT_EQ(small.positions(0, 0), (std::vector<int32_t>{0, 19}));
  decode(*tight, small);
  EXPECT_EQ(small.positions(0, 0), (std::vector<int32_t>{0, 20}));
}

// ---------------------------------------------------------------------------------------
// h2o

TEST(H2O, SpecToyKeepsHeavyHittersAndRecent) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("h2o:budget=3,heavy=0.5");  // 2 heavy + 1 recent
  EXPECT_EQ(s->name(), "h2o:budget=3,heavy=0.5,obs=full,slack=0,pos=original");
  EXPECT_TRUE(s->needs().all_queries);
  EXPECT_TRUE(s->needs().decode_attention);
  EXPECT_EQ(s->needs().window, 0);
  // Two query heads share the KV head; their mean is the toy's [5, 1, 3, 0.5, 2].
  prefill(*s, cache, 5, [](Observation& o) {
    o.query_attention_sum = {{10, 0, 6, 1, 4}, {0, 2, 0, 0, 0}};
  });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 2, 4}));

  // Decode token 5: scores become 5.1, 3.5, 2.2 and 0.2 for the new token, which is the
  // protected recent one now; token 4 left the recent window and is the weakest heavy one.
  decode(*s, cache, [](const KVCache&) {
    DecodeObservation o;
    o.attention = {{{0.1f, 0.5f, 0.2f, 0.2f}, {0.1f, 0.5f, 0.2f, 0.2f}}};
    return o;
  });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 2, 5}));
  // Scores follow their slots: token 5 (0.2) now loses to token 2 (3.5) and the new one.
  decode(*s, cache, [](const KVCache&) {
    DecodeObservation o;
    o.attention = {{{0.0f, 0.0f, 0.1f, 0.9f}, {0.0f, 0.0f, 0.1f, 0.9f}}};
    return o;
  });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 2, 6}));
  expect_consistent(cache);
}

TEST(H2O, WindowObservationSumsTheWindowQueries) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("h2o:budget=3,obs=window,window=2");
  EXPECT_EQ(s->name(), "h2o:budget=3,heavy=0.5,obs=window,window=2,slack=0,pos=original");
  EXPECT_EQ(s->needs().window, 2);
  EXPECT_FALSE(s->needs().all_queries);
  prefill(*s, cache, 5, [](Observation& o) {
    o.window = 2;
    o.window_attention = {{0.1f, 0.4f, 0.2f, 0.2f, 0.1f}};  // mean of the window queries
  });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{1, 2, 4}));  // tie 2 vs 3 -> 2
  // Prefill scores are sums (tokens 1, 2, 4: 0.8, 0.4, 0.2), so after this step token 1
  // (0.8) still beats token 4 (0.55); were they means (0.4 vs 0.45), token 1 would go.
  decode(*s, cache, [](const KVCache&) {
    DecodeObservation o;
    o.attention = {{{0.0f, 0.3f, 0.35f, 0.35f}}};
    return o;
  });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{1, 2, 5}));
}

TEST(H2O, FreshPromptResetsScoresAndChatTurnAccumulates) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("h2o:budget=3");
  prefill(*s, cache, 5, [](Observation& o) { o.query_attention_sum = {{0, 9, 0, 0, 1}}; });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 1, 4}));
  // Next chat turn: the old slots keep their scores (token 1: 9) plus the new queries'.
  prefill(*s, cache, 3, [](Observation& o) { o.query_attention_sum = {{3, 0, 1, 2, 1, 1}}; });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 1, 7}));
  // A new prompt: nothing of the old scores survives (token 1 would win with 9 + 0).
  cache.clear();
  prefill(*s, cache, 5, [](Observation& o) { o.query_attention_sum = {{0, 0, 4, 3, 1}}; });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{2, 3, 4}));
}

TEST(H2O, ScoresFollowSlotsThroughAnotherStrategysCompaction) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("h2o:budget=4,heavy=0.5+streaming:budget=3,sinks=1,slack=2");
  // h2o keeps 0, 1 (heavy) and 4, 5 (recent); streaming then drops token 1.
  prefill(*s, cache, 6, [](Observation& o) { o.query_attention_sum = {{5, 4, 1, 1, 2, 3}}; });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 4, 5}));
  auto no_attention = [](const KVCache& c) {
    DecodeObservation o;
    o.attention = {{std::vector<float>(c.length(0, 0), 0.0f)}};
    return o;
  };
  decode(*s, cache, no_attention);
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 4, 5, 6}));
  // h2o cuts 5 slots to 4: protects 6, 7 and keeps token 0 (5) and token 5 (3) over
  // token 4 (2). Scores matched by slot index would have given token 4 token 1's 4.
  decode(*s, cache, no_attention);
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 5, 6, 7}));
}

// ---------------------------------------------------------------------------------------
// knorm

TEST(KNorm, SpecToysKeepTheSmallestNorms) {
  CpuBackend b(1);
  {
    KVCache cache(b, 1, 1, kDim, 64);
    auto s = make_strategy("knorm:budget=1,skip_layers=0");
    prefill(*s, cache, 3, [](Observation& o) { o.key_norms = {{1.5f, 0.8f, 2.0f}}; });
    EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{1}));
  }
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("knorm:budget=3,skip_layers=0");
  EXPECT_EQ(s->name(), "knorm:budget=3,skip_layers=0,protect=0,slack=0,decode=1,pos=original");
  const Needs n = s->needs();
  EXPECT_TRUE(n.key_norms);
  EXPECT_TRUE(n.decode_key_norms);
  EXPECT_FALSE(n.window || n.all_queries || n.decode_attention);
  prefill(*s, cache, 5, [](Observation& o) { o.key_norms = {{0.3f, 2.2f, 0.9f, 0.1f, 1.4f}}; });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 2, 3}));
  expect_consistent(cache);
}

TEST(KNorm, SkipsTheFirstLayersAndProtectsRecent) {
  CpuBackend b(1);
  KVCache cache(b, 3, 1, kDim, 64);
  auto s = make_strategy("knorm:budget=3,protect=1");  // skip_layers=2 by default
  EXPECT_EQ(s->name(), "knorm:budget=3,skip_layers=2,protect=1,slack=0,decode=1,pos=original");
  prefill(*s, cache, 5, [](Observation& o) { o.key_norms = {{0.3f, 2.2f, 0.9f, 0.1f, 1.4f}}; });
  EXPECT_EQ(cache.length(0, 0), 5);
  EXPECT_EQ(cache.length(1, 0), 5);
  EXPECT_EQ(cache.positions(2, 0), (std::vector<int32_t>{0, 3, 4})) << "token 4 is protected";
}

// A decode step observes the new key's norm; over budget, every slot is ranked by norm
// and the largest goes, the new token included.
DecodeObservation new_key_norm(float norm) {
  DecodeObservation o;
  o.key_norms = {{norm}};
  return o;
}

TEST(KNorm, DecodeRanksTheNewKeyByItsNorm) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("knorm:budget=3,skip_layers=0");
  prefill(*s, cache, 5, [](Observation& o) { o.key_norms = {{0.3f, 2.2f, 0.9f, 0.1f, 1.4f}}; });
  ASSERT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 2, 3}));  // 0.3, 0.9, 0.1
  decode(*s, cache, [](const KVCache&) { return new_key_norm(0.5f); });  // 0.9 goes
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 3, 5}));
  decode(*s, cache, [](const KVCache&) { return new_key_norm(5.0f); });  // the new key goes
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 3, 5}));
  decode(*s, cache, [](const KVCache&) { return new_key_norm(0.05f); });  // 0.5 goes
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 3, 7}));
  EXPECT_THROW(decode(*s, cache), std::logic_error) << "a step without the norms";
}

// decode=0 (the official passkey and needle scripts): nothing is evicted while decoding;
// the next prefill (a chat turn) ranks every slot again.
TEST(KNorm, DecodeZeroEvictsAtPrefillOnly) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("knorm:budget=3,skip_layers=0,decode=0");
  EXPECT_FALSE(s->needs().decode_key_norms);
  prefill(*s, cache, 5, [](Observation& o) { o.key_norms = {{0.3f, 2.2f, 0.9f, 0.1f, 1.4f}}; });
  decode(*s, cache);
  decode(*s, cache);
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 2, 3, 5, 6}));
  prefill(*s, cache, 2, [](Observation& o) { o.key_norms = {{0.5f, 0.2f, 0.9f, 0.1f, 0.4f, 0.7f, 0.6f}}; });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{2, 5, 6}));  // 0.2, 0.1, 0.4
}

// The paper ranks rotated keys; RoPE turns coordinate pairs, so norms (and the choice) are
// the same as for the keys before RoPE.
TEST(KNorm, RopePreservesTheNormRanking) {
  CpuBackend b(1);
  constexpr int kHeads = 2, kL = 40, kHeadDim = 8;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  std::vector<float> keys(size_t(kL) * kHeads * kHeadDim);
  for (int t = 0; t < kL; t++)
    for (int h = 0; h < kHeads; h++) {
      // Distinct norms (0.5 + 0.1 * rank) so rounding cannot reorder them.
      const float target = 0.5f + 0.1f * float((t * 7 + h * 13) % kL);
      float* k = &keys[(size_t(t) * kHeads + h) * kHeadDim];
      float sq = 0;
      for (int d = 0; d < kHeadDim; d++) {
        k[d] = normal(rng);
        sq += k[d] * k[d];
      }
      for (int d = 0; d < kHeadDim; d++) k[d] *= target / std::sqrt(sq);
    }
  std::vector<float> norms_before(size_t(kHeads) * kL);  // [head][token]
  for (int t = 0; t < kL; t++)
    for (int h = 0; h < kHeads; h++) {
      const float* k = &keys[(size_t(t) * kHeads + h) * kHeadDim];
      float sq = 0;
      for (int d = 0; d < kHeadDim; d++) sq += k[d] * k[d];
      norms_before[size_t(h) * kL + t] = std::sqrt(sq);
    }
  std::vector<float> inv_freq(kHeadDim / 2);
  for (int i = 0; i < kHeadDim / 2; i++) inv_freq[i] = std::pow(10000.0f, -2.0f * i / kHeadDim);
  // Rotated as queries (no key heads in the row), which turn exactly as keys do.
  std::vector<float> rotated(keys.size());
  b.rope_qk(rotated.data(), keys.data(), 0, inv_freq.data(), kL, kHeads, 0, kHeadDim, kHeadDim,
            false);
  ASSERT_NE(rotated, keys);

  KVCache cache(b, 1, kHeads, kHeadDim, 64);
  cache.append(0, rotated.data(), rotated.data(), kHeads * kHeadDim, 0, kL);
  Observation obs;
  obs.n_new = obs.n_tokens = kL;
  for (const KVHeadView& v : cache.view(0)) {  // as the forward pass observes them
    obs.key_norms.emplace_back(v.len);
    b.key_norms(obs.key_norms.back().data(), v, kHeadDim);
  }
  for (int h = 0; h < kHeads; h++)
    for (int t = 0; t < kL; t++)
      EXPECT_NEAR(obs.key_norms[h][t], norms_before[size_t(h) * kL + t], 1e-5f);
  auto s = make_strategy("knorm:budget=10,skip_layers=0");
  s->begin_sequence(cache, kL);
  s->on_prefill_layer(cache, obs);
  cache.advance(kL);
  for (int h = 0; h < kHeads; h++) {
    std::vector<float> neg(kL);
    for (int t = 0; t < kL; t++) neg[t] = -norms_before[size_t(h) * kL + t];
    EXPECT_EQ(cache.positions(0, h), reference_best(neg, 10)) << "head " << h;
  }
}

// ---------------------------------------------------------------------------------------
// simlayerkv

const std::vector<std::vector<float>> kProbeToy = {
    {0.05f, 0.15f, 0.15f, 0.15f, 0.15f, 0.15f, 0.10f, 0.10f},  // 0.25 -> not lazy
    {0.60f, 0.02f, 0.02f, 0.02f, 0.02f, 0.02f, 0.10f, 0.20f},  // 0.90 -> lazy
    {0.39f, 0.11f, 0.05f, 0.05f, 0.05f, 0.05f, 0.10f, 0.20f},  // 0.69 -> not lazy
    {0.30f, 0.00f, 0.00f, 0.00f, 0.00f, 0.00f, 0.30f, 0.40f},  // 1.00 -> lazy
};

TEST(SimLayerKV, SpecToyFindsLazyLayers) {
  CpuBackend b(1);
  constexpr int kGroup = 2;
  KVCache cache(b, 4, 2, kDim, 64);
  auto s = make_strategy("simlayerkv:delta=0.7,sinks=1,recent=2,probe=4");
  EXPECT_EQ(s->name(), "simlayerkv:delta=0.7,sinks=1,recent=2,probe=4,detect=prefill,slack=0,pos=original");
  EXPECT_EQ(s->needs().window, 4);
  EXPECT_FALSE(s->needs().decode_attention);
  EXPECT_EQ(s->report(), "simlayerkv: delta 0.7 (given)\n");
  prefill(*s, cache, 8, [&](Observation& o) {
    o.window = 4;
    // Query heads of a layer differ; their mean is the toy row.
    o.window_attention = same_rows(cache, o.layer, kGroup, kProbeToy[o.layer]);
    for (float& x : o.window_attention[0]) x *= 0.5f;
    for (float& x : o.window_attention[3]) x *= 1.5f;
  });
  for (int h = 0; h < 2; h++) {
    EXPECT_EQ(cache.length(0, h), 8);
    EXPECT_EQ(cache.positions(1, h), (std::vector<int32_t>{0, 6, 7}));
    EXPECT_EQ(cache.length(2, h), 8);
    EXPECT_EQ(cache.positions(3, h), (std::vector<int32_t>{0, 6, 7}));
  }
  EXPECT_EQ(s->report(), "simlayerkv: delta 0.7 (given)\nsimlayerkv: lazy layers 1, 3 (2 of 4)\n");
  // Decode: lazy layers act like streaming, the others grow.
  decode(*s, cache);
  EXPECT_EQ(cache.positions(1, 0), (std::vector<int32_t>{0, 7, 8}));
  EXPECT_EQ(cache.length(0, 0), 9);
  EXPECT_EQ(cache.length(2, 1), 9);
  expect_consistent(cache);
}

// The official prefill variant by hand (simlayerkv.md): 10 tokens, probe 2 (queries at
// slots 8 and 9), sinks 1, window 3, delta 0.5. Each row's mass is its sink plus its own
// previous 3 slots, plus itself with self=1:
//   layer 0: query 8: 0.1 + (0.1 + 0.1 + 0.2) [+ 0.5] ; query 9: 0.1 + (0.1 + 0.1 + 0.1) [+ 0.3]
//            self=0: mean(0.5, 0.4) = 0.45, not lazy; self=1: mean(1.0, 0.7) = 0.85, lazy
//   layer 1: query 8: 0.4 + (0.1 + 0.1 + 0.2) [+ 0.2] ; query 9: 0.5 + (0.1 + 0.1 + 0.1) [+ 0.2]
//            self=0: mean(0.8, 0.8) = 0.8, lazy
// Slot 1's 0.3 in layer 0's second row lies outside both windows and never counts.
TEST(SimLayerKV, OfficialPrefillVariantMeasuresEachQuerysOwnWindow) {
  const std::vector<std::vector<float>> rows[2] = {
      {{0.1f, 0, 0, 0, 0, 0.1f, 0.1f, 0.2f, 0.5f}, {0.1f, 0.3f, 0, 0, 0, 0, 0.1f, 0.1f, 0.1f, 0.3f}},
      {{0.4f, 0, 0, 0, 0, 0.1f, 0.1f, 0.2f, 0.2f}, {0.5f, 0, 0, 0, 0, 0, 0.1f, 0.1f, 0.1f, 0.2f}}};
  for (const auto& [spec, lazy0] : {std::pair{"window=3,self=0", false}, {"window=3", true}}) {
    SCOPED_TRACE(spec);
    CpuBackend b(1);
    KVCache cache(b, 2, 1, kDim, 64);
    auto s = make_strategy(std::string("simlayerkv:delta=0.5,sinks=1,recent=2,probe=2,") + spec);
    EXPECT_NE(s->name().find(std::string(",detect=prefill,") + (lazy0 ? "window=3,self=1" : spec)),
              std::string::npos) << s->name();
    EXPECT_TRUE(s->needs().window_rows);
    EXPECT_EQ(s->needs().window, 2);
    prefill(*s, cache, 10, [&](Observation& o) {
      o.window = 2;
      for (const std::vector<float>& row : rows[o.layer]) {
        std::vector<float> padded = row;
        padded.resize(10, 0.0f);  // slots past the query's own are not visible
        o.window_rows.push_back({padded});
      }
    });
    EXPECT_EQ(cache.length(0, 0), lazy0 ? 3 : 10);
    EXPECT_EQ(cache.positions(1, 0), (std::vector<int32_t>{0, 8, 9}));
  }
  EXPECT_THROW(make_strategy("simlayerkv:self=0"), std::invalid_argument) << "self= needs window=";
  EXPECT_THROW(make_strategy("simlayerkv:detect=decode,window=512"), std::invalid_argument);
}

TEST(SimLayerKV, DecodeDetectionUsesTheFirstGeneratedToken) {
  CpuBackend b(1);
  KVCache cache(b, 4, 1, kDim, 64);
  auto s = make_strategy("simlayerkv:delta=0.7,sinks=1,recent=2,detect=decode");
  EXPECT_EQ(s->name(), "simlayerkv:delta=0.7,sinks=1,recent=2,detect=decode,slack=0,pos=original");
  EXPECT_TRUE(s->needs().decode_attention);
  EXPECT_EQ(s->needs().window, 0);
  prefill(*s, cache, 7);
  for (int l = 0; l < 4; l++) EXPECT_EQ(cache.length(l, 0), 7);
  // The toy rows, read as the attention of token 7 over slots 0..7.
  auto toy = [](const KVCache& c) {
    DecodeObservation o;
    for (int l = 0; l < 4; l++) o.attention.push_back(same_rows(c, l, 1, kProbeToy[l]));
    return o;
  };
  EXPECT_TRUE(s->needs().decode_attention);
  decode(*s, cache, toy);
  EXPECT_FALSE(s->needs().decode_attention) << "detected: no more attention needed";
  EXPECT_EQ(cache.positions(1, 0), (std::vector<int32_t>{0, 6, 7}));
  EXPECT_EQ(cache.positions(3, 0), (std::vector<int32_t>{0, 6, 7}));
  EXPECT_EQ(cache.length(2, 0), 8);
  EXPECT_EQ(s->report(), "simlayerkv: delta 0.7 (given)\nsimlayerkv: lazy layers 1, 3 (2 of 4)\n");
  // Later steps only maintain: layer 2 stays non-lazy whatever its attention.
  decode(*s, cache, [](const KVCache& c) {
    DecodeObservation o;
    for (int l = 0; l < 4; l++) o.attention.push_back(same_rows(c, l, 1, std::vector<float>(c.length(l, 0), 0.0f)));
    for (int l = 0; l < 4; l++) o.attention[l][0][0] = 1.0f;
    return o;
  });
  EXPECT_EQ(cache.positions(1, 0), (std::vector<int32_t>{0, 7, 8}));
  EXPECT_EQ(cache.length(2, 0), 9);
  // The next chat turn asks again.
  prefill(*s, cache, 2);
  EXPECT_TRUE(s->needs().decode_attention);
}

// Without delta=, the threshold is the official one of the model's family: by name, else
// by shape, else LLaMA-3's (SmolLM2 has none of its own). A given delta stays.
TEST(SimLayerKV, DeltaFollowsTheModelFamily) {
  auto delta_for = [](const std::string& name, int vocab, int heads, int kv_heads,
                      const std::string& spec = "simlayerkv") {
    ModelConfig c;
    c.name = name;
    c.vocab_size = vocab;
    c.n_heads = heads;
    c.n_kv_heads = kv_heads;
    auto s = make_strategy(spec);
    s->set_model(c);
    return s->report();
  };
  EXPECT_EQ(delta_for("Meta Llama 3.1 8B Instruct", 128256, 32, 8),
            "simlayerkv: delta 0.9 (LLaMA-3's official value: the model is named \"Meta Llama 3.1 8B Instruct\")\n");
  EXPECT_EQ(delta_for("Llama-2-7b-chat-hf", 32000, 32, 32),
            "simlayerkv: delta 0.65 (LLaMA-2's official value: the model is named \"Llama-2-7b-chat-hf\")\n");
  EXPECT_NE(delta_for("Mistral-7B-Instruct-v0.2", 32000, 32, 8).find("delta 0.8 (Mistral's"), std::string::npos);
  EXPECT_NE(delta_for("Qwen2-7B", 152064, 28, 4).find("delta 0.85 (Qwen's"), std::string::npos);
  EXPECT_EQ(delta_for("my-finetune", 128256, 32, 8),
            "simlayerkv: delta 0.9 (LLaMA-3's official value: its 128256-token vocabulary)\n");
  EXPECT_EQ(delta_for("vicuna", 32000, 32, 32),
            "simlayerkv: delta 0.65 (LLaMA-2's official value: a 32000-token vocabulary without GQA)\n");
  EXPECT_EQ(delta_for("Smollm2 135M 8k Lc100K Mix1 Ep2", 49152, 9, 3),
            "simlayerkv: delta 0.9 (no official value for this model; LLaMA-3's, the official "
            "default, for a Llama-style GQA model)\n");
  EXPECT_EQ(delta_for("Llama-2-7b-chat-hf", 32000, 32, 32, "simlayerkv:delta=0.5"),
            "simlayerkv: delta 0.5 (given)\n");
  auto s = make_strategy("simlayerkv");
  ModelConfig llama2;
  llama2.name = "Llama-2-13b";
  s->set_model(llama2);
  EXPECT_EQ(s->name().substr(0, 21), "simlayerkv:delta=0.65") << "the spec it recreates";
}

TEST(SimLayerKV, RecentAsAShareOfThePrompt) {
  CpuBackend b(1);
  KVCache cache(b, 1, 1, kDim, 64);
  auto s = make_strategy("simlayerkv:delta=0.5,recent=0.25,sinks=2,probe=1");
  EXPECT_EQ(s->name(), "simlayerkv:delta=0.5,sinks=2,recent=0.25,probe=1,detect=prefill,slack=0,pos=original");
  std::vector<float> row(20, 0.0f);
  row[0] = 0.6f;
  row[19] = 0.4f;
  prefill(*s, cache, 20, [&](Observation& o) {
    o.window = 1;
    o.window_attention = {row};
  });
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 1, 15, 16, 17, 18, 19}));  // 2 + ceil(5)
  EXPECT_EQ(s->report(), "simlayerkv: delta 0.5 (given)\nsimlayerkv: lazy layers 0 (1 of 1)\n");
}

// ---------------------------------------------------------------------------------------
// Parameters, names, registry

TEST(DecodeMethods, NamesRecreateTheStrategy) {
  for (const char* spec :
       {"streaming", "streaming:ratio=0.1,sinks=0,slack=8", "h2o", "h2o:ratio=0.2,heavy=0.25,obs=window",
        "knorm", "knorm:ratio=0.5,skip_layers=0,protect=3,slack=2", "simlayerkv",
        "simlayerkv:recent=0.1,detect=decode,slack=4"}) {
    auto s = make_strategy(spec);
    EXPECT_EQ(make_strategy(s->name())->name(), s->name()) << spec;
  }
  EXPECT_EQ(make_strategy("streaming")->name(), "streaming:budget=128,sinks=4,slack=0,pos=cache");
  EXPECT_EQ(make_strategy("h2o")->name(), "h2o:budget=128,heavy=0.5,obs=full,slack=0,pos=original");
  EXPECT_EQ(make_strategy("knorm")->name(), "knorm:budget=128,skip_layers=2,protect=0,slack=0,decode=1,pos=original");
  EXPECT_EQ(make_strategy("simlayerkv")->name(),
            "simlayerkv:delta=0.9,sinks=4,recent=1024,probe=32,detect=prefill,slack=0,pos=original");
  for (const MethodInfo& m : known_methods())
    if (m.name == "streaming" || m.name == "h2o" || m.name == "knorm" || m.name == "simlayerkv") {
      EXPECT_NE(m.paper.find("arXiv"), std::string::npos) << m.name;
      EXPECT_FALSE(m.summary.empty());
      EXPECT_FALSE(m.params.empty());
    }
}

TEST(DecodeMethods, RejectBadParameters) {
  for (const char* spec :
       {"streaming:budget=4,sinks=4", "streaming:window=3", "streaming:budget=5,ratio=0.5",
        "h2o:heavy=1.5", "h2o:obs=all", "h2o:window=8", "h2o:budget=0", "knorm:budget=3,protect=4",
        "knorm:skip_layers=-1", "knorm:decode=2", "simlayerkv:delta=2", "simlayerkv:recent=0", "simlayerkv:recent=1.5",
        "simlayerkv:detect=decode,probe=4", "simlayerkv:detect=never", "simlayerkv:budget=3"})
    EXPECT_THROW(make_strategy(spec), std::invalid_argument) << spec;
}

// ---------------------------------------------------------------------------------------
// Invariants on random observations

TEST(DecodeMethods, PrefillInvariantsOnRandomObservations) {
  CpuBackend b(1);
  std::mt19937 rng(42);
  constexpr int kLayers = 2, kKV = 2, kGroup = 2;
  for (int trial = 0; trial < 200; trial++) {
    const int L = 1 + int(rng() % 60), budget = 1 + int(rng() % 24);
    const int sinks = int(rng() % budget);
    const std::string method = std::vector<std::string>{"streaming", "h2o", "h2o_window", "knorm"}[trial % 4];
    std::string spec;
    if (method == "streaming") spec = "streaming:budget=" + std::to_string(budget) + ",sinks=" + std::to_string(sinks);
    if (method == "h2o") spec = "h2o:budget=" + std::to_string(budget) + ",heavy=0.6";
    if (method == "h2o_window") spec = "h2o:budget=" + std::to_string(budget) + ",obs=window,window=5";
    if (method == "knorm") spec = "knorm:budget=" + std::to_string(budget) + ",skip_layers=0,protect=" + std::to_string(sinks);
    SCOPED_TRACE(spec + " L=" + std::to_string(L));
    KVCache cache(b, kLayers, kKV, kDim, 128);
    auto s = make_strategy(spec);
    std::vector<std::vector<std::vector<float>>> observed(kLayers);  // per layer, as handed over
    prefill(*s, cache, L, [&](Observation& o) {
      o.window = std::min(5, L);
      observed[o.layer] = random_rows(cache, o.layer, kGroup, rng);
      o.query_attention_sum = o.window_attention = observed[o.layer];
      o.key_norms.clear();
      for (int h = 0; h < kKV; h++) o.key_norms.push_back(observed[o.layer][h * kGroup]);
    });
    expect_consistent(cache);
    const int kept = std::min(L, budget);
    for (int l = 0; l < kLayers; l++)
      for (int h = 0; h < kKV; h++) {
        const std::vector<int32_t>& pos = cache.positions(l, h);
        ASSERT_EQ(int(pos.size()), kept) << "budget respected exactly";
        std::vector<int32_t> expected;
        if (method == "streaming") {
          expected = range(0, L);
          if (L > budget) {
            expected = range(0, sinks);
            for (int32_t j : range(L - (budget - sinks), L)) expected.push_back(j);
          }
        } else {
          std::vector<float> score(L);
          int recent = 0;
          if (method == "knorm") {
            recent = std::min(sinks, budget);
            for (int j = 0; j < L; j++) score[j] = -observed[l][h * kGroup][j];
          } else {
            recent = budget - int(std::ceil((method == "h2o" ? 0.6 : 0.5) * budget - 1e-9));
            // GQA mean, in the order the method adds (float rounding decides near-ties);
            // obs=window turns the window mean into a sum.
            const float scale = method == "h2o" ? 1.0f : float(std::min(5, L));
            for (int j = 0; j < L; j++)
              score[j] = scale * (0.0f + observed[l][h * kGroup][j] / kGroup +
                                  observed[l][h * kGroup + 1][j] / kGroup);
          }
          recent = std::min(recent, L);
          expected = reference_best(std::vector<float>(score.begin(), score.end() - recent), kept - recent);
          for (int32_t j : range(L - recent, L)) expected.push_back(j);
        }
        EXPECT_EQ(pos, expected) << "layer " << l << " head " << h;
      }
  }
}

// ---------------------------------------------------------------------------------------
// Long decode runs: bounded rows and bounded memory

// Every step hands over random key norms (and random attention when `attention`); the
// newest token must stay unless the method may evict it (knorm without protect ranks it too).
void run_decode_maintenance(const std::string& spec, int budget, int slack, bool attention,
                            bool newest_stays = true) {
  SCOPED_TRACE(spec);
  CpuBackend b(1);
  constexpr int kLayers = 2, kKV = 2, kGroup = 2, kPrompt = 40, kSteps = 5000;
  KVCache cache(b, kLayers, kKV, kDim, kPrompt + kSteps + 8);
  auto s = make_strategy(spec);
  std::mt19937 rng(1);
  prefill(*s, cache, kPrompt, [&](Observation& o) {
    o.window = std::min(s->needs().window, kPrompt);
    o.query_attention_sum = o.window_attention = random_rows(cache, o.layer, kGroup, rng);
    o.key_norms = random_rows(cache, o.layer, 1, rng);
  });
  const size_t row_bytes = kDim * sizeof(float);
  size_t steady_allocated = 0, max_allocated = 0;
  for (int step = 0; step < kSteps; step++) {
    decode(*s, cache, [&](const KVCache& c) {
      DecodeObservation o = attention ? random_decode_attention(c, kGroup, rng) : DecodeObservation{};
      std::uniform_real_distribution<float> norm(0.1f, 3.0f);
      o.key_norms.assign(kLayers, std::vector<float>(kKV));
      for (std::vector<float>& layer : o.key_norms)
        for (float& n : layer) n = norm(rng);
      return o;
    });
    const KVStats st = cache.stats();
    for (int l = 0; l < kLayers; l++)
      for (int h = 0; h < kKV; h++) {
        ASSERT_LE(st.lengths[l][h], budget + slack) << "step " << step;
        ASSERT_GE(st.lengths[l][h], std::min(budget, kPrompt + step + 1));
        if (newest_stays) {
          ASSERT_EQ(cache.positions(l, h).back(), kPrompt + step) << "the newest token stays";
        }
      }
    ASSERT_LE(st.bytes_held, 2 * size_t(budget + slack) * row_bytes * kLayers * kKV);
    if (step == 200) steady_allocated = max_allocated;
    max_allocated = std::max(max_allocated, st.bytes_allocated);
    if (step % 1000 == 999) expect_consistent(cache);
  }
  EXPECT_LE(max_allocated, steady_allocated) << "storage must be reused, not grow with the tokens";
  EXPECT_LE(max_allocated, 2 * size_t(256) * row_bytes * kLayers * kKV);
}

TEST(DecodeMethods, StreamingDecodeStaysWithinBudget) {
  run_decode_maintenance("streaming:budget=16,sinks=4", 16, 0, false);
  run_decode_maintenance("streaming:budget=16,sinks=4,slack=7", 16, 7, false);
}

TEST(DecodeMethods, H2ODecodeStaysWithinBudget) {
  run_decode_maintenance("h2o:budget=16", 16, 0, true);
  run_decode_maintenance("h2o:budget=16,obs=window,window=8,slack=5", 16, 5, true);
}

TEST(DecodeMethods, KNormDecodeStaysWithinBudget) {
  run_decode_maintenance("knorm:budget=16,skip_layers=0", 16, 0, false, false);
  run_decode_maintenance("knorm:budget=16,skip_layers=0,protect=2,slack=9", 16, 9, false);
}

TEST(DecodeMethods, SimLayerKVLazyLayersStayWithinSinksPlusRecent) {
  CpuBackend b(1);
  KVCache cache(b, 2, 1, kDim, 1200);
  auto s = make_strategy("simlayerkv:delta=0.5,sinks=2,recent=6,probe=1,slack=3");
  prefill(*s, cache, 30, [&](Observation& o) {
    std::vector<float> row(30, 0.0f);
    row[0] = o.layer == 0 ? 0.9f : 0.1f;  // layer 0 lazy, layer 1 not
    row[15] = 1.0f - row[0];
    o.window = 1;
    o.window_attention = {row};
  });
  for (int t = 0; t < 1000; t++) {
    decode(*s, cache);
    ASSERT_LE(cache.length(0, 0), 2 + 6 + 3);
    ASSERT_EQ(cache.positions(0, 0).back(), 30 + t);
  }
  EXPECT_EQ(cache.length(1, 0), 1030);
  expect_consistent(cache);
}

}  // namespace
}  // namespace kvlm
