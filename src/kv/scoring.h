// Building blocks of the score-based methods, written once: GQA reduction of per-query-
// head scores, 1-D pooling, top-k with deterministic ties, and window bookkeeping.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kvlm {

enum class Pool { Max, Avg };
enum class GroupReduce { Mean, Max };

Pool parse_pool(const std::string& name);             // "max" | "avg"
GroupReduce parse_group_reduce(const std::string& name);  // "mean" | "max"

// Scores of KV head `kv_head` from the per-query-head rows of its GQA group (query heads
// kv_head * group ... + group - 1), over the first `n` slots.
std::vector<float> group_scores(const std::vector<std::vector<float>>& per_query_head,
                                int kv_head, int group, int n, GroupReduce reduce);

// Same-size 1-D pooling with stride 1 and an odd kernel (torch semantics: max pads with
// -inf, avg divides by `kernel` including the zero padding). kernel 1 is the identity.
std::vector<float> pool1d(const std::vector<float>& scores, int kernel, Pool pool);

// Indices of the k largest scores in ascending index order; equal scores prefer the
// lower index. k >= scores.size() keeps everything.
std::vector<int32_t> top_k(const std::vector<float>& scores, int k);

// keep (ascending, all < len - window) followed by the window's slots [len - window, len).
std::vector<int32_t> with_window(std::vector<int32_t> keep, int len, int window);

}  // namespace kvlm
