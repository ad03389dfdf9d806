// kvlm passkey, needle and sweep: flags in, a grid of prompts through the model, a table or
// heatmap on stdout, CSV/JSON/SVG files.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "session.h"

namespace kvlm {

// One struct for the three commands; main.cpp gives each its own defaults.
struct EvalOptions {
  std::string task;         // passkey | single | multikey | ... ; sweep: passkey | needle:<variant>
  std::string ctx;          // passkey, sweep: one length, e.g. 4096 or 4k
  std::string ctx_list;     // needle: several, e.g. 1k,2k,4k
  std::string depths;       // "0.5", "0,0.5,1" or "A:B:STEP"; "" = a seeded random depth per trial
  int trials = 1;
  uint64_t seed = 42;
  int chat = -1;            // 1 --chat, 0 --no-chat, -1 when the model has a chat template
  std::string query_mode = "aware";
  std::string haystack;     // the user's filler text file; "" = the built-in generator
  int needles = 4;
  std::string kv_list;      // sweep
  std::string budgets;      // sweep, e.g. 64,128,ratio=0.1
  std::string csv_path, json_path, svg_path;
  std::string replot_path;  // an earlier --json file to show again instead of running
  std::string kept_svg;     // draw what every method kept of one prompt
  int kept_prompt = 0;      // which prompt of the run (run_grid's order)
  bool share_prefill = true;  // --no-share-prefill: every method prefills every prompt itself
  std::string shard;          // "K/N": run every N-th prompt, starting at K; "" = all
  std::string resume_path;    // an earlier --json of the same run: skip what it finished
  bool json_kept = false;     // --json-kept: every answer's record holds the kept positions
};

enum class EvalCommand { Passkey, Needle, Sweep };

// Runs the grid and shows it (table, --csv, --svg, --json). Ctrl-C stops it between
// layers: --json then holds the prompts that finished, marked "interrupted", nothing else
// is written, and it returns kInterruptedExitStatus.
int eval_command(EvalCommand command, RuntimeOptions rt, const EvalOptions& options);

// kvlm merge: the --json files of shards (or resumed parts) of one run, put together into
// the table an unsharded run prints, and --json/--csv/--svg files as it writes them. Throws
// std::invalid_argument naming the files and the setting where two differ.
int merge_command(const std::vector<std::string>& files, const EvalOptions& outputs);

// Parsers of the flag values, exposed for the tests. Throw std::invalid_argument naming
// the flag and what is wrong.
int parse_token_count(const std::string& text, const std::string& flag);  // "4096", "4k"
std::vector<double> parse_depths(const std::string& text, const std::string& flag);
std::pair<int, int> parse_shard(const std::string& text);  // "K/N" -> (K, N), 0 <= K < N

}  // namespace kvlm
