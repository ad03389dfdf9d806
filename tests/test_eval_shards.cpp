// Runs split across machines and runs taken up again: --shard K/N, kvlm merge and
// --resume give the table and answers of one whole run, and refuse parts of other runs.
// Also what several methods in one run share: --json-kept, and passkey/needle --kv-list.
// On a tiny model (a whole sweep takes a second), whose answers are noise: only their
// equality matters here.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_fixture.h"

namespace kvlm {
namespace {

using namespace test::cli;

std::string sweep_args(int ctx = 250) {
  return "sweep -m tests/data/hf/llama3-gqa --ctx " + std::to_string(ctx) +
         " --trials 3 --kv-list full,snapkv,streaming --budgets 32,64";
}
const std::string kSweep = sweep_args();

fs::path output_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("kvlm_shards_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// The accuracy table: what a run prints before its speed table, which timing changes.
std::string accuracy_part(const std::string& out) { return out.substr(0, out.find("KV held")); }

nlohmann::json json_of(const fs::path& p) { return nlohmann::json::parse(slurp(p)); }

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) n++;
  return n;
}

void expect_same_answers(const nlohmann::json& a, const nlohmann::json& b) {
  ASSERT_EQ(a["trials_detail"].size(), b["trials_detail"].size());
  for (size_t i = 0; i < a["trials_detail"].size(); i++)
    for (const char* key : {"spec", "prompt", "answer", "kv_bytes_held"})
      EXPECT_EQ(a["trials_detail"][i][key], b["trials_detail"][i][key]) << key << " of trial " << i;
}

TEST(EvalShards, ShardsMergeIntoTheTableOfTheWholeRun) {
  const fs::path dir = output_dir("merge");
  const Result whole = kvlm(kSweep + " --json " + (dir / "whole.json").string());
  ASSERT_EQ(whole.status, 0) << whole.err;
  for (const char* shard : {"0/3", "1/3", "2/3"}) {
    const std::string name = std::string("shard") + shard[0] + ".json";
    const Result part = kvlm(kSweep + " --shard " + shard + " --json " + (dir / name).string());
    ASSERT_EQ(part.status, 0) << part.err;
    EXPECT_EQ(json_of(dir / name)["shard"], shard);
    EXPECT_EQ(json_of(dir / name)["trials_detail"].size(), 4u) << "one prompt of three, 4 method runs";
  }
  const Result merged = kvlm("merge " + (dir / "shard2.json").string() + " " + (dir / "shard0.json").string() +
                             " " + (dir / "shard1.json").string() + " --json " + (dir / "merged.json").string() +
                             " --csv " + (dir / "merged.csv").string());
  ASSERT_EQ(merged.status, 0) << merged.err;
  EXPECT_NE(merged.err.find("merge: 3 files, 12 of 12 answers"), std::string::npos) << merged.err;
  EXPECT_EQ(accuracy_part(merged.out), accuracy_part(whole.out));
  const nlohmann::json a = json_of(dir / "whole.json"), b = json_of(dir / "merged.json");
  expect_same_answers(a, b);
  ASSERT_EQ(a["cells"].size(), b["cells"].size());
  for (size_t i = 0; i < a["cells"].size(); i++)
    for (const char* key : {"spec", "accuracy", "trials", "kv_bytes_held", "p_vs_full"})
      EXPECT_EQ(a["cells"][i][key], b["cells"][i][key]) << key << " of cell " << i;
  EXPECT_TRUE(b["shard"].is_null());
  EXPECT_EQ(b["state"], "finished");
  EXPECT_TRUE(fs::exists(dir / "merged.csv"));
  fs::remove_all(dir);
}

TEST(EvalShards, ResumeRunsOnlyWhatIsMissing) {
  const fs::path dir = output_dir("resume");
  ASSERT_EQ(kvlm(kSweep + " --json " + (dir / "whole.json").string()).status, 0);
  nlohmann::json half = json_of(dir / "whole.json");
  nlohmann::json kept = nlohmann::json::array();
  for (size_t i = 0; i < half["trials_detail"].size(); i += 2) kept.push_back(half["trials_detail"][i]);
  half["trials_detail"] = kept;
  half["state"] = "interrupted";
  std::ofstream(dir / "half.json") << half.dump();
  const Result resumed = kvlm(kSweep + " --resume " + (dir / "half.json").string() + " --json " +
                              (dir / "resumed.json").string());
  ASSERT_EQ(resumed.status, 0) << resumed.err;
  EXPECT_NE(resumed.err.find("6 of the run's answers are there and are not run again"), std::string::npos)
      << resumed.err;
  // The progress line counts the answers found as done, from the first line on.
  EXPECT_NE(resumed.err.find(" | 6/12 prompts"), std::string::npos) << resumed.err;
  EXPECT_NE(resumed.err.find(" | 7/12 prompts"), std::string::npos) << resumed.err;
  EXPECT_EQ(resumed.err.find(" | 1/12 prompts"), std::string::npos) << resumed.err;
  expect_same_answers(json_of(dir / "whole.json"), json_of(dir / "resumed.json"));
  fs::remove_all(dir);
}

// --json-kept: every record holds what its method kept after the prefill, per layer and
// KV head; the shared prefill keeps exactly what each method's own prefill keeps.
TEST(EvalShards, JsonKeptHoldsEachMethodsKeptPositionsOnBothPaths) {
  const fs::path dir = output_dir("kept");
  const Result plain = kvlm(kSweep + " --json " + (dir / "plain.json").string());
  ASSERT_EQ(plain.status, 0) << plain.err;
  const nlohmann::json plain_json = json_of(dir / "plain.json");
  for (const auto& trial : plain_json["trials_detail"])
    EXPECT_FALSE(trial.contains("kept")) << "only on request";
  const Result shared = kvlm(kSweep + " --json-kept --json " + (dir / "shared.json").string());
  ASSERT_EQ(shared.status, 0) << shared.err;
  const Result own = kvlm(kSweep + " --json-kept --no-share-prefill --json " + (dir / "own.json").string());
  ASSERT_EQ(own.status, 0) << own.err;
  const nlohmann::json a = json_of(dir / "shared.json"), b = json_of(dir / "own.json");
  expect_same_answers(a, b);
  // 3 prompts x 4 runs: full, snapkv at 64 (32 is not above its window), streaming at 32, 64
  ASSERT_EQ(a["trials_detail"].size(), 12u);
  for (size_t i = 0; i < a["trials_detail"].size(); i++) {
    const nlohmann::json& trial = a["trials_detail"][i];
    EXPECT_EQ(trial["kept"], b["trials_detail"][i]["kept"]) << "trial " << i;
    const std::string spec = trial["spec"];
    const int n = trial["prompt_tokens"];
    ASSERT_EQ(trial["kept"].size(), 2u) << "layers";
    for (const auto& layer : trial["kept"]) {
      ASSERT_EQ(layer.size(), 2u) << "KV heads";
      for (const auto& head : layer) {
        const std::vector<int32_t> kept = head.get<std::vector<int32_t>>();
        if (spec == "full") {
          ASSERT_EQ(int(kept.size()), n);
          for (int p = 0; p < n; p++) ASSERT_EQ(kept[p], p);
        } else if (spec.rfind("streaming:budget=32", 0) == 0) {
          ASSERT_EQ(kept.size(), 32u);  // 4 sinks, then the last 28 tokens
          for (int p = 0; p < 32; p++) ASSERT_EQ(kept[p], p < 4 ? p : n - 32 + p) << spec;
        } else {
          EXPECT_LE(kept.size(), spec.find("budget=32") != std::string::npos ? 32u : 64u) << spec;
        }
      }
    }
  }
  const Result needs_json = kvlm(kSweep + " --json-kept");
  EXPECT_EQ(needs_json.status, 2);
  EXPECT_NE(needs_json.err.find("--json-kept requires --json"), std::string::npos) << needs_json.err;
  fs::remove_all(dir);
}

// passkey and needle take several methods too: one shared prefill per prompt, a heatmap
// per method, the same answers as each method's own prefill.
TEST(EvalShards, NeedleAndPasskeyRunAKvListOnSharedPrefills) {
  const fs::path dir = output_dir("kvlist");
  const std::string needle = "needle -m tests/data/hf/llama3-gqa --ctx-list 300,400 --depths 0:1:0.5 "
                             "--trials 2 --kv-list full,snapkv:budget=64,streaming:budget=32";
  const Result shared = kvlm(needle + " --json " + (dir / "shared.json").string() + " --svg " +
                             (dir / "h.svg").string());
  ASSERT_EQ(shared.status, 0) << shared.err;
  const Result own = kvlm(needle + " --no-share-prefill --json " + (dir / "own.json").string());
  ASSERT_EQ(own.status, 0) << own.err;
  EXPECT_NE(shared.err.find("each prompt is prefilled once for all methods"), std::string::npos);
  EXPECT_NE(shared.out.find("needle single, kv 3 methods"), std::string::npos) << shared.out;
  size_t at = 0;
  for (const char* method : {"--- full\n", "--- snapkv:budget=64\n", "--- streaming:budget=32\n"}) {
    at = shared.out.find(method, at);
    ASSERT_NE(at, std::string::npos) << method << " after the previous one in\n" << shared.out;
    EXPECT_EQ(shared.out.find("accuracy (%) by context", at), at + std::string(method).size());
  }
  const nlohmann::json a = json_of(dir / "shared.json"), b = json_of(dir / "own.json");
  EXPECT_EQ(a["cells"].size(), 18u) << "3 methods x 2 contexts x 3 depths";
  EXPECT_EQ(a["trials_detail"].size(), 36u);
  expect_same_answers(a, b);
  EXPECT_EQ(a["kv"], nlohmann::json({"full", "snapkv:budget=64", "streaming:budget=32"}));
  const std::string svg = slurp(dir / "h.svg");
  for (const char* caption : {">full<", ">snapkv:budget=64<", ">streaming:budget=32<"})
    EXPECT_NE(svg.find(caption), std::string::npos) << caption;
  EXPECT_EQ(count_of(svg, "<title>streaming:budget=32, context "), 6u);

  const Result passkey = kvlm("passkey -m tests/data/hf/llama3-gqa --ctx 300 --depths 0.5 --trials 1 "
                              "--kv-list full,streaming:budget=32");
  ASSERT_EQ(passkey.status, 0) << passkey.err;
  EXPECT_NE(passkey.out.find("--- streaming:budget=32"), std::string::npos) << passkey.out;
  const Result both = kvlm("passkey -m tests/data/hf/llama3-gqa --ctx 300 --kv full --kv-list full,streaming");
  EXPECT_EQ(both.status, 2);
  EXPECT_NE(both.err.find("--kv excludes --kv-list"), std::string::npos) << both.err;
  fs::remove_all(dir);
}

TEST(EvalShards, PartsOfOtherRunsAndBadShardsAreRefused) {
  const fs::path dir = output_dir("bad");
  for (const char* shard : {"3/2", "0/0", "1", "a/b", "-1/2"}) {
    const Result r = kvlm(kSweep + " --shard " + shard);
    EXPECT_EQ(r.status, 2) << shard;
    EXPECT_NE(r.err.find(std::string("--shard ") + shard + ": give K/N with 0 <= K < N"), std::string::npos)
        << r.err;
  }
  ASSERT_EQ(kvlm(kSweep + " --shard 0/2 --json " + (dir / "a.json").string()).status, 0);
  ASSERT_EQ(kvlm(kSweep + " --shard 1/2 --seed 7 --json " + (dir / "b.json").string()).status, 0);
  const Result other_seed = kvlm("merge " + (dir / "a.json").string() + " " + (dir / "b.json").string());
  EXPECT_EQ(other_seed.status, 2);
  EXPECT_NE(other_seed.err.find("differ in seed (42 vs 7)"), std::string::npos) << other_seed.err;
  // The same model file from another directory (another machine's checkout) is the same
  // run; another model is not.
  const std::string elsewhere = "sweep -m ./tests/data/hf/../hf/llama3-gqa/ --ctx 250 --trials 3 "
                                "--kv-list full,snapkv,streaming --budgets 32,64";
  ASSERT_EQ(kvlm(elsewhere + " --shard 1/2 --json " + (dir / "c.json").string()).status, 0);
  const Result moved = kvlm("merge " + (dir / "a.json").string() + " " + (dir / "c.json").string());
  EXPECT_EQ(moved.status, 0) << moved.err;
  const std::string other_model = "sweep -m tests/data/hf/untied-linear --ctx 250 --trials 3 "
                                  "--kv-list full,snapkv,streaming --budgets 32,64";
  ASSERT_EQ(kvlm(other_model + " --shard 1/2 --json " + (dir / "d.json").string()).status, 0);
  const Result other = kvlm("merge " + (dir / "a.json").string() + " " + (dir / "d.json").string());
  EXPECT_EQ(other.status, 2);
  EXPECT_NE(other.err.find("differ in model"), std::string::npos) << other.err;
  const Result same_shard = kvlm("merge " + (dir / "a.json").string() + " " + (dir / "a.json").string());
  EXPECT_EQ(same_shard.status, 2);
  EXPECT_NE(same_shard.err.find("hold the same shard (\"0/2\")"), std::string::npos) << same_shard.err;
  const Result wrong_resume = kvlm(kSweep + " --shard 1/2 --resume " + (dir / "a.json").string());
  EXPECT_EQ(wrong_resume.status, 2);
  EXPECT_NE(wrong_resume.err.find("its shard (\"0/2\") is not this run's (\"1/2\")"), std::string::npos)
      << wrong_resume.err;
  const Result other_run = kvlm(sweep_args(240) + " --shard 0/2 --resume " + (dir / "a.json").string());
  EXPECT_EQ(other_run.status, 2);
  EXPECT_NE(other_run.err.find("its ctx ([250]) is not this run's ([240])"), std::string::npos) << other_run.err;
  std::ofstream(dir / "not.json") << "{\"cells\": []}";
  const Result not_a_run = kvlm("merge " + (dir / "not.json").string());
  EXPECT_EQ(not_a_run.status, 1);
  EXPECT_NE(not_a_run.err.find("not the --json file of a kvlm passkey, needle or sweep run"), std::string::npos)
      << not_a_run.err;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvlm
