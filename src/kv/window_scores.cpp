#include "kv/window_scores.h"

#include <algorithm>
#include <stdexcept>

namespace kvlm {

namespace {

// Python's a // b (rounds towards -inf), which the official pyramid arithmetic relies on
// when max < min makes the step negative.
int floor_div(int a, int b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

}  // namespace

VotingParams read_voting_params(const std::string& method, const Params& params,
                                const VotingParams& defaults) {
  VotingParams v;
  v.window = params.get_int("window", defaults.window, 1);
  v.kernel = params.get_int("kernel", defaults.kernel, 1);
  if (v.kernel % 2 == 0)
    throw std::invalid_argument("--kv " + method + ": kernel=" + std::to_string(v.kernel) +
                                " must be odd (an even kernel shifts the pooled scores)");
  // get_choice falls back to the first choice.
  v.pool = parse_pool(params.get_choice("pool", defaults.pool == Pool::Max
                                                    ? std::vector<std::string>{"max", "avg"}
                                                    : std::vector<std::string>{"avg", "max"}));
  v.gqa = parse_group_reduce(params.get_choice(
      "gqa", defaults.gqa == GroupReduce::Mean ? std::vector<std::string>{"mean", "max"}
                                               : std::vector<std::string>{"max", "mean"}));
  return v;
}

std::string voting_spec(const VotingParams& voting, bool with_gqa) {
  std::string s = "window=" + std::to_string(voting.window) +
                  ",kernel=" + std::to_string(voting.kernel) +
                  ",pool=" + (voting.pool == Pool::Max ? "max" : "avg");
  if (with_gqa) s += std::string(",gqa=") + (voting.gqa == GroupReduce::Mean ? "mean" : "max");
  return s;
}

void check_window_below_budget(const std::string& method, const Budget& budget, int window) {
  if (budget.ratio == 0 && window >= budget.tokens)
    throw std::invalid_argument("--kv " + method + ": window=" + std::to_string(window) +
                                " must be smaller than budget=" + std::to_string(budget.tokens) +
                                " (the budget counts the window)");
}

std::vector<std::string> voting_param_keys(bool with_gqa) {
  std::vector<std::string> keys = {"budget", "ratio", "window", "kernel", "pool"};
  if (with_gqa) keys.push_back("gqa");
  return keys;
}

std::vector<std::pair<std::string, std::string>> voting_param_rows(const VotingParams& defaults,
                                                                   bool with_gqa,
                                                                   const std::string& budget_note) {
  const bool max_pool = defaults.pool == Pool::Max, mean_gqa = defaults.gqa == GroupReduce::Mean;
  std::vector<std::pair<std::string, std::string>> rows = {
      {"budget", std::to_string(kWindowMethodsBudget) + " (or ratio=r" + budget_note + ")"},
      {"window", std::to_string(defaults.window)},
      {"kernel", std::to_string(defaults.kernel)},
      {"pool", std::string(max_pool ? "max (or avg)" : "avg (or max)") +
                   "; kvpress's SnapKV pools by average"}};
  if (with_gqa) rows.push_back({"gqa", mean_gqa ? "mean (or max)" : "max (or mean)"});
  return rows;
}

std::vector<float> prefix_scores(const Observation& obs, int n_kv_heads, int kv_head,
                                 int prefix_len, const VotingParams& voting) {
  const auto& rows = obs.window_attention;
  const int group = int(rows.size()) / n_kv_heads;
  if (group == 0 || int(rows.size()) % n_kv_heads != 0 ||
      int(rows[size_t(kv_head) * group].size()) < prefix_len)
    throw std::logic_error("window voting: the window attention of layer " +
                           std::to_string(obs.layer) + " does not match the cache");
  return pool1d(group_scores(rows, kv_head, group, prefix_len, voting.gqa), voting.kernel,
                voting.pool);
}

void keep_with_window(KVCache& cache, int layer, int head, std::vector<int32_t> prefix_keep,
                      int window) {
  cache.compact(layer, head,
                with_window(std::move(prefix_keep), cache.length(layer, head), window));
}

void keep_top_prefix(KVCache& cache, const Observation& obs, int kv_head, int prefix_budget,
                     const VotingParams& voting) {
  const int prefix_len = cache.length(obs.layer, kv_head) - obs.window;
  if (prefix_budget >= prefix_len) return;
  const std::vector<float> scores =
      prefix_scores(obs, cache.n_kv_heads(), kv_head, prefix_len, voting);
  keep_with_window(cache, obs.layer, kv_head, top_k(scores, std::max(prefix_budget, 0)),
                   obs.window);
}

std::vector<int> top_k_counts(const std::vector<std::vector<float>>& segments, int k) {
  // Concatenated in segment order, top_k's lower-index tie rule becomes "earlier segment,
  // then lower index".
  std::vector<float> all;
  std::vector<size_t> ends;  // ends[s]: one past the last entry of segment s in `all`
  for (const std::vector<float>& segment : segments) {
    all.insert(all.end(), segment.begin(), segment.end());
    ends.push_back(all.size());
  }
  std::vector<int> counts(segments.size(), 0);
  for (int32_t i : top_k(all, k))
    counts[std::upper_bound(ends.begin(), ends.end(), size_t(i)) - ends.begin()]++;
  return counts;
}

std::vector<int> pyramid_prefix_budgets(int n_layers, int prefix_budget, int n_tokens, int window,
                                        int beta, PyramidRule rule) {
  const int P = std::max(prefix_budget, 0);
  const int prefix_len = n_tokens - window;
  const std::vector<int> uniform(n_layers, P);
  if (rule == PyramidRule::PyramidKV) {
    if (n_tokens < P + window) return std::vector<int>(n_layers, prefix_len);  // keep all
    if (n_tokens < 2 * P) return uniform;  // so that the bottom layer never asks for > prefix
  }
  if (P == 0 || n_layers == 1) return uniform;
  int min_b = P / beta, max_b = 2 * P - min_b;
  if (max_b >= prefix_len) {  // the bottom layer cannot keep more than the prefix
    max_b = prefix_len;
    min_b = 2 * P - max_b;
  }
  const int steps = n_layers - 1;
  std::vector<int> budgets(n_layers);
  if (rule == PyramidRule::Kvlm) {
    if (max_b < min_b) return uniform;
    // floor(max - l * (max - min) / steps) = max - ceil(l * (max - min) / steps)
    for (int l = 0; l < n_layers; l++)
      budgets[l] = max_b - (l * (max_b - min_b) + steps - 1) / steps;
  } else {
    const int step = floor_div(max_b - min_b, steps);
    for (int l = 0; l < n_layers; l++) budgets[l] = std::max(0, max_b - l * step);
  }
  return budgets;
}

}  // namespace kvlm
