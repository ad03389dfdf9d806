// Running a grid of prompts (methods x contexts x depths x trials) through one Session:
// prefill, compression by the method, a short greedy answer, the exact score.
#pragma once
#include <string>
#include <vector>

#include <functional>

#include "eval/kept.h"
#include "eval/progress.h"
#include "eval/tasks.h"
#include "session.h"

namespace kvlm {

// Whether the question is in the prompt when the method compresses it (aware), or is
// appended afterwards to the compressed context (agnostic, the harder reading).
enum class QueryMode { Aware, Agnostic };
QueryMode parse_query_mode(const std::string& name);  // throws std::invalid_argument
inline std::string query_mode_name(QueryMode mode) {
  return mode == QueryMode::Aware ? "aware" : "agnostic";
}

struct TrialOutcome {
  Score score;
  std::string answer;  // what the model wrote
  int prompt_tokens = 0;
  double prefill_seconds = 0;
  int generated_tokens = 0;
  double decode_seconds = 0;
  size_t kv_bytes_held = 0, kv_bytes_full = 0;  // once the prompt is in, before the answer
};

// One prompt through the session's current method: the answer is greedy, at most
// max_tokens long, and ends at an end-of-generation token or a blank line. after_prefill
// (optional) sees the cache once the whole prompt is in. With `shared`, the session's
// shared prefill (Session::prefill_shared) of the prompt (aware) or of its context
// (agnostic) stands in for the method's own; its time counts as this trial's prefill.
TrialOutcome run_trial(Session& session, const Prompt& prompt, QueryMode mode, int max_tokens,
                       const std::function<void()>& after_prefill = {}, bool shared = false);

// One KV method of a grid, with the labels a report shows for it.
struct MethodRun {
  std::string spec;    // the --kv spec it runs with
  std::string method;  // row label, e.g. "snapkv"
  std::string budget;  // column label, e.g. "budget=128"; "" when the method has no budget
};

struct EvalGrid {
  std::vector<MethodRun> methods;
  std::vector<int> ctx_list;
  std::vector<double> depths;  // empty: each trial draws its own depth from the seed
  int trials = 1;
  uint64_t seed = 0;
  QueryMode mode = QueryMode::Aware;
  // Prefill each prompt once for all methods (Session::prefill_shared); false: each
  // method prefills it itself (--no-share-prefill), the reference the shared path equals.
  bool share_prefill = true;
  // Shard `shard` of `shards`: only the prompts whose index % shards == shard run, so that
  // N machines can split a grid and `kvlm merge` can put it together again.
  int shard = 0, shards = 1;
  // Keep, in each record, the original positions every layer and KV head held after the
  // prefill (the method's decisions), for --json-kept.
  bool record_kept = false;
};

struct TrialRecord {
  int method = 0;  // index into EvalGrid::methods
  int ctx = 0;
  double depth = 0;
  int trial = 0;
  Expected expected;
  TrialOutcome outcome;
  int prompt = 0;  // index in run_grid's order of prompts (context, trial, depth)
  // [layer][KV head] original positions kept after the prefill; empty unless the grid
  // records them.
  std::vector<std::vector<std::vector<int32_t>>> kept;
};

// Prompts run_grid builds: contexts x trials x depths (one seeded depth per trial when
// the grid lists none).
int prompt_count(const EvalGrid& grid);
// "--kept-prompt N: the run has 2 prompts (0..1)": what a prompt index past the grid says.
std::string prompt_index_error(int index, const EvalGrid& grid);

// What every method kept of one prompt of a grid, for a kept map.
struct KeptCapture {
  int prompt = 0;                 // index in run_grid's order (context, trial, depth)
  Prompt drawn;                   // filled by run_grid: that prompt
  std::vector<KeptPanel> panels;  // filled by run_grid: one per method
};

struct GridRun {
  std::vector<TrialRecord> records;  // every prompt that finished, in run order
  int planned = 0;                   // prompts the grid holds, over all methods
  bool interrupted = false;          // Ctrl-C stopped it: records hold what finished before
};

// Every prompt is built once and shared by all methods. With share_prefill (and several
// methods) each prompt is prefilled once and every method runs on it in turn; otherwise
// method-major order, so a method's cells finish together. Records come back in
// method-major order either way; the progress line follows along. `kept` (optional) captures
// what each method kept of one prompt; a prompt index past the grid's is an
// std::invalid_argument before anything runs.
// `done` (--resume): records of an earlier run of the same grid; those (method, prompt)
// pairs are not run again and come back among the records. `saved` (optional) is called
// with every record so far each time a prompt finishes (--json writes them as it goes).
GridRun run_grid(Session& session, const PromptBuilder& builder, const EvalGrid& grid,
                 const std::string& label, bool quiet, KeptCapture* kept = nullptr,
                 const std::vector<TrialRecord>& done = {},
                 const std::function<void(const std::vector<TrialRecord>&)>& saved = {});

}  // namespace kvlm
