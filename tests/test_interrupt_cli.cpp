// Ctrl-C end to end, with a real SIGINT: run stops in its prefill and writes nothing, chat
// drops the turn and answers the next one as if it had never been asked, and the
// evaluations keep the prompts that finished. Prompts are long enough that their prefill
// lasts seconds (2,500 tokens: over a second even at 2,000 tokens/s), and the signal goes
// once stderr shows the work has begun.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cli_fixture.h"
#include "util/interrupt.h"

namespace kvlm {
namespace {

using namespace test::cli;
using Clock = std::chrono::steady_clock;

// About `n` tokens of plain prose, on one line.
std::string long_text(int n) {
  static const char* const kWords[] = {"the", "river", "carried", "old", "songs", "past",
                                       "quiet", "towns", "and", "golden", "fields"};
  std::string text;
  for (int i = 0; i < n; i++) text += std::string(i ? " " : "") + kWords[(i * 7 + i / 11) % 11];
  return text;
}

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("kvlm_ctrl_c_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

TEST(CtrlC, RunStopsDuringThePrefillAndWritesNothing) {
  KVLM_REQUIRE_MODEL();
  const fs::path dir = fresh_dir("run");
  std::ofstream(dir / "prompt.txt") << long_text(2500);
  Background kvlm_run("run " + model_flag() + " -n 4 -f " + (dir / "prompt.txt").string() +
                      " --json " + (dir / "out.json").string());
  ASSERT_TRUE(kvlm_run.wait_until([&] { return kvlm_run.err().find("loaded in") != std::string::npos; }))
      << kvlm_run.err();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // into the prefill
  const auto signalled = Clock::now();
  kvlm_run.signal(SIGINT);
  EXPECT_EQ(kvlm_run.finish(), kInterruptedExitStatus) << kvlm_run.err();
  // A layer of this prefill takes a fraction of a second (seconds under the sanitizers);
  // the whole prefill many times that.
  EXPECT_LT(seconds_since(signalled), 20.0);
  const std::string err = kvlm_run.err();
  EXPECT_EQ(err.substr(err.find('\n') + 1), "kvlm: interrupted (Ctrl-C)\n")
      << "one line after the banner";
  EXPECT_EQ(kvlm_run.out(), "");
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename(), "prompt.txt") << "no --json, not even a .partial";
  fs::remove_all(dir);
}

// Turn 2 (a long message) is interrupted in its prefill, turn 3 while its answer streams;
// turn 4 must then get the answer it gets in a chat where only turn 1 came before it.
// streaming evicts both at prefill and while decoding, so the cache cannot just be cut back.
// 48-token answers leave turn 3's stream ~0.15 s for its signal at 300 tokens/s.
TEST(CtrlC, ChatDropsTheInterruptedTurnsAndGoesOnAsIfTheyNeverHappened) {
  KVLM_REQUIRE_MODEL();
  const std::string flags = "chat " + model_flag() + " --temp 0 -n 16 --kv streaming:budget=64";
  const std::string first = "Hi! Who are you?\n", last = "What is the capital of France?\n";
  Background chat(flags, first + long_text(2500) + "\nTell me a long story about a dragon.\n" + last);

  const std::string answered = " full]\n";  // the end of the line after each answer
  ASSERT_TRUE(chat.wait_until([&] { return chat.count_in_err(answered) == 1; })) << chat.err();
  const size_t first_answer = chat.out().size();  // it ends with its newline
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // into turn 2's prefill
  chat.signal(SIGINT);
  ASSERT_TRUE(chat.wait_until([&] { return chat.count_in_err("(interrupted") == 1; })) << chat.err();
  ASSERT_TRUE(chat.wait_until([&] { return chat.out().size() > first_answer; })) << chat.err();
  chat.signal(SIGINT);  // turn 3 has begun to answer
  ASSERT_EQ(chat.finish(), 0) << chat.err();

  const std::string err = chat.err(), out = chat.out();
  EXPECT_EQ(chat.count_in_err("(interrupted: the turn is dropped"), 2) << err;
  EXPECT_EQ(chat.count_in_err(answered), 2) << "turns 1 and 4 answered:\n" << err;
  const Result reference = kvlm(flags, first + last);
  ASSERT_EQ(reference.status, 0) << reference.err;
  ASSERT_GT(reference.out.size(), first_answer);
  EXPECT_EQ(out.substr(0, first_answer), reference.out.substr(0, first_answer));
  const std::string last_answer = reference.out.substr(first_answer);
  ASSERT_GT(out.size(), first_answer + last_answer.size()) << "turn 3's partial answer shows";
  EXPECT_EQ(out.substr(out.size() - last_answer.size()), last_answer)
      << "turn 4 answers as if turns 2 and 3 never happened";
}

TEST(CtrlC, NeedleKeepsTheFinishedPromptsInItsJson) {
  KVLM_REQUIRE_MODEL();
  const fs::path dir = fresh_dir("needle");
  Background needle("needle " + model_flag() + " --ctx-list 256,1k --depths 0.5 --trials 1" +
                    " --json " + (dir / "n.json").string() + " --csv " + (dir / "n.csv").string() +
                    " --svg " + (dir / "n.svg").string());
  ASSERT_TRUE(needle.wait_until([&] { return needle.count_in_err("1/2 prompts") > 0; }))
      << needle.err();
  needle.signal(SIGINT);  // during the 1k prompt
  EXPECT_EQ(needle.finish(), kInterruptedExitStatus) << needle.err();
  EXPECT_NE(needle.err().find("needle: interrupted (Ctrl-C) after 1 of 2 prompts; " +
                              (dir / "n.json").string() + " holds the finished ones\n"),
            std::string::npos) << needle.err();
  EXPECT_EQ(needle.out(), "") << "no table of part of the grid";
  const nlohmann::json j = nlohmann::json::parse(slurp(dir / "n.json"));
  EXPECT_EQ(j["interrupted"], true);
  EXPECT_EQ(j["prompts_planned"], 2);
  ASSERT_EQ(j["trials_detail"].size(), 1u);
  EXPECT_EQ(j["trials_detail"][0]["ctx"], 256);
  EXPECT_EQ(j["cells"].size(), 1u);
  for (const fs::directory_entry& e : fs::directory_iterator(dir))
    EXPECT_EQ(e.path().filename(), "n.json") << "no CSV, SVG or .partial";
  fs::remove_all(dir);
}

}  // namespace
}  // namespace kvlm
