// Shared prefill (Session::prefill_shared, run_grid's share_prefill) changes no result:
// every method, at two budgets, keeps the same positions in every (layer, KV head), gets
// the same logits bit for bit and writes the same answer as when it prefills the prompt
// itself, in both query modes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "eval/runner.h"
#include "model_fixture.h"
#include "session.h"

namespace kvlm {
namespace {

const std::vector<std::string> kSpecs = {
    "full",
    "streaming:budget=24", "streaming:budget=48,pos=original",
    "h2o:budget=24", "h2o:budget=48,obs=window,pos=cache",
    "snapkv:budget=40", "snapkv:budget=64,pool=avg",
    "pyramidkv:budget=40", "pyramidkv:budget=64",
    "adakv:budget=40", "adakv:budget=64",
    "dynamickv:budget=24", "dynamickv:budget=48",
    "simlayerkv:recent=0.25,delta=0.5", "simlayerkv:recent=0.25,delta=0.5,window=48,self=0",
    "knorm:budget=24", "knorm:budget=48,decode=0",
    "minicache", "snapkv:budget=64+minicache"};

struct Outcome {
  std::vector<std::vector<std::vector<int32_t>>> kept;  // [layer][KV head] positions
  std::vector<float> logits;
  std::vector<int32_t> answer;  // greedy tokens after the prompt
};

Outcome finish(Session& s, std::vector<float> logits) {
  Outcome o;
  for (int l = 0; l < s.cache().n_layers(); l++) {
    o.kept.emplace_back();
    for (int h = 0; h < s.cache().n_kv_heads(); h++) o.kept.back().push_back(s.cache().positions(l, h));
  }
  o.logits = logits;
  for (int i = 0; i < 6; i++) {
    o.answer.push_back(int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin()));
    logits = s.feed({o.answer.back()});
  }
  return o;
}

TEST(SharedPrefill, EveryMethodKeepsAndAnswersAsWithItsOwnPrefill) {
  KVLM_REQUIRE_MODEL();
  RuntimeOptions rt;
  rt.model_path = test::model_path();
  rt.quiet = true;
  rt.ctx_size = 1024;
  Session s(rt);
  std::string text = "Remember this: the pass key is 48213. ";
  for (int i = 0; i < 6; i++) text += "The grass is green. The sky is blue. The sun is yellow. Here we go. ";
  text += "What is the pass key? The pass key is";
  const std::vector<int32_t> prompt = s.tokenizer().encode(text, true);
  ASSERT_GT(prompt.size(), 100u);

  std::vector<Needs> needs;
  for (const std::string& spec : kSpecs) needs.push_back(s.prefill_needs(KVSpec::parse(spec), int(prompt.size())));
  s.prefill_shared(prompt, needs);
  for (const std::string& spec : kSpecs) {
    SCOPED_TRACE(spec);
    s.set_strategy(KVSpec::parse(spec));
    const Outcome shared = finish(s, s.replay_shared());
    s.set_strategy(KVSpec::parse(spec));
    const Outcome own = finish(s, s.feed(prompt));
    EXPECT_EQ(shared.kept, own.kept);
    EXPECT_EQ(shared.logits, own.logits);
    EXPECT_EQ(shared.answer, own.answer);
    if (spec != "full" && spec.rfind("minicache", 0) != 0) {
      size_t held = 0;
      for (const auto& layer : own.kept)
        for (const auto& head : layer) held += head.size();
      EXPECT_LT(held, size_t(s.cache().n_layers()) * s.cache().n_kv_heads() * (prompt.size() + 6))
          << "the method evicted nothing: the test cannot tell";
    }
  }
  s.drop_shared();
  EXPECT_THROW(s.replay_shared(), std::logic_error);
}

// A whole grid both ways, aware and agnostic, on the tiny model: the records are equal.
TEST(SharedPrefill, GridRecordsAreTheSameEitherWay) {
  RuntimeOptions rt;
  rt.model_path = "tests/data/hf/llama3-gqa";
  rt.quiet = true;
  rt.ctx_size = 256;
  Session s(rt);
  PromptBuilder builder(s.tokenizer(), {}, {Task::Passkey, 1}, 5);
  for (QueryMode mode : {QueryMode::Aware, QueryMode::Agnostic}) {
    SCOPED_TRACE(query_mode_name(mode));
    EvalGrid grid;
    for (const char* spec : {"full", "snapkv:budget=48,window=8", "streaming:budget=32",
                             "h2o:budget=40", "knorm:budget=32,skip_layers=0"})
      grid.methods.push_back({spec, spec, ""});
    grid.ctx_list = {250};
    grid.trials = 2;
    grid.mode = mode;
    const GridRun shared = run_grid(s, builder, grid, "shared", true);
    grid.share_prefill = false;
    const GridRun own = run_grid(s, builder, grid, "own", true);
    ASSERT_EQ(shared.records.size(), own.records.size());
    for (size_t i = 0; i < own.records.size(); i++) {
      EXPECT_EQ(shared.records[i].method, own.records[i].method) << i;
      EXPECT_EQ(shared.records[i].trial, own.records[i].trial) << i;
      EXPECT_EQ(shared.records[i].outcome.answer, own.records[i].outcome.answer) << i;
      EXPECT_EQ(shared.records[i].outcome.kv_bytes_held, own.records[i].outcome.kv_bytes_held) << i;
    }
  }
}

}  // namespace
}  // namespace kvlm
