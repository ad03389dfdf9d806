// The evaluation prompts, measured with the default model's tokenizer: every task hits the
// requested length within 1%, puts its needle at the requested depth within one sentence,
// and gives the same prompt for the same seed; the built-in haystack is varied prose.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "eval/eval_commands.h"
#include "eval/haystack.h"
#include "eval/tasks.h"
#include "model_fixture.h"

namespace kvlm {
namespace {

using test::default_model;

const Tokenizer& tokenizer() { return default_model().file.tokenizer(); }

int tokens(const std::string& text) { return int(tokenizer().encode(text, false).size()); }

const Framing kChat = {"<|im_start|>user\n", "<|im_end|>\n<|im_start|>assistant\n"};

std::vector<Task> all_tasks() {
  return {Task::Passkey, Task::Single, Task::MultiKey, Task::MultiValue, Task::MultiQuery,
          Task::VarTrack};
}

TEST(EvalPrompts, EveryTaskHitsTheLengthWithinOnePercent) {
  KVLM_REQUIRE_MODEL();
  for (Task task : all_tasks()) {
    for (const Framing& framing : {Framing{}, kChat}) {
      PromptBuilder builder(tokenizer(), framing, {task, 4}, 7);
      for (int ctx : {600, 1024, 3000}) {
        const Prompt p = builder.build(ctx, 0.4, 0);
        const int target = ctx - builder.answer_tokens();
        SCOPED_TRACE(task_name(task) + " at " + std::to_string(ctx));
        EXPECT_LE(int(p.ids.size()), target) << "the answer must fit in ctx";
        EXPECT_GE(int(p.ids.size()), target - std::max(1, target / 100));
        EXPECT_EQ(p.ids, tokenizer().encode(p.text, tokenizer().add_bos_default()))
            << "the ids are the text's own tokens";
        EXPECT_EQ(std::vector<int32_t>(p.ids.begin(), p.ids.begin() + p.question_start),
                  tokenizer().encode(p.text.substr(0, p.haystack_end), tokenizer().add_bos_default()))
            << "the context part ends where the haystack ends";
        EXPECT_EQ(p.text.rfind(framing.before_user, 0), 0u);
      }
    }
  }
}

// Tokens of the filler alone (needles left out) between the haystack start and `end`.
int filler_tokens_before(const Prompt& p, size_t end) {
  std::string filler;
  size_t at = p.haystack_begin;
  std::vector<std::pair<size_t, size_t>> needles = p.needles;
  std::sort(needles.begin(), needles.end());
  for (const auto& [b, e] : needles) {
    if (b >= end) break;
    filler += p.text.substr(at, b - at);
    at = e;
  }
  filler += p.text.substr(at, end - std::min(end, at));
  return tokens(filler);
}

TEST(EvalPrompts, TheNeedleSitsAtTheDepthWithinOneSentence) {
  KVLM_REQUIRE_MODEL();
  for (Task task : all_tasks()) {
    PromptBuilder builder(tokenizer(), {}, {task, 4}, 11);
    for (double depth : {0.0, 0.1, 0.25, 0.5, 0.77, 1.0}) {
      const Prompt p = builder.build(2048, depth, 1);
      SCOPED_TRACE(task_name(task) + " at depth " + std::to_string(depth));
      const int total = filler_tokens_before(p, p.haystack_end);
      const int before = filler_tokens_before(p, p.needles[0].first);
      int longest_sentence = 0;
      for (const Sentence& s : split_sentences(p.text.substr(p.haystack_begin, p.haystack_end - p.haystack_begin)))
        longest_sentence = std::max(longest_sentence, tokens(" " + s.text));
      EXPECT_LE(std::abs(before - depth * total), longest_sentence)
          << before << " of " << total << " filler tokens come before the needle";
      // The needle is whole and on a sentence boundary.
      const size_t b = p.needles[0].first;
      EXPECT_TRUE(b == p.haystack_begin || p.text.compare(b - 2, 2, ". ") == 0 ||
                  p.text.compare(b - 1, 1, "\n") == 0)
          << p.text.substr(b - 10, 30);
    }
  }
}

TEST(EvalPrompts, TheSameSeedGivesTheSamePrompt) {
  KVLM_REQUIRE_MODEL();
  PromptBuilder a(tokenizer(), {}, {Task::MultiKey, 4}, 42), b(tokenizer(), {}, {Task::MultiKey, 4}, 42);
  PromptBuilder other_seed(tokenizer(), {}, {Task::MultiKey, 4}, 43);
  const Prompt p = a.build(1024, 0.3, 2);
  EXPECT_EQ(p.ids, b.build(1024, 0.3, 2).ids);
  EXPECT_NE(p.expected.items, other_seed.build(1024, 0.3, 2).expected.items);
  EXPECT_NE(p.expected.items, a.build(1024, 0.3, 3).expected.items) << "each trial its own key";
  // Depth and length move the needle, never change what is hidden.
  EXPECT_EQ(p.expected.items, a.build(1024, 0.9, 2).expected.items);
  EXPECT_EQ(p.expected.items, a.build(2048, 0.3, 2).expected.items);
  const Prompt deeper = a.build(1024, 0.9, 2);
  EXPECT_EQ(p.text.substr(p.needles[0].first, p.needles[0].second - p.needles[0].first),
            deeper.text.substr(deeper.needles[0].first, deeper.needles[0].second - deeper.needles[0].first));
  EXPECT_GT(deeper.needles[0].first, p.needles[0].first);
}

TEST(EvalPrompts, TheTasksHideWhatTheyAskFor) {
  KVLM_REQUIRE_MODEL();
  for (Task task : all_tasks()) {
    PromptBuilder builder(tokenizer(), {}, {task, 3}, 5);
    const Prompt p = builder.build(1024, 0.5, 0);
    SCOPED_TRACE(task_name(task));
    const std::string haystack = p.text.substr(p.haystack_begin, p.haystack_end - p.haystack_begin);
    for (const std::string& item : p.expected.items)
      EXPECT_NE(haystack.find(item), std::string::npos) << item << " is hidden in the haystack";
    const std::string question = p.text.substr(p.haystack_end);
    const size_t expected_needles = task == Task::Passkey || task == Task::Single ? 1
                                    : task == Task::VarTrack                    ? 6
                                                                                : 3;
    EXPECT_EQ(p.needles.size(), expected_needles);
    if (task == Task::VarTrack) {
      EXPECT_EQ(p.expected.items.size(), 3u);
    }
    if (task == Task::MultiQuery)
      for (const auto& [b, e] : p.needles) {  // every key is asked about
        const std::string needle = p.text.substr(b, e - b);
        const std::string key = needle.substr(needle.find("word ") + 5, needle.find(" is ") - needle.find("word ") - 5);
        EXPECT_NE(question.find(key), std::string::npos) << key;
      }
  }
}

TEST(EvalPrompts, AUsersHaystackIsUsedAndCycled) {
  KVLM_REQUIRE_MODEL();
  std::vector<Sentence> mine = split_sentences("Tea is hot. Snow is cold.\n\nRivers flow downhill!");
  PromptBuilder builder(tokenizer(), {}, {Task::Single, 1}, 3, mine);
  const Prompt p = builder.build(512, 0.5, 0);
  const std::string haystack = p.text.substr(p.haystack_begin, p.haystack_end - p.haystack_begin);
  EXPECT_EQ(haystack.rfind("Tea is hot. Snow is cold.\n\nRivers flow downhill! Tea is hot.", 0), 0u) << haystack;
  EXPECT_GE(int(p.ids.size()), (512 - builder.answer_tokens()) * 99 / 100);
}

TEST(EvalPrompts, ContextTooShortForTheTaskIsRefused) {
  KVLM_REQUIRE_MODEL();
  PromptBuilder builder(tokenizer(), {}, {Task::MultiQuery, 8}, 1);
  EXPECT_THROW(builder.build(100, 0.5, 0), std::invalid_argument);
}

TEST(EvalHaystack, EssayTextIsVariedDeterministicAndDigitFree) {
  auto a = essay_sentences(1), b = essay_sentences(1), c = essay_sentences(2);
  std::set<std::string> distinct;
  int paragraphs = 0;
  bool differs = false;
  for (int i = 0; i < 600; i++) {
    const Sentence s = a->next();
    EXPECT_EQ(s.text, b->next().text);
    differs |= s.text != c->next().text;
    distinct.insert(s.text);
    paragraphs += s.new_paragraph;
    EXPECT_TRUE(std::isupper(static_cast<unsigned char>(s.text[0]))) << s.text;
    EXPECT_EQ(s.text.back(), '.') << s.text;
    EXPECT_EQ(s.text.find_first_of("0123456789"), std::string::npos) << s.text;
    EXPECT_EQ(s.text.find("  "), std::string::npos) << s.text;
  }
  EXPECT_TRUE(differs) << "another seed, another text";
  EXPECT_GE(distinct.size(), 590u) << "sentences rarely repeat";
  EXPECT_GE(paragraphs, 600 / 8 - 1);
  EXPECT_LE(paragraphs, 600 / 4);
}

TEST(EvalHaystack, SplitSentencesKeepsParagraphsAndSqueezesSpaces) {
  const std::vector<Sentence> s =
      split_sentences("  First one.  Second\n one?\n\n\nThird! Tail without a stop\n\nLast.");
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].text, "First one.");
  EXPECT_EQ(s[1].text, "Second one?");
  EXPECT_FALSE(s[1].new_paragraph);
  EXPECT_EQ(s[2].text, "Third!");
  EXPECT_TRUE(s[2].new_paragraph);
  EXPECT_EQ(s[3].text, "Tail without a stop");
  EXPECT_FALSE(s[3].new_paragraph);
  EXPECT_TRUE(s[4].new_paragraph);
  EXPECT_TRUE(split_sentences(" \n\n ").empty());
}

TEST(EvalFlags, DepthsAndLengthsParseOrFailNamingTheFlag) {
  EXPECT_EQ(parse_depths("0:1:0.25", "--depths"), (std::vector<double>{0, 0.25, 0.5, 0.75, 1}));
  EXPECT_EQ(parse_depths("0:1:0.1", "--depths").size(), 11u);
  EXPECT_EQ(parse_depths("0.5", "--depths"), (std::vector<double>{0.5}));
  EXPECT_EQ(parse_depths("0,0.5,1", "--depths"), (std::vector<double>{0, 0.5, 1}));
  for (const char* bad : {"1.5", "-0.1", "0:2:0.5", "1:0:0.1", "0:1:0", "x", "", "0:1"}) {
    try {
      parse_depths(bad, "--depths");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("--depths"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(parse_token_count("4k", "--ctx"), 4096);
  EXPECT_EQ(parse_token_count("1500", "--ctx"), 1500);
  EXPECT_EQ(parse_token_count("0.5k", "--ctx"), 512);
  for (const char* bad : {"4kk", "-1", "0", "1.5", "abc", ""})
    EXPECT_THROW(parse_token_count(bad, "--ctx"), std::invalid_argument) << bad;
  EXPECT_THROW(parse_task("needles"), std::invalid_argument);
  EXPECT_EQ(parse_task("vartrack"), Task::VarTrack);
}

}  // namespace
}  // namespace kvlm
