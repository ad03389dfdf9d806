#include "eval/tasks.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "eval/rng.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

const std::vector<std::pair<std::string, Task>> kTasks = {
    {"passkey", Task::Passkey},       {"single", Task::Single},
    {"multikey", Task::MultiKey},     {"multivalue", Task::MultiValue},
    {"multiquery", Task::MultiQuery}, {"vartrack", Task::VarTrack}};

// Needle keys: concrete words the essay generator never uses.
const std::vector<std::string> kKeyWords = {
    "violin", "compass", "saffron", "glacier", "falcon", "marble", "cactus", "trumpet",
    "pepper", "jasmine", "hammock", "volcano", "walnut", "lobster", "pyramid", "tulip",
    "kettledrum", "meteor", "canyon", "parrot", "sapphire", "tornado", "pelican", "cinnamon",
    "igloo", "mango", "zeppelin", "harp", "octopus", "emerald", "bamboo", "penguin",
    "telescope", "lagoon", "avocado", "flamingo", "quartz", "banjo", "coconut", "walrus"};

// Distinct random numbers of `digits` digits (no leading zero).
std::vector<std::string> distinct_numbers(SplitMix64& rng, int count, int digits) {
  const uint64_t low = uint64_t(std::pow(10, digits - 1));
  std::vector<std::string> out;
  while (int(out.size()) < count) {
    std::string n = std::to_string(low + rng.next() % (9 * low));
    if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
  }
  return out;
}

std::vector<std::string> distinct_key_words(SplitMix64& rng, int count) {
  std::vector<std::string> words = kKeyWords;
  for (int i = 0; i < count; i++) std::swap(words[i], words[i + rng.below(int(words.size()) - i)]);
  words.resize(count);
  return words;
}

std::vector<std::string> distinct_names(SplitMix64& rng, int count) {
  std::vector<std::string> out;
  while (int(out.size()) < count) {
    std::string name(5, 'A');
    for (char& c : name) c = char('A' + rng.below(26));
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
  }
  return out;
}

// "a", "a and b", "a, b and c"
std::string listed(const std::vector<std::string>& items) {
  std::string s;
  for (size_t i = 0; i < items.size(); i++)
    s += (i == 0 ? "" : i + 1 == items.size() ? " and " : ", ") + items[i];
  return s;
}

struct Needle {
  std::string text;
  double depth;
};

// Everything in a prompt except the filler; drawn from (seed, trial) alone.
struct Content {
  std::string instruction, question, answer_prefix;
  std::vector<Needle> needles;  // the first is the one asked about
  Expected expected;
};

std::string number_sentence(const std::string& key, const std::string& value) {
  return "The hidden number that belongs to the word " + key + " is " + value + ".";
}

Content draw_content(const TaskOptions& o, SplitMix64& rng, double depth) {
  const std::string numbers_instruction =
      "Hidden numbers are scattered through the long text below, each one belonging to a "
      "word. Read the text carefully and remember them; you will be asked about them at the end.";
  const int n = o.needles;
  auto other_depth = [&] { return rng.uniform(); };
  Content c;
  switch (o.task) {
    case Task::Passkey: {
      const std::string key = distinct_numbers(rng, 1, 5)[0];
      c.instruction = "A pass key is hidden somewhere in the long text below, among many "
                      "sentences that do not matter. Find the pass key and remember it; you "
                      "will be asked for it at the end.";
      c.needles = {{"The pass key is " + key + ". Remember it. " + key + " is the pass key.", depth}};
      c.question = "What is the pass key?";
      c.answer_prefix = "The pass key is";
      c.expected = {AnswerKind::FirstNumber, {key}};
      break;
    }
    case Task::Single:
    case Task::MultiKey: {
      const int count = o.task == Task::Single ? 1 : n;
      const std::vector<std::string> keys = distinct_key_words(rng, count);
      const std::vector<std::string> values = distinct_numbers(rng, count, 7);
      c.instruction = numbers_instruction;
      for (int i = 0; i < count; i++)
        c.needles.push_back({number_sentence(keys[i], values[i]), i == 0 ? depth : other_depth()});
      c.question = "What is the hidden number that belongs to the word " + keys[0] + "?";
      c.answer_prefix = "The hidden number that belongs to the word " + keys[0] + " is";
      c.expected = {AnswerKind::FirstNumber, {values[0]}};
      break;
    }
    case Task::MultiValue: {
      const std::string key = distinct_key_words(rng, 1)[0];
      const std::vector<std::string> values = distinct_numbers(rng, n, 7);
      c.instruction = numbers_instruction;
      for (int i = 0; i < n; i++)
        c.needles.push_back({"One of the hidden numbers that belong to the word " + key + " is " +
                             values[i] + ".", i == 0 ? depth : other_depth()});
      c.question = "What are all the hidden numbers that belong to the word " + key + "?";
      c.answer_prefix = "The hidden numbers that belong to the word " + key + " are";
      c.expected = {AnswerKind::Numbers, values};
      break;
    }
    case Task::MultiQuery: {
      const std::vector<std::string> keys = distinct_key_words(rng, n);
      const std::vector<std::string> values = distinct_numbers(rng, n, 7);
      c.instruction = numbers_instruction;
      for (int i = 0; i < n; i++)
        c.needles.push_back({number_sentence(keys[i], values[i]), i == 0 ? depth : other_depth()});
      c.question = "What are the hidden numbers that belong to the words " + listed(keys) + "?";
      c.answer_prefix = "The hidden numbers that belong to the words " + listed(keys) + " are";
      c.expected = {AnswerKind::Numbers, values};
      break;
    }
    case Task::VarTrack: {
      // Two chains of n variables: the asked one from `depth` on, a distractor anywhere.
      const std::vector<std::string> names = distinct_names(rng, 2 * n);
      const std::vector<std::string> values = distinct_numbers(rng, 2, 5);
      c.instruction = "Variable assignments are scattered through the long text below. Follow "
                      "them carefully; you will be asked which variables end up holding a "
                      "given value.";
      for (int chain = 0; chain < 2; chain++) {
        std::vector<double> depths(n);
        for (double& d : depths) d = chain == 0 ? depth + (1 - depth) * rng.uniform() : rng.uniform();
        std::sort(depths.begin(), depths.end());
        if (chain == 0) depths[0] = depth;
        for (int i = 0; i < n; i++) {
          const std::string& name = names[chain * n + i];
          const std::string from = i == 0 ? values[chain] : "the value of variable " + names[chain * n + i - 1];
          c.needles.push_back({"Set variable " + name + " to " + from + ".", depths[i]});
        }
      }
      c.question = "Which variables hold the value " + values[0] + "? List all of them.";
      c.answer_prefix = "The variables that hold the value " + values[0] + " are";
      c.expected = {AnswerKind::Names, std::vector<std::string>(names.begin(), names.begin() + n)};
      break;
    }
  }
  return c;
}

std::vector<std::string> words_of(const std::string& s) {
  std::vector<std::string> words;
  std::istringstream in(s);
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// The filler sentences in reading order and, cut after `n_words` words, the haystack text
// with the needles placed at the sentence boundaries nearest their depths (measured in
// estimated tokens). Records where the needles start.
struct Filler {
  std::vector<Sentence> sentences;
  std::vector<std::vector<std::string>> words;  // of each sentence
  std::vector<int> tokens;                      // estimated tokens of each sentence

  int total_words() const {
    int n = 0;
    for (const auto& w : words) n += int(w.size());
    return n;
  }

  std::string render(int n_words, const std::vector<Needle>& needles,
                     std::vector<size_t>& needle_at) const {
    // The sentences that fit, the last one possibly cut short.
    std::vector<std::string> kept;
    std::vector<int> cumulative = {0};  // estimated tokens before each boundary
    for (size_t s = 0; s < sentences.size() && n_words > 0; s++) {
      const int take = std::min<int>(n_words, int(words[s].size()));
      n_words -= take;
      if (take == int(words[s].size())) {
        kept.push_back(sentences[s].text);
        cumulative.push_back(cumulative.back() + tokens[s]);
      } else {
        std::string cut;
        for (int i = 0; i < take; i++) cut += (i ? " " : "") + words[s][i];
        while (!cut.empty() && std::ispunct(static_cast<unsigned char>(cut.back()))) cut.pop_back();
        kept.push_back(cut + ".");
        cumulative.push_back(cumulative.back() + tokens[s] * take / int(words[s].size()));
      }
    }
    // Needles per boundary, in the order given (stable: a chain stays in order).
    std::vector<std::vector<size_t>> at_boundary(kept.size() + 1);
    for (size_t i = 0; i < needles.size(); i++) {
      const double target = needles[i].depth * cumulative.back();
      size_t best = 0;
      for (size_t b = 1; b < cumulative.size(); b++)
        if (std::fabs(cumulative[b] - target) < std::fabs(cumulative[best] - target)) best = b;
      at_boundary[best].push_back(i);
    }
    std::string text;
    needle_at.assign(needles.size(), 0);
    auto append = [&text](const std::string& sentence, bool paragraph) {
      if (!text.empty()) text += paragraph ? "\n\n" : " ";
      text += sentence;
    };
    for (size_t b = 0; b <= kept.size(); b++) {
      for (size_t i : at_boundary[b]) {
        append("", false);
        needle_at[i] = text.size();
        text += needles[i].text;
      }
      if (b < kept.size()) append(kept[b], sentences[b].new_paragraph);
    }
    return text;
  }
};

}  // namespace

Task parse_task(const std::string& name) {
  for (const auto& [n, task] : kTasks) {
    if (n == name) return task;
  }
  const std::string names = join(kTasks, ", ", [](const auto& entry) { return entry.first; });
  throw std::invalid_argument("--task " + name + ": unknown task (available: " + names + ")");
}

std::string task_name(Task task) {
  for (const auto& [n, t] : kTasks)
    if (t == task) return n;
  return "?";
}

PromptBuilder::PromptBuilder(const Tokenizer& tok, Framing framing, TaskOptions options,
                             uint64_t seed, std::vector<Sentence> haystack)
    : tok_(tok), framing_(std::move(framing)), options_(options), seed_(seed),
      haystack_(std::move(haystack)) {
  if (options_.needles < 1 || options_.needles > int(kKeyWords.size()))
    throw std::invalid_argument("--needles " + std::to_string(options_.needles) +
                                ": give 1 to " + std::to_string(kKeyWords.size()));
}

int PromptBuilder::answer_tokens() const {
  // Digits are one token each in most vocabularies, names about three, plus separators.
  switch (options_.task) {
    case Task::Passkey: return 12;
    case Task::Single:
    case Task::MultiKey: return 16;
    case Task::MultiValue:
    case Task::MultiQuery: return 10 * options_.needles + 8;
    case Task::VarTrack: return 6 * options_.needles + 8;
  }
  return 16;
}

Prompt PromptBuilder::build(int ctx, double depth, int trial) const {
  SplitMix64 content_rng(mix_seed({seed_, uint64_t(trial), 1}));
  const Content c = draw_content(options_, content_rng, depth);
  const int target = ctx - answer_tokens();

  const std::string head = framing_.before_user + c.instruction + "\n\n";
  const std::string tail = "\n\n" + c.question + framing_.after_user + c.answer_prefix;
  const std::vector<int32_t> tail_ids = tok_.encode(tail, false);
  auto context_tokens = [&](const std::string& haystack) {
    return int(tok_.encode(head + haystack, tok_.add_bos_default()).size());
  };

  // Enough filler: estimated tokens (each sentence alone) beyond the target.
  std::unique_ptr<SentenceSource> source =
      options_.task == Task::Passkey ? cycled_sentences(bland_sentences())
      : haystack_.empty()            ? essay_sentences(mix_seed({seed_, uint64_t(trial), 2}))
                                     : cycled_sentences(haystack_);
  Filler filler;
  for (int estimate = 0; estimate <= target;) {
    Sentence s = source->next();
    filler.tokens.push_back(int(tok_.encode(" " + s.text, false).size()));
    filler.words.push_back(words_of(s.text));
    filler.sentences.push_back(std::move(s));
    estimate += filler.tokens.back();
  }

  // The longest filler (in words) whose prompt fits the target.
  std::vector<size_t> needle_at;
  auto length = [&](int n_words) {
    return context_tokens(filler.render(n_words, c.needles, needle_at)) + int(tail_ids.size());
  };
  const int fixed = length(0);
  if (fixed > target)
    throw std::invalid_argument("a context of " + std::to_string(ctx) +
                                " tokens is too short for " + task_name(options_.task) +
                                ": its instruction, needles, question and answer take " +
                                std::to_string(fixed + answer_tokens()) + " tokens");
  int lo = 0, hi = filler.total_words();  // length(lo) <= target < length(hi)
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (length(mid) <= target ? lo : hi) = mid;
  }

  Prompt p;
  const std::string haystack = filler.render(lo, c.needles, needle_at);
  p.ids = tok_.encode(head + haystack, tok_.add_bos_default());
  p.question_start = int(p.ids.size());
  p.ids.insert(p.ids.end(), tail_ids.begin(), tail_ids.end());
  p.text = head + haystack + tail;
  p.haystack_begin = head.size();
  p.haystack_end = head.size() + haystack.size();
  for (size_t i = 0; i < needle_at.size(); i++)
    p.needles.push_back({head.size() + needle_at[i], head.size() + needle_at[i] + c.needles[i].text.size()});
  p.depth = depth;
  p.expected = c.expected;
  return p;
}

}  // namespace kvlm
