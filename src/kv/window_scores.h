// Observation-window voting, shared by the SnapKV family (snapkv, pyramidkv, adakv,
// dynamickv): parameters, per-KV-head prefix scores, selection with the window kept,
// global top-k counts (Ada-KV across heads, DynamicKV across layers) and the PyramidKV
// layer budgets (pyramidkv, and adakv's pyramid=1).
//
// Slots of a head during a prefill call: the last obs.window slots are the window (always
// kept); the slots before them are the prefix, the only ones ever evicted.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "kv/kv_cache.h"
#include "kv/scoring.h"
#include "kv/strategies/strategies.h"
#include "kv/strategy.h"

namespace kvlm {

// How window votes become prefix scores.
struct VotingParams {
  int window = 32;  // observer queries: the last `window` new tokens
  int kernel = 7;   // pooling kernel along the prefix (odd; 1 = off)
  Pool pool = Pool::Max;
  GroupReduce gqa = GroupReduce::Mean;  // query heads of a GQA group -> one KV-head score
};

// The family's defaults, from SnapKV's LongBench runs (window 32, kernel 7, max pooling);
// snapkv, pyramidkv and adakv keep them, dynamickv changes window and pooling.
constexpr int kWindowMethodsBudget = 128;
constexpr VotingParams kSnapKVVoting = {32, 7, Pool::Max, GroupReduce::Mean};

// Reads window= (>= 1), kernel= (odd, >= 1), pool= (max|avg) and gqa= (mean|max), each
// falling back to `defaults`. Throws std::invalid_argument naming `method`.
VotingParams read_voting_params(const std::string& method, const Params& params,
                                const VotingParams& defaults);
// "window=32,kernel=7,pool=max" and, with with_gqa, ",gqa=mean" (for name()).
std::string voting_spec(const VotingParams& voting, bool with_gqa);
// The parameter keys a family method takes before its own: budget, ratio, window, kernel,
// pool (and gqa).
std::vector<std::string> voting_param_keys(bool with_gqa);
// The same as `kvlm methods` rows (name -> default), the budget described by budget_note.
std::vector<std::pair<std::string, std::string>> voting_param_rows(const VotingParams& defaults,
                                                                   bool with_gqa,
                                                                   const std::string& budget_note);
// A fixed budget counts the window, so it must leave room for at least one prefix token.
void check_window_below_budget(const std::string& method, const Budget& budget, int window);

// Pooled scores of the `prefix_len` first slots of KV head `kv_head` in obs.layer: the
// window attention of the head's query heads, reduced over the GQA group, then pooled.
// The group size is window_attention.size() / n_kv_heads.
std::vector<float> prefix_scores(const Observation& obs, int n_kv_heads, int kv_head,
                                 int prefix_len, const VotingParams& voting);

// Compacts one head to `prefix_keep` (ascending prefix slots) followed by its last
// `window` slots.
void keep_with_window(KVCache& cache, int layer, int head, std::vector<int32_t> prefix_keep,
                      int window);

// Keeps the `prefix_budget` best-scoring prefix slots of a head plus the window
// (everything when the prefix already fits; prefix_budget <= 0 keeps the window only).
void keep_top_prefix(KVCache& cache, const Observation& obs, int kv_head, int prefix_budget,
                     const VotingParams& voting);

// How many of the k largest values of all segments together lie in each segment. Equal
// values prefer the earlier segment, then the lower index (deterministic counts).
std::vector<int> top_k_counts(const std::vector<std::vector<float>>& segments, int k);

// Whose arithmetic pyramid_prefix_budgets follows.
enum class PyramidRule {
  Kvlm,       // exact line floor(max - l*(max-min)/(L-1)): the total never exceeds L*P;
              // uniform when max < min (tiny prompts)
  PyramidKV,  // KVCache-Factory: floored step first (total may exceed L*P); n < budget keeps
              // everything; n < 2P is uniform
  AdaKV,      // Ada-KV's pyram_mode: floored step, no uniform branches (budgets may grow
              // with depth on tiny prompts)
};

// Prefix tokens (window excluded) per layer, bottom layer first, for an average of
// `prefix_budget` = budget - window per layer, a prompt of `n_tokens` tokens and the
// pyramid's flatness `beta`: min = P // beta, max = 2P - min, clamped so that max does not
// exceed the prefix n - window. A value >= the prefix means "keep the layer whole".
// One layer (no slope to draw) gets the uniform P.
std::vector<int> pyramid_prefix_budgets(int n_layers, int prefix_budget, int n_tokens, int window,
                                        int beta, PyramidRule rule);

}  // namespace kvlm
