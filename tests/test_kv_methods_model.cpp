// Every KV method through the real model: exactness when nothing needs evicting, real
// byte savings when it does, bounded decode-time memory, and the registry's contract.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <iterator>

#include "model_fixture.h"
#include "session.h"
#include "sample.h"

namespace kvlm {
namespace {

using test::default_model;
using test::observer;

// A prompt of ~90 tokens of ordinary prose.
std::vector<int32_t> prompt_ids() {
  const Tokenizer& tok = default_model().file.tokenizer();
  return tok.encode(
      "The lighthouse keeper climbed the spiral stairs every evening at dusk. He trimmed the "
      "wick, polished the great lens, and watched the ships slide past the reef. In winter the "
      "storms came from the north, and the waves threw spray against the windows of the lamp "
      "room. His daughter kept a logbook of every vessel, its flag, and the hour it passed. "
      "One night a small boat with no lights appeared near the rocks, and the keeper",
      false);
}

struct Trace {
  std::vector<std::vector<float>> logits;  // after the prompt, then after each decoded token
  KVStats stats;
};

// Prefill, then `steps` greedy decode steps, recording the logits each time.
Trace trace(const std::string& spec, const std::vector<int32_t>& prompt, int steps) {
  auto& m = default_model();
  auto cache = m.model->make_cache(2048);
  auto strategy = make_strategy(spec);
  KVObserver kv = observer(*strategy);
  Trace r;
  r.logits.push_back(m.model->forward(prompt, *cache, &kv));
  for (int i = 0; i < steps; i++)
    r.logits.push_back(m.model->forward({argmax(r.logits.back())}, *cache, &kv));
  r.stats = cache->stats();
  return r;
}

float max_difference(const std::vector<float>& a, const std::vector<float>& b) {
  float worst = 0;
  for (size_t i = 0; i < a.size(); i++) worst = std::max(worst, std::fabs(a[i] - b[i]));
  return worst;
}

// With a budget no prompt reaches, every eviction method keeps everything, so its logits
// must equal full's exactly (same kernels, same order of operations).
TEST(KvMethodsModel, LargeBudgetEqualsFullExactly) {
  KVLM_REQUIRE_MODEL();
  const std::vector<int32_t> prompt = prompt_ids();
  const Trace full = trace("full", prompt, 4);
  for (const char* spec : {"streaming:budget=4096", "h2o:budget=4096", "snapkv:budget=4096",
                           "pyramidkv:budget=4096", "adakv:budget=4096", "dynamickv:budget=4096",
                           "knorm:budget=4096", "simlayerkv:recent=4096",
                           "snapkv:ratio=1.0", "adakv:budget=4096,pyramid=1"}) {
    const Trace r = trace(spec, prompt, 4);
    for (size_t step = 0; step < full.logits.size(); step++)
      EXPECT_EQ(max_difference(r.logits[step], full.logits[step]), 0.0f) << spec << " step " << step;
    EXPECT_EQ(r.stats.bytes_held, full.stats.bytes_held) << spec;
  }
}

// MiniCache approximates: its logits differ, but boundedly, and it holds fewer bytes.
// SmolLM2-135M is a hard case: its adjacent layers' keys and values are nearly orthogonal
// (~90 degrees on average), so merging many pairs wrecks it (logits move by ~30 with the
// default start=15). The bound is asserted for the top pair, which the model tolerates.
TEST(KvMethodsModel, MiniCacheErrorIsBounded) {
  KVLM_REQUIRE_MODEL();
  const std::vector<int32_t> prompt = prompt_ids();
  const Trace full = trace("full", prompt, 4);
  const Trace merged = trace("minicache:start=28", prompt, 4);
  // The prompt's own logits are computed before any merging.
  EXPECT_EQ(max_difference(merged.logits[0], full.logits[0]), 0.0f);
  float worst = 0;
  for (size_t step = 1; step < full.logits.size(); step++)
    worst = std::max(worst, max_difference(merged.logits[step], full.logits[step]));
  std::printf("minicache: largest logit difference over 4 decode steps: %.3f\n", worst);
  EXPECT_GT(worst, 0.0f) << "merging changed nothing: was anything merged?";
  EXPECT_LT(worst, 8.0f);
  EXPECT_LT(merged.stats.bytes_held, full.stats.bytes_held);
  // Nothing merged (every token retained): exactly full.
  const Trace retained = trace("minicache:retain=1", prompt, 2);
  for (size_t step = 0; step < retained.logits.size(); step++)
    EXPECT_EQ(max_difference(retained.logits[step], full.logits[step]), 0.0f);
}

// A small budget really frees memory: bytes held match the kept rows exactly.
TEST(KvMethodsModel, CompressionFreesTheBytes) {
  KVLM_REQUIRE_MODEL();
  const ModelConfig& c = default_model().file.config();
  const std::vector<int32_t> prompt = prompt_ids();
  const size_t row = size_t(c.head_dim) * sizeof(float) * 2;  // one key + one value
  for (const char* spec : {"streaming:budget=16", "snapkv:budget=16,window=8", "knorm:budget=16"}) {
    const Trace r = trace(spec, prompt, 0);
    size_t rows = 0;
    for (const auto& layer : r.stats.lengths)
      for (int len : layer) rows += len;
    EXPECT_EQ(r.stats.bytes_held, rows * row) << spec;
    EXPECT_LT(r.stats.bytes_held * 3, r.stats.bytes_full) << spec;
    EXPECT_LE(r.stats.bytes_allocated, 4 * r.stats.bytes_held + size_t(c.n_layers) * c.n_kv_heads * 64 * row)
        << spec << ": storage was not given back";
  }
}

// Freed KV storage leaves the process: resident memory with a compressed cache alive is
// lower than with a full one by about the evicted bytes.
TEST(KvMethodsModel, ResidentMemoryDropsWithCompression) {
  KVLM_REQUIRE_MODEL();
  auto& m = default_model();
  std::vector<int32_t> long_prompt;
  while (long_prompt.size() < 800) {
    std::vector<int32_t> more = prompt_ids();
    long_prompt.insert(long_prompt.end(), more.begin(), more.end());
  }
  auto resident_with = [&](const std::string& spec, size_t* held) {
    auto cache = m.model->make_cache(4096);
    auto strategy = make_strategy(spec);
    KVObserver kv = observer(*strategy);
    m.model->forward(long_prompt, *cache, &kv);
    *held = cache->stats().bytes_held;
    return resident_bytes();
  };
  // The model's activation buffers, sized by the first call, stay allocated in both.
  size_t full_held = 0, snap_held = 0;
  const size_t full_rss = resident_with("full", &full_held);
  const size_t snap_rss = resident_with("snapkv:budget=64", &snap_held);
  const double evicted = double(full_held) - double(snap_held);
  std::printf("resident: full %.1f MiB, snapkv:budget=64 %.1f MiB; evicted KV %.1f MiB\n",
              full_rss / 1048576.0, snap_rss / 1048576.0, evicted / 1048576.0);
  EXPECT_GT(double(full_rss) - double(snap_rss), 0.8 * evicted);
}

// Decode-time maintenance through the model: the cache never exceeds budget + slack.
TEST(KvMethodsModel, DecodeMaintenanceKeepsTheBudget) {
  KVLM_REQUIRE_MODEL();
  auto& m = default_model();
  for (const char* spec : {"streaming:budget=24,slack=4", "h2o:budget=24,slack=4", "knorm:budget=24,slack=4,skip_layers=0"}) {
    auto cache = m.model->make_cache(2048);
    auto strategy = make_strategy(spec);
    KVObserver kv = observer(*strategy);
    std::vector<float> logits = m.model->forward(prompt_ids(), *cache, &kv);
    for (int step = 0; step < 60; step++) {
      logits = m.model->forward({argmax(logits)}, *cache, &kv);
      for (const auto& layer : cache->stats().lengths)
        for (int len : layer) ASSERT_LE(len, 24 + 4) << spec << " step " << step;
    }
  }
}

// A 16-bit KV cache changes which tokens a method keeps only where scores nearly tie:
// every method prefilled with an f16 and an f32 cache keeps the same number of tokens in
// every (layer, head), and the same tokens except in a few heads where tokens at the
// budget's edge swap (their scores within the keys' f16 rounding of each other; SnapKV's
// pooling moves a token's neighbours with it). Measured on this prompt at budget 48 (of
// ~90 tokens, release build on an AVX2 machine): adakv, simlayerkv and minicache keep
// identical sets; h2o differs in 2 of 90 heads, snapkv, dynamickv and knorm in 1 (1 to 7
// tokens swapped). Which heads tie depends on the summation order, so on the build.
TEST(KvMethodsModel, HalfPrecisionKVKeepsTheSameTokens) {
  KVLM_REQUIRE_MODEL();
  auto& m = default_model();
  const std::vector<int32_t> prompt = prompt_ids();
  const size_t kv_heads = size_t(m.model->config().n_kv_heads);
  auto kept = [&](const std::string& spec, DType dtype) {
    auto cache = m.model->make_cache(2048, dtype);
    auto strategy = make_strategy(spec);
    KVObserver kv = observer(*strategy);
    m.model->forward(prompt, *cache, &kv);
    std::vector<std::vector<int32_t>> positions;
    for (int l = 0; l < cache->n_layers(); l++)
      for (int h = 0; h < cache->n_kv_heads(); h++) positions.push_back(cache->positions(l, h));
    return positions;
  };
  // Every method whose choice reads the stored rows: streaming keeps by position alone, and
  // pyramidkv ranks by snapkv's scores with other budgets.
  for (const char* spec : {"h2o:budget=48", "snapkv:budget=48", "adakv:budget=48",
                           "dynamickv:budget=48", "knorm:budget=48", "simlayerkv:recent=16",
                           "minicache"}) {
    const auto f32 = kept(spec, DType::F32), f16 = kept(spec, DType::F16);
    ASSERT_EQ(f32.size(), f16.size());
    int differing = 0;
    for (size_t i = 0; i < f32.size(); i++) {
      ASSERT_EQ(f32[i].size(), f16[i].size()) << spec << " head " << i;
      if (f32[i] == f16[i]) continue;
      differing++;
      std::vector<int32_t> a = f32[i], b = f16[i], only_f32, only_f16;
      std::sort(a.begin(), a.end());
      std::sort(b.begin(), b.end());
      std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only_f32));
      std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(only_f16));
      std::printf("%-22s layer %zu head %zu: %zu tokens swapped, e.g. f32 keeps %d, f16 %d\n",
                  spec, i / kv_heads, i % kv_heads, only_f32.size(), only_f32[0], only_f16[0]);
    }
    std::printf("%-22s kept sets that differ f16 vs f32: %d of %zu heads\n", spec, differing,
                f32.size());
    EXPECT_LE(differing * 20, int(f32.size())) << spec << ": more than 5% of heads differ";
  }
}

TEST(KvMethodsModel, EveryMethodIsListedWithParametersAndPaper) {
  const std::vector<std::string> expected = {"full", "streaming", "h2o", "snapkv", "pyramidkv",
                                             "adakv", "dynamickv", "simlayerkv", "knorm", "minicache"};
  ASSERT_EQ(known_methods().size(), expected.size());
  for (size_t i = 0; i < expected.size(); i++) {
    const MethodInfo& m = known_methods()[i];
    EXPECT_EQ(m.name, expected[i]);
    EXPECT_FALSE(m.summary.empty()) << m.name;
    if (m.name != "full") {
      EXPECT_FALSE(m.params.empty()) << m.name;
      EXPECT_NE(m.paper.find("arXiv"), std::string::npos) << m.name;
    }
    // The name a strategy reports recreates it.
    auto s = make_strategy(m.name);
    EXPECT_EQ(make_strategy(s->name())->name(), s->name());
  }
}

}  // namespace
}  // namespace kvlm
