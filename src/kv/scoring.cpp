#include "kv/scoring.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace kvlm {

Pool parse_pool(const std::string& name) {
  if (name == "max") return Pool::Max;
  if (name == "avg") return Pool::Avg;
  throw std::invalid_argument("pool=" + name + " (valid: max, avg)");
}

GroupReduce parse_group_reduce(const std::string& name) {
  if (name == "mean") return GroupReduce::Mean;
  if (name == "max") return GroupReduce::Max;
  throw std::invalid_argument("gqa=" + name + " (valid: mean, max)");
}

std::vector<float> group_scores(const std::vector<std::vector<float>>& per_query_head,
                                int kv_head, int group, int n, GroupReduce reduce) {
  std::vector<float> out(n, reduce == GroupReduce::Max ? -INFINITY : 0.0f);
  for (int g = 0; g < group; g++) {
    const std::vector<float>& row = per_query_head[size_t(kv_head) * group + g];
    for (int j = 0; j < n; j++)
      out[j] = reduce == GroupReduce::Max ? std::max(out[j], row[j]) : out[j] + row[j] / group;
  }
  return out;
}

std::vector<float> pool1d(const std::vector<float>& scores, int kernel, Pool pool) {
  if (kernel < 1 || kernel % 2 == 0)
    throw std::invalid_argument("kernel=" + std::to_string(kernel) + " (must be odd and >= 1)");
  const int n = int(scores.size()), r = kernel / 2;
  std::vector<float> out(n);
  for (int j = 0; j < n; j++) {
    float acc = pool == Pool::Max ? -INFINITY : 0.0f;
    for (int i = std::max(0, j - r); i <= std::min(n - 1, j + r); i++)
      acc = pool == Pool::Max ? std::max(acc, scores[i]) : acc + scores[i];
    out[j] = pool == Pool::Max ? acc : acc / kernel;
  }
  return out;
}

std::vector<int32_t> top_k(const std::vector<float>& scores, int k) {
  std::vector<int32_t> idx(scores.size());
  std::iota(idx.begin(), idx.end(), 0);
  if (k >= int(idx.size())) return idx;
  if (k <= 0) return {};
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
  });
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int32_t> with_window(std::vector<int32_t> keep, int len, int window) {
  for (int j = std::max(0, len - window); j < len; j++) keep.push_back(j);
  return keep;
}

}  // namespace kvlm
