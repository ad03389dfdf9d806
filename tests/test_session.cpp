// Session (session.h) over a small random-weight model: feeding and its limits, switching
// strategies, compressed versus uncompressed feeding, generation up to a full context, reset,
// and taking a turn back.
#include <gtest/gtest.h>

#include <csignal>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "cache_contents.h"
#include "sample.h"
#include "session.h"
#include "util/interrupt.h"

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

// smaps_rollup's huge-page fields, and only those, added up (kB -> bytes); a field name
// inside another line does not count.
TEST(Session, HugePageBytesAddsTheHugePageFields) {
  std::istringstream rollup(
      "55d0c0000000-7ffd0000000 ---p 00000000 00:00 0                          [rollup]\n"
      "Rss:              298392 kB\n"
      "AnonHugePages:      4096 kB\n"
      "ShmemPmdMapped:        0 kB\n"
      "FilePmdMapped:    258048 kB\n"
      "Shared_Hugetlb:     2048 kB\n"
      "Note: AnonHugePages: 999 kB\n");
  EXPECT_EQ(huge_page_bytes(rollup), size_t(4096 + 258048) << 10);
  std::istringstream empty("");
  EXPECT_EQ(huge_page_bytes(empty), 0u);
  EXPECT_LE(huge_page_bytes(), resident_bytes()) << "a part of this process's resident memory";
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

// What a chat turn leaves behind: the cache whole, the history, the strategy's report, the
// logits of the next message, and the cache after it (what the strategy's own state, e.g.
// h2o's scores, made it keep).
struct AfterTurn {
  test::CacheContents cache;
  std::vector<int32_t> history;
  std::string report;
  std::vector<float> next_logits;
  test::CacheContents next_cache;
};

// Every method, so that every kind of change is taken back: evictions at prefill and while
// decoding, merged layers, scores and detections kept between calls.
const char* const kEveryKindOfMethod[] = {
    "full", "streaming:budget=16", "h2o:budget=16", "snapkv:budget=16,window=4",
    "pyramidkv:budget=16,window=4", "adakv:budget=16,window=4", "dynamickv:budget=16,window=4",
    "knorm:budget=16", "simlayerkv", "minicache:start=0", "h2o:budget=16+streaming:budget=16"};

// Each method runs two conversations: a two-layer model (tests/data/hf) keeps that quick.
Session& tiny_session(const std::string& kv) {
  static Session s([] {
    RuntimeOptions rt = options();
    rt.model_path = "tests/data/hf/llama3-gqa";
    return rt;
  }());
  s.set_strategy(KVSpec::parse(kv));
  return s;
}

// The first turn (20 tokens and 3 generated), then `middle` (which may take a second turn
// back), then the next message's logits.
template <class Middle>
AfterTurn converse(Session& s, Middle middle) {
  SamplingParams greedy;
  greedy.temperature = 0;
  Sampler sampler(greedy);
  s.reset();
  s.generate(tokens(20), 3, sampler, [](const std::string&) {});
  middle(s, sampler);
  AfterTurn after{test::contents(s.cache()), s.history(), s.strategy().report(), {}, {}};
  after.next_logits = s.feed(tokens(6, 400));
  after.next_cache = test::contents(s.cache());
  return after;
}

void expect_same(const AfterTurn& a, const AfterTurn& b) {
  EXPECT_TRUE(a.cache == b.cache) << "the cache differs";
  EXPECT_EQ(a.history, b.history);
  EXPECT_EQ(a.report, b.report);
  EXPECT_EQ(a.next_logits, b.next_logits);
  EXPECT_TRUE(a.next_cache == b.next_cache) << "the strategy kept other tokens of the next message";
}

TEST(Session, RollbackMakesATurnNeverHappen) {
  for (const char* kv : kEveryKindOfMethod) {
    SCOPED_TRACE(kv);
    Session& s = tiny_session(kv);
    const AfterTurn without = converse(s, [](Session&, Sampler&) {});
    const AfterTurn taken_back = converse(s, [](Session& s, Sampler& sampler) {
      s.checkpoint();
      s.generate(tokens(12, 300), 4, sampler, [](const std::string&) {});
      s.rollback();
    });
    expect_same(taken_back, without);
  }
}

// Ctrl-C once the second turn's prompt is in (and compressed): the first decode step throws.
TEST(Session, RollbackAfterCtrlCMakesATurnNeverHappen) {
  struct sigaction previous {};
  sigaction(SIGINT, nullptr, &previous);
  catch_interrupts();
  for (const char* kv : {"snapkv:budget=16,window=4", "minicache:start=0"}) {
    SCOPED_TRACE(kv);
    Session& s = tiny_session(kv);
    const AfterTurn without = converse(s, [](Session&, Sampler&) {});
    const AfterTurn interrupted = converse(s, [](Session& s, Sampler& sampler) {
      s.checkpoint();
      EXPECT_THROW(s.generate(tokens(12, 300), 4, sampler, [](const std::string&) {},
                              [] { std::raise(SIGINT); }),
                   Interrupted);
      s.rollback();
    });
    expect_same(interrupted, without);
  }
  sigaction(SIGINT, &previous, nullptr);
}

TEST(Session, CommitKeepsTheTurn) {
  Session& s = tiny_session("streaming:budget=16");
  const AfterTurn one_call = converse(s, [](Session& s, Sampler&) { s.feed(tokens(12, 300)); });
  const AfterTurn committed = converse(s, [](Session& s, Sampler&) {
    s.checkpoint();
    s.feed(tokens(12, 300));
    s.commit();
    s.rollback();  // nothing left to take back
  });
  expect_same(committed, one_call);
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
