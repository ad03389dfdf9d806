// Filler text for the long-context tasks: an endless stream of sentences, either written
// on the fly by a small grammar (essay-like prose about a made-up town, different for
// every seed) or taken from the user's own text, or a few bland lines repeated (passkey).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kvlm {

struct Sentence {
  std::string text;            // one sentence, ending in its punctuation, no outer spaces
  bool new_paragraph = false;  // it opens a paragraph (a blank line before it)
};

class SentenceSource {
 public:
  virtual ~SentenceSource() = default;
  virtual Sentence next() = 0;
};

// Grammatical, varied prose from the seed alone; no digits, so numbers hidden in it stand
// out only by meaning, not by form.
std::unique_ptr<SentenceSource> essay_sentences(uint64_t seed);

// The given sentences in order, again from the start when they run out.
std::unique_ptr<SentenceSource> cycled_sentences(std::vector<Sentence> sentences);

// Passkey's filler: a handful of plain statements that say nothing.
std::vector<Sentence> bland_sentences();

// Splits a text into sentences at '.', '!' or '?' followed by white space; a blank line
// starts a paragraph; runs of white space inside a sentence become one space.
std::vector<Sentence> split_sentences(const std::string& text);

}  // namespace kvlm
