#include "sample.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/text_format.h"

namespace kvlm {

int32_t argmax(const std::vector<float>& v) {
  return int32_t(std::max_element(v.begin(), v.end()) - v.begin());
}

SamplingParams with_model_hints(SamplingParams p, const SamplingHints& hints,
                                const SamplingFlagsGiven& given) {
  if (hints.temperature && !given.temperature) p.temperature = *hints.temperature;
  if (hints.top_k && !given.top_k) p.top_k = *hints.top_k;
  if (hints.top_p && !given.top_p) p.top_p = *hints.top_p;
  if (hints.min_p && !given.min_p) p.min_p = *hints.min_p;
  return p;
}

std::string hints_used(const SamplingHints& hints, const SamplingFlagsGiven& given) {
  std::vector<std::string> used;
  auto add = [&](bool hinted, bool overridden, const char* name) {
    if (hinted && !overridden) used.push_back(name);
  };
  add(bool(hints.temperature), given.temperature, "temperature");
  add(bool(hints.top_k), given.top_k, "top-k");
  add(bool(hints.top_p), given.top_p, "top-p");
  add(bool(hints.min_p), given.min_p, "min-p");
  return used.empty() ? "" : join(used, ", ") + " from " + hints.source;
}

std::string describe(const SamplingParams& p) {
  if (p.temperature <= 0) return "greedy";
  std::string text = "temperature " + format_number(p.temperature);
  text += p.top_k > 0 ? ", top-k " + std::to_string(p.top_k) : ", top-k off";
  text += p.top_p < 1 ? ", top-p " + format_number(p.top_p) : ", top-p off";
  text += p.min_p > 0 ? ", min-p " + format_number(p.min_p) : ", min-p off";
  return text;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), state_(params.seed) {}

// splitmix64: tiny, fast, and the same sequence everywhere (std:: distributions are not).
double Sampler::uniform() {
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return double(z >> 11) * 0x1.0p-53;
}

int32_t Sampler::sample(std::vector<float> logits, const std::vector<int32_t>& history) {
  const SamplingParams& p = params_;
  if (p.repeat_penalty != 1.0f) {
    // Each recent token is penalised once, however often it occurred (as in llama.cpp).
    std::vector<int32_t> recent(history.end() - std::min<size_t>(history.size(), p.repeat_last_n),
                                history.end());
    std::sort(recent.begin(), recent.end());
    recent.erase(std::unique(recent.begin(), recent.end()), recent.end());
    for (int32_t id : recent) {
      float& l = logits[id];
      l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;
    }
  }
  if (p.temperature <= 0) return argmax(logits);

  // Candidates sorted by logit, best first; each filter shortens the list.
  std::vector<int32_t> ids(logits.size());
  std::iota(ids.begin(), ids.end(), 0);
  size_t n = ids.size();
  if (p.top_k > 0) n = std::min<size_t>(n, p.top_k);
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });

  // top-p and min-p judge the untempered distribution; temperature shapes the final draw.
  std::vector<double> prob(n);
  double total = 0;
  for (size_t i = 0; i < n; i++) total += prob[i] = std::exp(double(logits[ids[i]]) - logits[ids[0]]);
  if (p.top_p < 1.0f) {
    double cumulative = 0;
    for (size_t i = 0; i < n; i++) {
      cumulative += prob[i] / total;
      if (cumulative >= p.top_p) {
        n = i + 1;
        break;
      }
    }
  }
  if (p.min_p > 0) {
    size_t keep = 1;  // prob[0] is the best token's, relative weight 1
    while (keep < n && prob[keep] >= p.min_p) keep++;
    n = keep;
  }

  std::vector<double> weight(n);
  double sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += weight[i] = std::exp((double(logits[ids[i]]) - logits[ids[0]]) / p.temperature);
  double r = uniform() * sum;
  for (size_t i = 0; i < n; i++) {
    r -= weight[i];
    if (r < 0) return ids[i];
  }
  return ids[n - 1];
}

}  // namespace kvlm
