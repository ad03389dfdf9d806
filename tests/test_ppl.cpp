// kvlm ppl (eval/ppl.h): perplexity read one token at a time against an independent route
// (a fresh prefill of every prefix), segments, where a full context stops it, and the
// command's files and errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "cli_fixture.h"
#include "eval/ppl.h"

namespace kvlm {
namespace {

namespace fs = std::filesystem;
using test::cli::kvlm;
using test::cli::Result;

const char kTinyModel[] = "tests/data/hf/untied-linear";

Session& tiny_session(int ctx) {
  RuntimeOptions rt;
  rt.model_path = kTinyModel;
  rt.quiet = true;
  rt.ctx_size = ctx;
  rt.device = resolve_device("cpu", "", "f32");
  static std::map<int, std::unique_ptr<Session>> sessions;
  auto& s = sessions[ctx];
  if (!s) s = std::make_unique<Session>(rt);
  return *s;
}

std::vector<int32_t> text_tokens(Session& s, int n) {
  std::string text;
  for (int i = 0; text.size() < size_t(8 * n); i++)
    text += "the cat sat on the mat and the dog ran to the park " + std::to_string(i) + " ";
  std::vector<int32_t> ids = s.tokenizer().encode(text, true);
  ids.resize(n);
  return ids;
}

double nll(const std::vector<float>& logits, int32_t target) {
  double top = logits[0], sum = 0;
  for (float v : logits) top = std::max(top, double(v));
  for (float v : logits) sum += std::exp(v - top);
  return std::log(sum) + top - logits[target];
}

// Token by token through the cache equals a fresh prefill of every prefix, and the overall
// perplexity is the token-weighted mean of the segments'.
TEST(Ppl, TokenByTokenEqualsAFreshPrefillOfEveryPrefix) {
  Session& s = tiny_session(64);
  s.set_strategy(KVSpec::parse("full"));
  const std::vector<int32_t> tokens = text_tokens(s, 40);
  const PplSeries got = score_text(s, tokens, 16);
  EXPECT_EQ(got.tokens_scored, 39);
  EXPECT_EQ(got.stopped_at, 0);
  ASSERT_EQ(got.segment_tokens, (std::vector<int>{16, 16, 7}));
  double total = 0;
  std::vector<double> per_segment(3);
  for (size_t t = 1; t < tokens.size(); t++) {
    s.reset();
    const double v = nll(s.feed({tokens.begin(), tokens.begin() + t}), tokens[t]);
    total += v;
    per_segment[(t - 1) / 16] += v;
  }
  for (int k = 0; k < 3; k++)
    EXPECT_NEAR(got.segment_nll[k], per_segment[k] / got.segment_tokens[k], 1e-4) << "segment " << k;
  EXPECT_NEAR(got.perplexity(), std::exp(total / 39), 1e-4 * std::exp(total / 39));
}

// Original positions stop where the context is full; positions inside the cache go on.
TEST(Ppl, AFullContextStopsOriginalPositionsOnly) {
  Session& s = tiny_session(20);
  const std::vector<int32_t> tokens = text_tokens(s, 40);
  s.set_strategy(KVSpec::parse("full"));
  const PplSeries full = score_text(s, tokens, 8);
  EXPECT_EQ(full.stopped_at, 20);
  EXPECT_EQ(full.tokens_scored, 20);
  s.set_strategy(KVSpec::parse("streaming:budget=8,pos=original"));
  EXPECT_EQ(score_text(s, tokens, 8).stopped_at, 20);
  s.set_strategy(KVSpec::parse("streaming:budget=8"));
  const PplSeries streaming = score_text(s, tokens, 8);
  EXPECT_EQ(streaming.stopped_at, 0);
  EXPECT_EQ(streaming.tokens_scored, 39);
  EXPECT_EQ(streaming.segment_tokens.size(), 5u);
}

std::string temp_file(const std::string& name, const std::string& content) {
  const fs::path p = fs::temp_directory_path() / ("kvlm_ppl_" + std::to_string(::getpid()) + name);
  std::ofstream(p, std::ios::binary) << content;
  return p.string();
}

TEST(Ppl, WritesTheTableCsvJsonAndSvg) {
  std::string text;
  for (int i = 0; i < 40; i++) text += "the cat sat on the mat and the dog ran to the park. ";
  const std::string in = temp_file("in.txt", text), out = temp_file("out", "");
  fs::remove(out);
  const Result r = kvlm(std::string("ppl -m ") + kTinyModel + " -f " + in + " --ctx 128 --segment 64 "
                        "--kv-list full,streaming:budget=32 --csv " + out + ".csv --json " + out +
                        ".json --svg " + out + ".svg");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("tokens"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("streaming:budget=32"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nall "), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("stopped at token 128: the context is full"), std::string::npos) << r.err;
  const nlohmann::json doc = nlohmann::json::parse(test::cli::slurp(out + ".json"));
  ASSERT_EQ(doc["methods"].size(), 2u);
  EXPECT_EQ(doc["methods"][0]["stopped_at"], 128);
  EXPECT_TRUE(doc["methods"][1]["stopped_at"].is_null()) << "streaming reads it all";
  EXPECT_GT(doc["methods"][1]["perplexity"].get<double>(), 1.0);
  const std::string svg = test::cli::slurp(out + ".svg");
  size_t lines = 0;
  for (size_t at = svg.find("<polyline"); at != std::string::npos; at = svg.find("<polyline", at + 1))
    lines++;
  EXPECT_EQ(lines, 2u);
  EXPECT_NE(test::cli::slurp(out + ".csv").find("method,spec,segment_start"), std::string::npos);
  const Result again = kvlm("ppl --replot " + out + ".json");
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(again.out, r.out) << "--replot shows the same table, without the model";
  EXPECT_EQ(kvlm("ppl --replot " + in).status, 1) << "a text file is not a run";
  for (const char* ext : {".csv", ".json", ".svg"}) fs::remove(out + ext);
  fs::remove(in);
}

TEST(Ppl, BadTextFilesAreRefusedWithNoOutputLeft) {
  const std::string out = temp_file("bad.json", "");
  fs::remove(out);
  struct Case { std::string name, content, error; };
  for (const Case& c : {Case{"empty.txt", "", "the file is empty"},
                        Case{"binary.bin", std::string("ab\0cd", 5), "not a text file (a NUL byte or invalid UTF-8 at byte 2)"},
                        Case{"short.txt", "just a few words", "9 tokens, fewer than one segment of 1024 to score (--segment)"}}) {
    const std::string in = temp_file(c.name, c.content);
    const Result r = kvlm(std::string("ppl -m ") + kTinyModel + " -f " + in + " --json " + out);
    EXPECT_EQ(r.status, 1) << c.name;
    EXPECT_NE(r.err.find(in + ": " + c.error), std::string::npos) << r.err;
    EXPECT_FALSE(fs::exists(out)) << c.name;
    fs::remove(in);
  }
  const Result missing = kvlm("ppl -f /nonexistent/text.txt");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("/nonexistent/text.txt: cannot read the text file"), std::string::npos);
  const Result no_text = kvlm("ppl -m x");
  EXPECT_EQ(no_text.status, 2) << "-f is required";
  EXPECT_NE(no_text.err.find("give the text with -f FILE"), std::string::npos) << no_text.err;
}

}  // namespace
}  // namespace kvlm
