// KVObserver (kv/observer.h) inside a real forward pass of a small random-weight model:
// which strategy hooks run in which order, and what is computed for each kind of Needs.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kv/observer.h"
#include "kv/strategy.h"
#include "model/load.h"

namespace kvlm {
namespace {

// One hook call, with what the strategy saw of it.
struct Event {
  enum Kind { Begin, PrefillLayer, AfterPrefill, Decode } kind;
  int prompt_tokens = 0;  // Begin
  Observation obs;        // PrefillLayer (copied whole)
  // PrefillLayer: slots KV head 0 held at that moment, in this layer and the next.
  int layer_length = 0, next_layer_length = 0;
  DecodeObservation decode;  // Decode
};

// A strategy that asks for whatever the test sets and records every call.
class RecordingStrategy final : public CopyableStrategy<RecordingStrategy> {
 public:
  Needs wants;
  std::vector<Event> events;

  std::string name() const override { return "recording"; }
  Needs needs() const override { return wants; }
  void begin_sequence(const KVCache&, int prompt_tokens) override {
    events.push_back({Event::Begin, prompt_tokens, {}, 0, 0, {}});
  }
  void on_prefill_layer(KVCache& cache, const Observation& obs) override {
    const int next = std::min(obs.layer + 1, cache.n_layers() - 1);
    events.push_back({Event::PrefillLayer, 0, obs, cache.length(obs.layer, 0),
                      cache.length(next, 0), {}});
  }
  void after_prefill(KVCache&) override { events.push_back({Event::AfterPrefill, 0, {}, 0, 0, {}}); }
  void on_decode_step(KVCache&, const DecodeObservation& obs) override {
    events.push_back({Event::Decode, 0, {}, 0, 0, obs});
  }

  int count(Event::Kind kind) const {
    int n = 0;
    for (const Event& e : events) n += e.kind == kind;
    return n;
  }
  std::vector<const Observation*> prefill_layers() const {
    std::vector<const Observation*> out;
    for (const Event& e : events)
      if (e.kind == Event::PrefillLayer) out.push_back(&e.obs);
    return out;
  }
};

// smollm2-135m's shape with random weights: 30 layers, 9 query heads over 3 KV heads.
// Loaded once for the suite (loading fills 135M weights).
struct RandomModel {
  CpuBackend backend{2};
  ModelFile file{"random:smollm2-135m"};
  std::unique_ptr<Model> model = file.load(backend);
};

RandomModel& random_model() {
  static RandomModel m;
  return m;
}

// A model, a fresh cache, and an observer around a recording strategy.
struct Harness {
  Model& model = *random_model().model;
  const ModelConfig& config = model.config();
  std::unique_ptr<KVCache> cache = model.make_cache(64);
  RecordingStrategy strategy;
  KVObserver observer{random_model().backend, strategy, config.n_heads, config.head_dim};

  explicit Harness(Needs needs = {}) { strategy.wants = needs; }
  std::vector<float> forward(const std::vector<int32_t>& ids) {
    return model.forward(ids, *cache, &observer);
  }
};

const std::vector<int32_t> kPrompt = {1, 200, 300, 400, 500};  // 5 tokens

float sum(const std::vector<float>& row) { return std::accumulate(row.begin(), row.end(), 0.0f); }

TEST(Observer, PromptCallsBeginThenEveryLayerInOrderThenAfterPrefill) {
  Harness h;
  h.forward(kPrompt);
  const int n_layers = h.config.n_layers;
  ASSERT_EQ(h.strategy.events.size(), size_t(n_layers) + 2);
  EXPECT_EQ(h.strategy.events.front().kind, Event::Begin);
  EXPECT_EQ(h.strategy.events.front().prompt_tokens, 5);
  for (int l = 0; l < n_layers; l++) {
    const Event& e = h.strategy.events[1 + l];
    ASSERT_EQ(e.kind, Event::PrefillLayer) << "event " << 1 + l;
    EXPECT_EQ(e.obs.layer, l);
    EXPECT_EQ(e.obs.n_new, 5);
    EXPECT_EQ(e.obs.n_tokens, 5);
    // Right after this layer appended, before the next one runs.
    EXPECT_EQ(e.layer_length, 5) << "layer " << l;
    if (l + 1 < n_layers) {
      EXPECT_EQ(e.next_layer_length, 0) << "layer " << l;
    }
  }
  EXPECT_EQ(h.strategy.events.back().kind, Event::AfterPrefill);
}

TEST(Observer, DecodeStepCallsOnlyOnDecodeStep) {
  Harness h;
  h.forward(kPrompt);
  h.strategy.events.clear();
  h.forward({600});
  ASSERT_EQ(h.strategy.events.size(), 1u);
  EXPECT_EQ(h.strategy.events[0].kind, Event::Decode);
}

// A later prefill (the next chat turn) continues the sequence: no begin_sequence, and
// n_tokens counts what came before.
TEST(Observer, ContinuedPrefillCountsEarlierTokens) {
  Harness h;
  h.forward(kPrompt);
  h.strategy.events.clear();
  h.forward({7, 8, 9});
  EXPECT_EQ(h.strategy.count(Event::Begin), 0);
  EXPECT_EQ(h.strategy.count(Event::AfterPrefill), 1);
  const auto layers = h.strategy.prefill_layers();
  ASSERT_EQ(layers.size(), size_t(h.config.n_layers));
  EXPECT_EQ(layers[0]->n_new, 3);
  EXPECT_EQ(layers[0]->n_tokens, 8);
}

TEST(Observer, NothingIsComputedUnlessAsked) {
  Harness h;  // Needs{}
  h.forward(kPrompt);
  for (const Observation* obs : h.strategy.prefill_layers()) {
    EXPECT_EQ(obs->window, 0);
    EXPECT_TRUE(obs->window_attention.empty());
    EXPECT_TRUE(obs->query_attention_sum.empty());
    EXPECT_TRUE(obs->key_norms.empty());
  }
  h.forward({600});
  EXPECT_TRUE(h.strategy.events.back().decode.attention.empty());
}

TEST(Observer, WindowAttentionIsTheMeanOfTheWindowsSoftmaxRows) {
  Harness h(Needs{.window = 3});
  h.forward(kPrompt);
  for (const Observation* obs : h.strategy.prefill_layers()) {
    EXPECT_EQ(obs->window, 3);
    ASSERT_EQ(obs->window_attention.size(), size_t(h.config.n_heads)) << "layer " << obs->layer;
    for (const auto& row : obs->window_attention) {
      ASSERT_EQ(row.size(), 5u);  // every slot of the head's KV head
      EXPECT_NEAR(sum(row), 1.0f, 1e-4f) << "layer " << obs->layer;  // a mean of rows summing to 1
    }
    EXPECT_TRUE(obs->query_attention_sum.empty());
    EXPECT_TRUE(obs->key_norms.empty());
  }
}

// Kept apart, the window's rows are causal softmax rows (query i sees slots up to its own)
// whose mean is the averaged window observation, which they replace.
TEST(Observer, WindowRowsAreTheWindowsRowsOneByOne) {
  Harness averaged(Needs{.window = 3});
  averaged.forward(kPrompt);
  Harness h(Needs{.window = 3, .window_rows = true});
  h.forward(kPrompt);
  const std::vector<const Observation*> means = averaged.strategy.prefill_layers();
  for (const Observation* obs : h.strategy.prefill_layers()) {
    ASSERT_EQ(obs->window_rows.size(), 3u) << "layer " << obs->layer;
    EXPECT_TRUE(obs->window_attention.empty()) << "no averaged pass as well";
    const std::vector<std::vector<float>>& mean_rows = means[obs->layer]->window_attention;
    ASSERT_EQ(mean_rows.size(), size_t(h.config.n_heads));
    for (size_t q = 0; q < mean_rows.size(); q++) {
      std::vector<float> mean(5, 0.0f);
      for (int i = 0; i < 3; i++) {
        const std::vector<float>& row = obs->window_rows[i][q];
        ASSERT_EQ(row.size(), 5u);
        EXPECT_NEAR(sum(row), 1.0f, 1e-4f);
        for (int j = 5 - 3 + i + 1; j < 5; j++) EXPECT_EQ(row[j], 0.0f) << "query " << i << " sees slot " << j;
        for (int j = 0; j < 5; j++) mean[j] += row[j] / 3;
      }
      for (int j = 0; j < 5; j++) EXPECT_NEAR(mean[j], mean_rows[q][j], 1e-5f);
    }
  }
}

TEST(Observer, WindowIsClampedToTheCall) {
  Harness h(Needs{.window = 32});
  h.forward(kPrompt);
  for (const Observation* obs : h.strategy.prefill_layers()) {
    EXPECT_EQ(obs->window, 5);
    ASSERT_EQ(obs->window_attention.size(), size_t(h.config.n_heads));
    EXPECT_NEAR(sum(obs->window_attention[0]), 1.0f, 1e-4f);
  }
}

TEST(Observer, AllQueriesSumsOneSoftmaxRowPerNewToken) {
  Harness h(Needs{.all_queries = true});
  h.forward(kPrompt);
  for (const Observation* obs : h.strategy.prefill_layers()) {
    ASSERT_EQ(obs->query_attention_sum.size(), size_t(h.config.n_heads));
    for (const auto& row : obs->query_attention_sum) {
      ASSERT_EQ(row.size(), 5u);
      EXPECT_NEAR(sum(row), 5.0f, 1e-3f) << "layer " << obs->layer;  // 5 rows, each summing to 1
    }
    EXPECT_TRUE(obs->window_attention.empty());
  }
}

TEST(Observer, KeyNormsArePerKvHeadAndSlot) {
  Harness h(Needs{.key_norms = true});
  h.forward(kPrompt);
  for (const Observation* obs : h.strategy.prefill_layers()) {
    ASSERT_EQ(obs->key_norms.size(), size_t(h.config.n_kv_heads));
    for (const auto& norms : obs->key_norms) {
      ASSERT_EQ(norms.size(), 5u);
      for (float n : norms) EXPECT_GT(n, 0.0f) << "layer " << obs->layer;
    }
  }
}

TEST(Observer, DecodeAttentionCoversEveryLayerHeadAndSlot) {
  Harness h(Needs{.decode_attention = true});
  h.forward(kPrompt);
  h.forward({600});
  const DecodeObservation& d = h.strategy.events.back().decode;
  ASSERT_EQ(h.strategy.events.back().kind, Event::Decode);
  ASSERT_EQ(d.attention.size(), size_t(h.config.n_layers));
  for (const auto& layer : d.attention) {
    ASSERT_EQ(layer.size(), size_t(h.config.n_heads));
    for (const auto& row : layer) {
      ASSERT_EQ(row.size(), 6u);  // the 5 prompt slots and the new token's own
      EXPECT_NEAR(sum(row), 1.0f, 1e-4f);
    }
  }
}

// The norms a decode step hands over are those of the keys it appended: the last slot of
// every layer and KV head, as key_norms measures the cached rows.
TEST(Observer, DecodeKeyNormsAreTheNewKeysNorms) {
  Harness h(Needs{.decode_key_norms = true});
  h.forward(kPrompt);
  h.forward({600});
  h.forward({700});
  const DecodeObservation& d = h.strategy.events.back().decode;
  ASSERT_EQ(h.strategy.events.back().kind, Event::Decode);
  ASSERT_EQ(d.key_norms.size(), size_t(h.config.n_layers));
  for (int l = 0; l < h.config.n_layers; l++) {
    ASSERT_EQ(d.key_norms[l].size(), size_t(h.config.n_kv_heads));
    const std::vector<KVHeadView> view = h.cache->view(l);
    for (int kv = 0; kv < h.config.n_kv_heads; kv++) {
      std::vector<float> norms(view[kv].len);
      random_model().backend.key_norms(norms.data(), view[kv], h.config.head_dim);
      EXPECT_EQ(d.key_norms[l][kv], norms.back()) << "layer " << l << " head " << kv;
      EXPECT_GT(d.key_norms[l][kv], 0.0f);
    }
  }
  EXPECT_TRUE(d.attention.empty()) << "not asked for";
}

TEST(Observer, ClearedCacheStartsANewSequence) {
  Harness h;
  h.forward(kPrompt);
  h.cache->clear();
  h.strategy.events.clear();
  h.forward({1, 2, 3});
  ASSERT_FALSE(h.strategy.events.empty());
  EXPECT_EQ(h.strategy.events.front().kind, Event::Begin);
  EXPECT_EQ(h.strategy.events.front().prompt_tokens, 3);
  EXPECT_EQ(h.strategy.count(Event::Begin), 1);
}

TEST(Observer, OneTokenStartIsASequenceOfOneDecodeStep) {
  Harness h;
  h.forward({1});
  ASSERT_EQ(h.strategy.events.size(), 2u);
  EXPECT_EQ(h.strategy.events[0].kind, Event::Begin);
  EXPECT_EQ(h.strategy.events[0].prompt_tokens, 1);
  EXPECT_EQ(h.strategy.events[1].kind, Event::Decode);
}

TEST(Observer, SecondsGrowWhenSomethingIsObserved) {
  Harness h(Needs{.window = 3, .decode_attention = true});
  EXPECT_EQ(h.observer.seconds(), 0.0);
  h.forward(kPrompt);
  const double after_prefill = h.observer.seconds();
  EXPECT_GT(after_prefill, 0.0);
  h.forward({600});
  EXPECT_GT(h.observer.seconds(), after_prefill);
}

// A decode step that asks for nothing costs no scoring time (bench reports this share).
TEST(Observer, UnobservedDecodeStepAddsNoTime) {
  Harness h;
  h.forward(kPrompt);
  const double before = h.observer.seconds();
  h.forward({600});
  EXPECT_EQ(h.observer.seconds(), before);
}

TEST(Observer, FullStrategyGivesTheLogitsOfNoObserver) {
  Model& model = *random_model().model;
  const ModelConfig& c = model.config();
  auto plain_cache = model.make_cache(64), observed_cache = model.make_cache(64);
  auto full = make_strategy("full");
  KVObserver observer(random_model().backend, *full, c.n_heads, c.head_dim);
  EXPECT_EQ(model.forward(kPrompt, *plain_cache), model.forward(kPrompt, *observed_cache, &observer));
  EXPECT_EQ(model.forward({600}, *plain_cache), model.forward({600}, *observed_cache, &observer));
}

}  // namespace
}  // namespace kvlm
