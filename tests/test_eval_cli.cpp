// kvlm passkey, needle and sweep end to end on the default model: a full cache finds every
// pass key, a tiny streaming window loses one at the start, the files are complete and
// well-formed, and bad input fails before any work, leaving no file behind.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "cli_fixture.h"

namespace kvlm {
namespace {

using namespace test::cli;

// A fresh empty directory for one test's output files.
fs::path output_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("kvlm_eval_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) n++;
  return n;
}

TEST(EvalCli, PasskeyWithAFullCacheFindsEveryKey) {
  KVLM_REQUIRE_MODEL();
  fs::path dir = output_dir("full");
  Result r = kvlm("passkey " + model_flag() + " --ctx 1k --trials 3 --depths 0.5 --json " +
                  (dir / "out.json").string());
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(slurp(dir / "out.json"));
  ASSERT_EQ(j["trials_detail"].size(), 3u);
  for (const auto& t : j["trials_detail"]) {
    EXPECT_NE(t["answer"].get<std::string>().find(t["expected"][0].get<std::string>()), std::string::npos)
        << t["answer"];
    EXPECT_LE(t["prompt_tokens"].get<int>(), 1024);
    EXPECT_GE(t["prompt_tokens"].get<int>(), 1000);
  }
  EXPECT_EQ(j["cells"][0]["accuracy"], 1.0);
  EXPECT_NE(r.out.find("   1024   100"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\033["), std::string::npos) << "no colour when stdout is not a terminal";
  EXPECT_NE(r.err.find("3/3 prompts"), std::string::npos) << "progress on stderr:\n" << r.err;
  fs::remove_all(dir);
}

// --kept-svg draws the chosen prompt: one panel per method, the key and the question
// marked; an index past the run's prompts fails before any work.
TEST(EvalCli, KeptSvgDrawsTheChosenPromptWithItsKeyMarked) {
  KVLM_REQUIRE_MODEL();
  fs::path dir = output_dir("kept");
  const std::string svg_path = (dir / "kept.svg").string();
  const std::string args = "passkey " + model_flag() + " --ctx 512 --depths 0.5 ";
  expect_error(kvlm(args + "--trials 2 --kept-prompt 2 --kept-svg " + svg_path), 2,
               "--kept-prompt 2: the run has 2 prompts (0..1)");
  EXPECT_FALSE(fs::exists(svg_path));
  Result r = kvlm(args + "--trials 1 --kv snapkv:budget=64,window=8 --kept-svg " + svg_path);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string svg = slurp(svg_path);
  EXPECT_EQ(count(svg, "<g class=\"panel\""), 1u);
  EXPECT_EQ(count(svg, "<title>needle: tokens"), 1u) << "the pass key is marked";
  EXPECT_EQ(count(svg, "stroke=\"#d62728\""), 1u) << "so is the question's start";
  EXPECT_NE(svg.find("prompt 0: "), std::string::npos);
  EXPECT_EQ(count(svg, "data-kept=\"64\""), 30u * 3u) << "every layer and KV head keeps 64";
  fs::remove_all(dir);
}

TEST(EvalCli, ATinyStreamingWindowLosesAKeyAtTheStart) {
  KVLM_REQUIRE_MODEL();
  fs::path dir = output_dir("streaming");
  Result r = kvlm("passkey " + model_flag() + " --ctx 512 --trials 3 --depths 0 "
                  "--kv streaming:budget=16 --csv " + (dir / "out.csv").string());
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string csv = slurp(dir / "out.csv");
  ASSERT_EQ(count(csv, "\n"), 2u) << csv;
  const std::string row = csv.substr(csv.find('\n') + 1);
  // method,budget,spec,query_mode,ctx,depth,trials,accuracy,strict,held,full,kept share,...
  EXPECT_NE(row.find(",aware,512,0.0000,3,0.0000,0.0000,"), std::string::npos) << row;
  EXPECT_NE(r.out.find("    512     0"), std::string::npos) << r.out;
  fs::remove_all(dir);
}

TEST(EvalCli, NeedleWritesItsHeatmapAsTableCsvJsonAndSvg) {
  KVLM_REQUIRE_MODEL();
  fs::path dir = output_dir("needle");
  Result r = kvlm("needle " + model_flag() + " --task multikey --needles 2 --ctx-list 256,384 "
                  "--depths 0,1 --trials 1 --csv " + (dir / "h.csv").string() + " --json " +
                  (dir / "h.json").string() + " --svg " + (dir / "h.svg").string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("context   0.00  1.00"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    256 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("    384 "), std::string::npos) << r.out;
  EXPECT_EQ(count(slurp(dir / "h.csv"), "\n"), 5u) << "a header and four cells";
  nlohmann::json j = nlohmann::json::parse(slurp(dir / "h.json"));
  EXPECT_EQ(j["task"], "multikey");
  EXPECT_EQ(j["cells"].size(), 4u);
  EXPECT_EQ(j["trials_detail"].size(), 4u);
  const std::string svg = slurp(dir / "h.svg");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_EQ(count(svg, "<title>context "), 4u) << "one cell per (context, depth)";
  EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().extension().string().find("partial"), std::string::npos) << e.path();
  fs::remove_all(dir);
}

TEST(EvalCli, SweepRunsEveryMethodAtEveryBudgetOnTheSamePrompts) {
  KVLM_REQUIRE_MODEL();
  fs::path dir = output_dir("sweep");
  Result r = kvlm("sweep " + model_flag() + " --ctx 256 --trials 1 --kv-list streaming,snapkv,simlayerkv "
                  "--budgets 32,ratio=0.5 --csv " + (dir / "s.csv").string() + " --json " +
                  (dir / "s.json").string() + " --svg " + (dir / "s.svg").string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("adding full"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("leaving out snapkv:budget=32: --kv snapkv: window=32 must be smaller"),
            std::string::npos) << "the default window does not fit budget 32:\n" << r.err;
  EXPECT_NE(r.out.find("- the method cannot take this budget"), std::string::npos) << r.out;
  for (const char* row : {"full (no budget)", "streaming ", "simlayerkv (no budget)", "budget=32", "ratio=0.5"})
    EXPECT_NE(r.out.find(row), std::string::npos) << row << " in\n" << r.out;
  EXPECT_NE(r.out.find("KV held (MiB) / decode speed"), std::string::npos);
  const std::string csv = slurp(dir / "s.csv");
  EXPECT_EQ(count(csv, "\n"), 6u) << "header, full, streaming x2, snapkv, simlayerkv:\n" << csv;
  EXPECT_NE(csv.find("streaming,ratio=0.5,streaming:ratio=0.5,aware,256,,1,"), std::string::npos) << csv;
  nlohmann::json j = nlohmann::json::parse(slurp(dir / "s.json"));
  // Every method saw the same prompts: the same keys in the same order.
  std::vector<std::string> keys_of_full, keys_of_streaming;
  for (const auto& t : j["trials_detail"]) {
    if (t["spec"] == "full") keys_of_full.push_back(t["expected"][0]);
    if (t["spec"] == "streaming:budget=32") keys_of_streaming.push_back(t["expected"][0]);
  }
  EXPECT_EQ(keys_of_full.size(), 1u);
  EXPECT_EQ(keys_of_full, keys_of_streaming);
  const std::string svg = slurp(dir / "s.svg");
  EXPECT_EQ(count(svg, "<polyline"), 4u) << "a line per method";
  EXPECT_EQ(count(svg, "stroke-dasharray"), 4u) << "methods without a budget: dashed, in the legend too";

  // --replot shows the same table and writes the same files from the JSON alone.
  Result again = kvlm("sweep --replot " + (dir / "s.json").string() + " --csv " +
                      (dir / "again.csv").string() + " --svg " + (dir / "again.svg").string());
  ASSERT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(again.out, r.out);
  EXPECT_EQ(slurp(dir / "again.csv"), csv);
  EXPECT_EQ(slurp(dir / "again.svg"), svg);
  expect_error(kvlm("needle --replot " + (dir / "s.json").string() + " --svg " + (dir / "n.svg").string()),
               2, "written by kvlm sweep, not kvlm needle");
  EXPECT_FALSE(fs::exists(dir / "n.svg"));
  fs::remove_all(dir);
}

TEST(EvalCli, AgnosticModeAppendsTheQuestionAfterCompression) {
  KVLM_REQUIRE_MODEL();
  fs::path dir = output_dir("agnostic");
  // With a window of 16, the question (about 30 tokens) is itself most of what the aware
  // prefill keeps; appended afterwards, it is kept whole on top of the budget.
  for (const char* mode : {"aware", "agnostic"}) {
    Result r = kvlm("passkey " + model_flag() + " --ctx 256 --trials 1 --depths 1 --kv "
                    "streaming:budget=16 --query-mode " + std::string(mode) + " --json " +
                    (dir / (std::string(mode) + ".json")).string());
    ASSERT_EQ(r.status, 0) << r.err;
  }
  nlohmann::json aware = nlohmann::json::parse(slurp(dir / "aware.json"));
  nlohmann::json agnostic = nlohmann::json::parse(slurp(dir / "agnostic.json"));
  EXPECT_EQ(aware["query_mode"], "aware");
  EXPECT_EQ(agnostic["query_mode"], "agnostic");
  const double held_aware = aware["cells"][0]["kv_bytes_held"];
  const double held_agnostic = agnostic["cells"][0]["kv_bytes_held"];
  EXPECT_GT(held_agnostic, held_aware * 2) << "16 kept + the whole question vs 16 kept";
  fs::remove_all(dir);
}

TEST(EvalCli, BadEvalInputFailsBeforeWorkAndLeavesNoFiles) {
  fs::path dir = output_dir("bad");
  const std::string json = " --json " + (dir / "out.json").string();
  expect_error(kvlm("needle --task nope" + json), 2, "--task nope: unknown task");
  expect_error(kvlm("passkey --depths 0:2:0.5" + json), 2, "depths lie in [0, 1]");
  expect_error(kvlm("passkey --depth -0.5" + json), 2, "--depths");
  expect_error(kvlm("passkey --ctx abc" + json), 2, "--ctx abc");
  expect_error(kvlm("sweep --kv-list snapkv:budget=64" + json), 2, "the budget comes from --budgets");
  expect_error(kvlm("sweep --budgets 64,lots" + json), 2, "--budgets lots");
  expect_error(kvlm("sweep --budgets 0,64" + json), 2, "--budgets 0: a budget keeps at least one token");
  expect_error(kvlm("sweep --budgets 64,budget=00" + json), 2, "--budgets budget=00: a budget");
  expect_error(kvlm("sweep --task needle:nope" + json), 2, "unknown task");
  expect_error(kvlm("passkey --kv nosuch" + json), 2, "unknown method 'nosuch'");
  expect_error(kvlm("passkey --query-mode sideways" + json), 2, "--query-mode");
  expect_error(kvlm("passkey --csv /no/such/dir/out.csv" + json), 1, "--csv /no/such/dir/out.csv");
  expect_error(kvlm("needle --haystack /no/such/text.txt" + json), 1, "--haystack /no/such/text.txt");
  expect_error(kvlm("sweep --replot /no/such/run.json --csv " + (dir / "r.csv").string()), 1,
               "--replot /no/such/run.json");
  const fs::path not_a_run = fs::temp_directory_path() / ("kvlm_not_a_run_" + std::to_string(::getpid()) + ".json");
  std::ofstream(not_a_run) << R"({"command": "sweep", "title": "t", "cells": [{"spec": 7}]})";
  expect_error(kvlm("sweep --replot " + not_a_run.string() + " --csv " + (dir / "r.csv").string()), 1,
               "not a kvlm sweep --json file");
  fs::remove(not_a_run);
  expect_error(kvlm("sweep --replot x.json" + json), 2, "--json excludes --replot");
  if (test::have_model()) {
    expect_error(kvlm("passkey " + model_flag() + " --ctx 16k" + json), 2,
                 "--ctx 16384 exceeds the model's context of 8192 tokens");
    expect_error(kvlm("needle " + model_flag() + " --ctx-list 1k,64k" + json), 2, "--ctx-list 65536");
    const Result short_ctx = kvlm("passkey " + model_flag() + " --ctx 40" + json);
    expect_error(short_ctx, 2, "--ctx: a context of 40 tokens is too short for passkey");
    EXPECT_EQ(short_ctx.err.find("; model "), std::string::npos)
        << "refused before the run's banner:\n" << short_ctx.err;
    expect_error(kvlm("needle " + model_flag() + " --ctx-list 1k,48" + json), 2,
                 "--ctx-list: a context of 48 tokens is too short for single");
  }
  EXPECT_TRUE(fs::is_empty(dir)) << "no output file, complete or partial";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvlm
