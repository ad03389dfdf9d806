// Session (session.h) over a small random-weight model: feeding and its limits, switching
// strategies, compressed versus uncompressed feeding, generation up to a full context, reset.
#include <gtest/gtest.h>

#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "sample.h"
#include "session.h"

namespace kvlm {
namespace {

constexpr int kCtx = 64;

RuntimeOptions options(const std::string& kv = "full") {
  RuntimeOptions rt;
  rt.model_path = "random:smollm2-135m";
  rt.quiet = true;
  rt.ctx_size = kCtx;
  rt.kv = kv;
  return rt;
}

// One session for the suite (loading fills 135M random weights); every test starts it
// over with the strategy it needs.
Session& session(const std::string& kv = "full") {
  static Session s(options());
  s.set_strategy(KVSpec::parse(kv));
  return s;
}

std::vector<int32_t> tokens(int n, int32_t first = 100) {
  std::vector<int32_t> ids(n);
  std::iota(ids.begin(), ids.end(), first);
  return ids;
}

template <class F>
std::string runtime_error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "no error";
}

TEST(Session, FeedAppendsToTheCacheAndHistory) {
  Session& s = session();
  EXPECT_EQ(s.ctx_size(), kCtx);
  const std::vector<float> logits = s.feed({10, 11, 12});
  EXPECT_EQ(logits.size(), size_t(s.file().config().vocab_size));
  EXPECT_EQ(s.cache().tokens_seen(), 3);
  s.feed({13});
  EXPECT_EQ(s.cache().tokens_seen(), 4);
  EXPECT_EQ(s.history(), (std::vector<int32_t>{10, 11, 12, 13}));
}

TEST(Session, FeedPastTheContextThrowsAndChangesNothing) {
  Session& s = session();
  s.feed(tokens(3));
  const std::string message = runtime_error_of([&] { s.feed(tokens(62)); });  // 65 > 64
  EXPECT_NE(message.find("context full"), std::string::npos) << message;
  EXPECT_EQ(s.cache().tokens_seen(), 3);
  EXPECT_EQ(s.history().size(), 3u);
  // Exactly up to the limit is fine: GenerateStopsWhenTheContextIsFull fills it.
}

TEST(Session, FeedRejectsTokensOutsideTheVocabulary) {
  Session& s = session();
  const int vocab = s.file().config().vocab_size;
  const std::string message = runtime_error_of([&] { s.feed({1, vocab}); });
  EXPECT_NE(message.find("outside the vocabulary"), std::string::npos) << message;
  EXPECT_THROW(s.feed({-1}), std::runtime_error);
  EXPECT_EQ(s.cache().tokens_seen(), 0);
  EXPECT_TRUE(s.history().empty());
  s.feed({vocab - 1});  // the last id is valid
  EXPECT_EQ(s.cache().tokens_seen(), 1);
}

TEST(Session, SetStrategyResetsTheCache) {
  Session& s = session();
  s.feed(tokens(8));
  s.set_strategy(KVSpec::parse("snapkv:budget=16,window=4"));
  EXPECT_EQ(s.strategy().name().rfind("snapkv:budget=16", 0), 0u) << s.strategy().name();
  EXPECT_EQ(s.cache().tokens_seen(), 0);
  EXPECT_TRUE(s.history().empty());
}

TEST(Session, BadSpecKeepsTheOldStrategy) {
  Session& s = session("snapkv:budget=16,window=4");
  const std::string before = s.strategy().name();
  s.feed(tokens(3));
  EXPECT_THROW(s.set_strategy(KVSpec::parse("nosuch")), std::invalid_argument);
  EXPECT_THROW(s.set_strategy(KVSpec::parse("snapkv:budget=16,bogus=1")), std::invalid_argument);
  EXPECT_EQ(s.strategy().name(), before);
  EXPECT_EQ(s.cache().tokens_seen(), 3) << "a failed switch does not reset";
}

// Query-agnostic evaluation: the context is compressed, the question joins it whole.
TEST(Session, FeedCompressesAndFeedUncompressedAppends) {
  Session& s = session("snapkv:budget=16,window=4");
  s.feed(tokens(40));
  const int n_layers = s.file().config().n_layers, n_kv_heads = s.file().config().n_kv_heads;
  const auto every_head = [&](int len) {
    return std::vector<std::vector<int>>(n_layers, std::vector<int>(n_kv_heads, len));
  };
  EXPECT_EQ(s.cache().stats().lengths, every_head(16));
  EXPECT_GT(s.scoring_seconds(), 0.0);

  s.feed_uncompressed(tokens(5, 500));
  EXPECT_EQ(s.cache().stats().lengths, every_head(21)) << "5 more rows, nothing evicted";
  EXPECT_EQ(s.cache().tokens_seen(), 45);
  EXPECT_EQ(s.history().size(), 45u);
}

TEST(Session, GenerateStopsWhenTheContextIsFull) {
  Session& s = session();
  SamplingParams greedy;
  greedy.temperature = 0;
  Sampler sampler(greedy);
  std::string text;
  // 60 prompt tokens leave room for 4 of the 10 asked for.
  const GenerationStats st =
      s.generate(tokens(60), 10, sampler, [&](const std::string& piece) { text += piece; });
  EXPECT_EQ(st.prompt_tokens, 60);
  EXPECT_TRUE(st.context_full);
  EXPECT_FALSE(st.hit_end);
  EXPECT_EQ(st.generated_tokens, 4);
  EXPECT_EQ(s.cache().tokens_seen(), kCtx);
  EXPECT_EQ(s.history().size(), size_t(kCtx));
  const std::string message = runtime_error_of([&] { s.feed({1}); });
  EXPECT_NE(message.find("context full"), std::string::npos) << message;
}

TEST(Session, ResetEmptiesCacheAndHistory) {
  Session& s = session();
  s.feed(tokens(6));
  s.reset();
  EXPECT_EQ(s.cache().tokens_seen(), 0);
  EXPECT_TRUE(s.history().empty());
  for (const auto& layer : s.cache().stats().lengths)
    for (int len : layer) EXPECT_EQ(len, 0);
  s.feed(tokens(2));  // and it works again
  EXPECT_EQ(s.cache().tokens_seen(), 2);
}

// A bad --kv fails fast: the model path does not exist, so reaching the loader would throw
// std::runtime_error instead.
TEST(Session, UnknownMethodThrowsBeforeLoading) {
  RuntimeOptions rt = options("nosuch");
  rt.model_path = "/nonexistent/model.gguf";
  EXPECT_THROW(Session{rt}, std::invalid_argument);
}

}  // namespace
}  // namespace kvlm
