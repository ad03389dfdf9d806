// Positions inside the cache (pos=cache, kv_cache.h): keys turned to their new slot when
// eviction moves them, queries at the layer's next slot, generation past --ctx-size with
// memory bounded by the budget, and the errors of methods that cannot take pos=.
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kv/kv_cache.h"
#include "kv/observer.h"
#include "kv/strategy.h"
#include "model/random_model.h"
#include "model_fixture.h"
#include "sample.h"
#include "session.h"

namespace kvlm {
namespace {

std::string invalid_argument_of(const std::string& spec) {
  try {
    make_strategy(spec);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(CachePositions, SpecsSayWhereTheirPositionsComeFrom) {
  EXPECT_EQ(make_strategy("streaming")->position_mode(), KVPositions::Cache) << "the paper's rule";
  EXPECT_NE(make_strategy("streaming")->name().find(",pos=cache"), std::string::npos);
  EXPECT_EQ(make_strategy("streaming:pos=original")->position_mode(), KVPositions::Original);
  for (const char* method : {"h2o", "snapkv", "pyramidkv", "knorm", "simlayerkv"}) {
    EXPECT_EQ(make_strategy(method)->position_mode(), KVPositions::Original) << method;
    auto cached = make_strategy(std::string(method) + ":pos=cache");
    EXPECT_EQ(cached->position_mode(), KVPositions::Cache) << method;
    EXPECT_EQ(make_strategy(cached->name())->name(), cached->name()) << "the name recreates it";
  }
  EXPECT_EQ(make_strategy("full")->name(), "full");
  EXPECT_EQ(make_strategy("snapkv:pos=cache+streaming:pos=original")->position_mode(),
            KVPositions::Cache);
}

TEST(CachePositions, MethodsThatCannotTakePosSayWhy) {
  for (const char* spec : {"full:pos=cache", "adakv:pos=cache", "dynamickv:pos=original",
                           "minicache:pos=cache"}) {
    const std::string error = invalid_argument_of(spec);
    const std::string method = std::string(spec).substr(0, std::string(spec).find(':'));
    EXPECT_NE(error.find("--kv " + method + ": pos= is not one of its parameters"), std::string::npos)
        << spec << ": " << error;
    EXPECT_NE(error.find("streaming, h2o, snapkv, pyramidkv, simlayerkv, knorm"), std::string::npos)
        << error;
  }
  EXPECT_NE(invalid_argument_of("streaming:pos=slot").find("pos=slot (valid: cache, original)"),
            std::string::npos);
  EXPECT_NE(invalid_argument_of("snapkv:pos=cache+minicache").find("pos=cache cannot compose with minicache"),
            std::string::npos);
  EXPECT_EQ(invalid_argument_of("snapkv+minicache"), "") << "original positions compose as before";
}

// rope_qk's rotation at position p (halves layout), the reference for keys in a slot.
std::vector<float> rotated(std::vector<float> key, const std::vector<float>& inv_freq, int p) {
  const int half = int(inv_freq.size());
  for (int i = 0; i < half; i++) {
    const double a = double(p) * inv_freq[i], x0 = key[i], x1 = key[i + half];
    key[i] = float(x0 * std::cos(a) - x1 * std::sin(a));
    key[i + half] = float(x0 * std::sin(a) + x1 * std::cos(a));
  }
  return key;
}

// By hand: keys appended as if rotated at slots 0..5; keeping slots {0, 3, 5} moves token
// 3 to slot 1 and token 5 to slot 2, so they must read as rotated at 1 and 2. Their
// original positions stay 0, 3, 5, and the next token takes slot 3.
TEST(CachePositions, CompactionTurnsMovedKeysToTheirNewSlot) {
  CpuBackend b(1);
  const int d = 4, n = 6;
  const std::vector<float> inv_freq = {1.0f, 0.25f};
  float* freq = b.alloc(2);
  b.upload(freq, inv_freq.data(), 2);
  KVCache cache(b, 1, 1, d, 64, DType::F32, KeyRotation{freq, d, false});
  EXPECT_THROW(KVCache(b, 1, 1, d, 64).set_position_mode(KVPositions::Cache), std::invalid_argument)
      << "no RoPE settings: no positions in the cache";
  cache.set_position_mode(KVPositions::Cache);
  std::vector<std::vector<float>> unrotated;
  std::vector<float> keys;
  for (int t = 0; t < n; t++) {
    unrotated.push_back({1.0f + t, 0.5f, -0.25f * t, 2.0f});
    const std::vector<float> k = rotated(unrotated.back(), inv_freq, t);
    keys.insert(keys.end(), k.begin(), k.end());
  }
  EXPECT_EQ(cache.next_position(0), 0);
  cache.append(0, keys.data(), keys.data(), d, 0, n);
  cache.advance(n);
  EXPECT_THROW(cache.set_position_mode(KVPositions::Original), std::logic_error);
  EXPECT_EQ(cache.next_position(0), n);
  cache.compact(0, 0, {0, 3, 5});
  EXPECT_EQ(cache.positions(0, 0), (std::vector<int32_t>{0, 3, 5})) << "original positions kept";
  EXPECT_EQ(cache.next_position(0), 3);
  EXPECT_EQ(cache.next_position(), 3);
  EXPECT_EQ(cache.tokens_seen(), n);
  const float* held = static_cast<const float*>(cache.view(0)[0].keys);
  const int tokens[] = {0, 3, 5};
  for (int slot = 0; slot < 3; slot++) {
    const std::vector<float> want = rotated(unrotated[tokens[slot]], inv_freq, slot);
    for (int c = 0; c < d; c++)
      EXPECT_NEAR(held[slot * d + c], want[c], 1e-5f) << "slot " << slot << " dim " << c;
  }
  b.release(freq);
}

// A run of `spec` on `model`: the prompt, then `decoded` one token at a time.
struct MethodRun {
  std::unique_ptr<KVCache> cache;
  std::vector<int32_t> sequence;            // every token fed
  std::vector<int32_t> held_before_last;    // layer 0, head 0: tokens held before the last feed
  std::vector<float> logits;                // of the last feed
};

MethodRun run_method(Model& model, Backend& b, const std::string& spec,
                     const std::vector<int32_t>& prompt, const std::vector<int32_t>& decoded) {
  const ModelConfig& c = model.config();
  auto strategy = make_strategy(spec);
  strategy->set_model(c);
  MethodRun r;
  r.cache = model.make_cache(256);
  r.cache->set_position_mode(strategy->position_mode());
  KVObserver observer(b, *strategy, c.n_heads, c.head_dim);
  r.sequence = prompt;
  r.logits = model.forward(prompt, *r.cache, &observer);
  for (int32_t id : decoded) {
    r.held_before_last.clear();
    for (int32_t p : r.cache->positions(0, 0)) r.held_before_last.push_back(r.sequence[p]);
    r.sequence.push_back(id);
    r.logits = model.forward({id}, *r.cache, &observer);
  }
  return r;
}

std::vector<int32_t> token_range(int n, int32_t first) {
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

// Through a one-layer model, whose keys and values depend only on the token and its
// position: after streaming evicted while decoding, the next token's logits equal those of
// a fresh run over the tokens the cache held, at positions 0..n-1. So the moved keys read
// as rotated at their slots, and the new query sits at the next slot.
TEST(CachePositions, StreamingLogitsEqualAFreshRunOverTheKeptTokens) {
  CpuBackend b(2, WeightType::F32);
  ModelConfig c = random_model_config("random:smollm2-135m");
  c.n_layers = 1;
  auto model = load_random_model(c, b);
  const std::vector<int32_t> prompt = token_range(12, 300), decoded = token_range(9, 900);
  for (const char* spec : {"streaming:budget=8,sinks=2", "streaming:budget=8,sinks=2,slack=3"}) {
    SCOPED_TRACE(spec);
    MethodRun streamed = run_method(*model, b, spec, prompt, decoded);
    ASSERT_LT(streamed.held_before_last.size(), streamed.sequence.size() - 1) << "nothing evicted";
    std::vector<int32_t> fresh_tokens = streamed.held_before_last;
    fresh_tokens.push_back(decoded.back());
    auto fresh_cache = model->make_cache(256);
    const std::vector<float> fresh = model->forward(fresh_tokens, *fresh_cache);
    for (size_t i = 0; i < fresh.size(); i++)
      ASSERT_NEAR(streamed.logits[i], fresh[i], 1e-4f * (1 + std::fabs(fresh[i]))) << "logit " << i;
    // With original positions the same kept tokens sit elsewhere: the logits differ.
    MethodRun original = run_method(*model, b, std::string(spec) + ",pos=original", prompt, decoded);
    float largest = 0;
    for (size_t i = 0; i < fresh.size(); i++)
      largest = std::max(largest, std::fabs(original.logits[i] - fresh[i]));
    EXPECT_GT(largest, 1e-3f) << "the test cannot tell the positions apart";
  }
}

// The default model: every method that takes pos=cache leaves, in every KV head of layer
// 0, the keys a fresh run over that head's kept tokens computes at positions 0..n-1 (layer
// 0's keys depend only on the token and its position).
TEST(CachePositions, KeptKeysOfTheDefaultModelReadAsRotatedAtTheirSlots) {
  KVLM_REQUIRE_MODEL();
  test::LoadedDefaultModel& m = test::default_model();
  Model& model = *m.model;
  const ModelConfig& c = model.config();
  const std::vector<int32_t> prompt = m.file.tokenizer().encode(
      "The quick brown fox jumps over the lazy dog while seven wizards quietly brew potions "
      "in the old tower by the sea.", true);
  const std::vector<int32_t> decoded = token_range(6, 1200);
  for (const char* spec : {"streaming:budget=12,sinks=4", "h2o:budget=12,pos=cache",
                           "snapkv:budget=12,window=4,pos=cache", "pyramidkv:budget=12,window=4,pos=cache",
                           "knorm:budget=12,skip_layers=0,pos=cache"}) {
    SCOPED_TRACE(spec);
    MethodRun run = run_method(model, m.backend, spec, prompt, decoded);
    const std::vector<KVHeadView> view = run.cache->view(0);
    for (int h = 0; h < c.n_kv_heads; h++) {
      const std::vector<int32_t>& kept = run.cache->positions(0, h);
      ASSERT_LT(kept.size(), run.sequence.size()) << "nothing evicted";
      std::vector<int32_t> tokens;
      for (int32_t p : kept) tokens.push_back(run.sequence[p]);
      auto fresh = model.make_cache(256);
      model.forward(tokens, *fresh);
      const float* want = static_cast<const float*>(fresh->view(0)[h].keys);
      const float* got = static_cast<const float*>(view[h].keys);
      for (size_t i = 0; i < kept.size() * size_t(c.head_dim); i++)
        ASSERT_NEAR(got[i], want[i], 1e-4f * (1 + std::fabs(want[i])))
            << "head " << h << " slot " << i / c.head_dim;
    }
  }
}

// A long conversation on a tiny model: 5K tokens through a 512-token context with
// streaming (pos=cache by default). Positions stay below the context, the bytes held
// never pass the budget's, and the storage stays bounded too.
TEST(CachePositions, GenerationRunsPastTheContextInBoundedMemory) {
  RuntimeOptions rt;
  rt.model_path = "tests/data/hf/untied-linear";
  rt.quiet = true;
  rt.ctx_size = 512;
  rt.kv = "streaming:budget=128";
  Session s(rt);
  const KVCache& cache = s.cache();
  const size_t budget_bytes = 128 * KVCache::bytes_per_token(cache.n_layers(), cache.n_kv_heads(),
                                                             cache.head_dim(), cache.kv_dtype());
  SamplingParams params;
  params.seed = 7;
  Sampler sampler(params);
  size_t most_held = 0, most_allocated = 0;
  int most_position = 0;
  const auto check = [&](const std::string&) {
    const KVStats st = cache.stats();
    most_held = std::max(most_held, st.bytes_held);
    most_allocated = std::max(most_allocated, st.bytes_allocated);
    most_position = std::max(most_position, cache.next_position());
  };
  const std::vector<int32_t> message = s.tokenizer().encode("tell me a long story", false);
  for (int turn = 0; cache.tokens_seen() < 5000 && turn < 50; turn++) {
    const GenerationStats st = s.generate(message, 1500, sampler, check);
    EXPECT_FALSE(st.context_full) << "turn " << turn;
  }
  EXPECT_GE(cache.tokens_seen(), 5000);
  EXPECT_LE(most_held, budget_bytes);
  EXPECT_LE(most_allocated, 2 * budget_bytes);
  EXPECT_LE(most_position, 128 + int(message.size()));
  EXPECT_EQ(cache.stats().bytes_held, budget_bytes);
}

}  // namespace
}  // namespace kvlm
