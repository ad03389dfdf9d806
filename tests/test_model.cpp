// The forward pass against golden data from an independent reference: Hugging Face
// transformers reading the same GGUF (tests/golden/make_golden.py).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "model_fixture.h"
#include "sample.h"

namespace kvlm {
namespace {

using test::default_model;

nlohmann::json golden() {
  std::ifstream in(test::data_path("smollm2_golden.json"));
  EXPECT_TRUE(in) << "missing tests/data/smollm2_golden.json (run from the repository root)";
  return nlohmann::json::parse(in);
}

// Both sides dequantise the same Q4_1/Q8_0 blocks exactly and compute in float32; only
// the order of summation differs (blocked dot products here, oneDNN/MKL GEMMs there).
// Measured: the largest difference over all top-10 sets is 1.3e-5 (printed by the test)
// on logits of magnitude ~10-30. 1e-3 leaves room for other compilers and SIMD widths
// and stays far below what a real bug costs: a wrong RoPE layout, a missing norm or an
// off-by-one position moves these logits by more than 0.5.
constexpr float kLogitTolerance = 1e-3f;
// A greedy choice may differ only where the reference's best two logits are this close.
constexpr float kNearTie = 2 * kLogitTolerance;

std::vector<float> prefill(const std::vector<int32_t>& ids) {
  auto& m = default_model();
  auto cache = m.model->make_cache(m.file.config().context_length);
  return m.model->forward(ids, *cache);
}

TEST(Golden, TokenIdsMatchReference) {
  KVLM_REQUIRE_MODEL();
  const Tokenizer& tok = default_model().file.tokenizer();
  const nlohmann::json g = golden();
  for (const auto& c : g["cases"])
    EXPECT_EQ(tok.encode(c["prompt"], tok.add_bos_default()), c["ids"].get<std::vector<int32_t>>())
        << c["prompt"];
}

TEST(Golden, TopLogitsOfLastPromptToken) {
  KVLM_REQUIRE_MODEL();
  float worst = 0;
  const nlohmann::json g = golden();
  for (const auto& c : g["cases"]) {
    std::vector<float> logits = prefill(c["ids"].get<std::vector<int32_t>>());
    auto top_ids = c["top_ids"].get<std::vector<int>>();
    auto top_logits = c["top_logits"].get<std::vector<float>>();
    EXPECT_EQ(argmax(logits), top_ids[0]) << c["prompt"];
    for (size_t i = 0; i < top_ids.size(); i++) {
      float diff = std::fabs(logits[top_ids[i]] - top_logits[i]);
      worst = std::max(worst, diff);
      EXPECT_LE(diff, kLogitTolerance) << c["prompt"] << " token " << top_ids[i];
    }
  }
  std::printf("largest |logit - reference| over the top-10 sets: %.2e\n", worst);
}

// With a float32 KV cache and with a float16 one (the default): rounding the stored keys and
// values must not change a greedy token either, except where the reference itself is
// within a near tie.
TEST(Golden, GreedyTokensMatchReference) {
  KVLM_REQUIRE_MODEL();
  auto& m = default_model();
  const nlohmann::json g = golden();
  for (DType kv_dtype : {DType::F32, DType::F16}) {
    for (const auto& c : g["cases"]) {
      auto expected = c["greedy"].get<std::vector<int32_t>>();
      auto margins = c["greedy_margins"].get<std::vector<float>>();
      auto cache = m.model->make_cache(m.file.config().context_length, kv_dtype);
      std::vector<float> logits = m.model->forward(c["ids"].get<std::vector<int32_t>>(), *cache);
      size_t step = 0;
      for (; step < expected.size(); step++) {
        int32_t next = argmax(logits);
        if (next != expected[step]) {
          EXPECT_LT(margins[step], kNearTie)
              << c["prompt"] << ", " << dtype_name(kv_dtype) << " KV: step " << step << " chose "
              << next << ", reference " << expected[step] << " with margin " << margins[step];
          break;  // after a near-tie the two continuations are different texts
        }
        logits = m.model->forward({next}, *cache);
      }
      std::printf("%s KV: %zu/%zu greedy tokens equal: %s\n", dtype_name(kv_dtype), step,
                  expected.size(), c["prompt"].get<std::string>().substr(0, 40).c_str());
    }
  }
}

// Decoding token by token must compute the same function as one prefill.
TEST(Forward, IncrementalDecodeEqualsPrefill) {
  KVLM_REQUIRE_MODEL();
  auto& m = default_model();
  const nlohmann::json g = golden();
  std::vector<int32_t> ids = g["cases"][5]["ids"].get<std::vector<int32_t>>();
  for (size_t split : {size_t(1), ids.size() / 2, ids.size() - 1}) {
    auto cache = m.model->make_cache(256);
    std::vector<float> logits =
        m.model->forward(std::vector<int32_t>(ids.begin(), ids.begin() + split), *cache);
    for (size_t i = split; i < ids.size(); i++) logits = m.model->forward({ids[i]}, *cache);
    std::vector<float> once = prefill(ids);
    float worst = 0;
    for (size_t i = 0; i < once.size(); i++) worst = std::max(worst, std::fabs(once[i] - logits[i]));
    EXPECT_LT(worst, 1e-3f) << "split at " << split;
    EXPECT_EQ(cache->tokens_seen(), int(ids.size()));
  }
}

}  // namespace
}  // namespace kvlm
