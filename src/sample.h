// Choosing the next token from logits: greedy, or temperature sampling narrowed by
// top-k, top-p (nucleus) and min-p, after a repetition penalty. Seeded and reproducible.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace kvlm {

struct SamplingParams {
  float temperature = 0.8f;    // <= 0: greedy (argmax)
  int top_k = 40;              // <= 0: off
  float top_p = 0.95f;         // >= 1: off
  float min_p = 0.05f;         // <= 0: off; drops tokens below min_p * p(best)
  float repeat_penalty = 1.0f; // 1: off; > 1 discourages tokens seen in the last repeat_last_n
  int repeat_last_n = 64;
  uint64_t seed = 42;
};

// Which of the sampling flags a user gave: those keep the user's values.
struct SamplingFlagsGiven {
  bool temperature = false, top_k = false, top_p = false, min_p = false;
};

// p with the checkpoint's recommendations in place of kvlm's defaults, for every flag the
// user did not give (given: the user's).
SamplingParams with_model_hints(SamplingParams p, const SamplingHints& hints,
                                const SamplingFlagsGiven& given);
// Which hints took effect, e.g. "temperature, top-p from generation_config.json"; "" if none.
std::string hints_used(const SamplingHints& hints, const SamplingFlagsGiven& given);
// "temperature 0.2, top-k 40, top-p 0.9, min-p 0.05" (greedy: "greedy").
std::string describe(const SamplingParams& p);

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);
  // history: tokens so far (prompt + generated), for the repetition penalty.
  int32_t sample(std::vector<float> logits, const std::vector<int32_t>& history);
  const SamplingParams& params() const { return params_; }

 private:
  double uniform();  // [0, 1), from a 64-bit generator so runs repeat across platforms
  SamplingParams params_;
  uint64_t state_;
};

// Index of the largest value; the lowest index wins ties.
int32_t argmax(const std::vector<float>& v);

}  // namespace kvlm
