// Random-weight models of real shapes ("random:<shape>"): the published configurations
// (checked through their parameter counts, the numbers the model cards state), and a
// small one that loads and runs on the CPU.
#include <gtest/gtest.h>

#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "model/load.h"
#include "model/random_model.h"

namespace kvlm {
namespace {

TEST(RandomModel, ShapesHaveThePublishedParameterCounts) {
  // Totals of the Hugging Face checkpoints' safetensors (embeddings, untied heads and
  // norms included).
  EXPECT_EQ(ModelFile("random:llama2-7b").parameter_count(), 6738415616u);
  EXPECT_EQ(ModelFile("random:llama3-8b").parameter_count(), 8030261248u);
  EXPECT_EQ(ModelFile("random:tinyllama-1.1b").parameter_count(), 1100048384u);
  EXPECT_EQ(ModelFile("random:smollm2-135m").parameter_count(), 134515008u);
  const ModelConfig c = ModelFile("random:llama3-8b").config();
  EXPECT_EQ(c.n_kv_heads, 8);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope_theta, 500000.0f);
}

TEST(RandomModel, UnknownShapeNamesTheKnownOnes) {
  try {
    ModelFile("random:llama9-1t");
    FAIL() << "no error";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(),
                 "random:llama9-1t: unknown random model shape 'llama9-1t' (known: llama2-7b, "
                 "llama3-8b, tinyllama-1.1b, smollm2-135m)");
  }
}

TEST(RandomModel, ByteTokenizerCoversTheVocabulary) {
  ModelFile f("random:tinyllama-1.1b");
  const Tokenizer& tok = f.tokenizer();
  EXPECT_EQ(tok.vocab_size(), 32000);
  const std::vector<int32_t> ids = tok.encode("h\xC3\xA9", true);
  EXPECT_EQ(ids, (std::vector<int32_t>{tok.bos_id(), 2 + 'h', 2 + 0xC3, 2 + 0xA9}));
  EXPECT_EQ(tok.decode({ids.begin() + 1, ids.end()}), "h\xC3\xA9");
  EXPECT_TRUE(tok.is_end_of_generation(tok.eos_id()));
  EXPECT_TRUE(tok.is_special(31999));
}

// The smallest shape end to end: finite logits that depend on the input.
TEST(RandomModel, SmolLM2ShapeRunsOnTheCpu) {
  CpuBackend backend(2);
  ModelFile f("random:smollm2-135m");
  auto model = f.load(backend);
  auto forward = [&](const std::vector<int32_t>& prompt) {
    auto cache = model->make_cache(64);
    std::vector<float> logits = model->forward(prompt, *cache);
    return model->forward({7}, *cache);
  };
  const std::vector<float> a = forward({0, 100, 101, 102});
  const std::vector<float> b = forward({0, 100, 101, 103});
  ASSERT_EQ(a.size(), 49152u);
  float spread = 0;
  for (size_t i = 0; i < a.size(); i++) {
    ASSERT_TRUE(std::isfinite(a[i])) << i;
    spread = std::max(spread, std::fabs(a[i] - a[0]));
  }
  EXPECT_GT(spread, 1e-3f) << "logits do not depend on the token";
  EXPECT_NE(a, b) << "logits do not depend on the prompt";
}

}  // namespace
}  // namespace kvlm
