// The long-context tasks' prompts: an instruction, a haystack of filler sentences with one
// or more needles hidden at a chosen depth, and a question that starts its own answer.
// A prompt is fitted to an exact length in the model's own tokens, and everything random
// in it comes from (seed, trial), so every method and every depth sees the same content.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "eval/haystack.h"
#include "eval/score.h"
#include "tokenizer/tokenizer.h"

namespace kvlm {

enum class Task { Passkey, Single, MultiKey, MultiValue, MultiQuery, VarTrack };

// "passkey", "single", "multikey", "multivalue", "multiquery", "vartrack".
Task parse_task(const std::string& name);  // throws std::invalid_argument listing them
std::string task_name(Task task);

struct TaskOptions {
  Task task = Task::Passkey;
  // multikey: needles in all (one asked, the rest distractors); multivalue: values of the
  // key; multiquery: keys asked at once; vartrack: variables in the chain (and in the
  // distractor chain).
  int needles = 4;
};

// How a user message becomes the text the model reads: raw completion, or a chat
// template's turn around the message. The answer's first words follow `after_user`.
struct Framing {
  std::string before_user;
  std::string after_user = " ";
};

struct Prompt {
  std::vector<int32_t> ids;
  int question_start = 0;  // ids[0, question_start) = context; the rest = question + answer start
  std::string text;        // the prompt as text; its tokens are `ids`
  size_t haystack_begin = 0, haystack_end = 0;  // the filler, needles included, in text
  // [begin, end) of each needle in text; the first is the one asked about (vartrack: the
  // chain's first assignment).
  std::vector<std::pair<size_t, size_t>> needles;
  double depth = 0;
  Expected expected;
};

class PromptBuilder {
 public:
  // haystack: the user's sentences (--haystack), or empty for the built-in generator.
  PromptBuilder(const Tokenizer& tok, Framing framing, TaskOptions options, uint64_t seed,
                std::vector<Sentence> haystack = {});

  // Tokens the answer may take: the generation limit, counted inside --ctx.
  int answer_tokens() const;
  // A prompt of ctx - answer_tokens() tokens (a word or two less when a word does not fit),
  // first needle at depth in [0, 1] of the filler (0 = start), on a sentence boundary.
  // Throws std::invalid_argument when ctx cannot hold the task's fixed text.
  Prompt build(int ctx, double depth, int trial) const;

 private:
  const Tokenizer& tok_;
  Framing framing_;
  TaskOptions options_;
  uint64_t seed_;
  std::vector<Sentence> haystack_;
};

}  // namespace kvlm
