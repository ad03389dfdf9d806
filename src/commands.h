// The subcommands' bodies; src/main.cpp only declares flags and dispatches here.
#pragma once
#include <string>

#include "chat.h"
#include "session.h"

namespace kvlm {

struct RunOptions {
  std::string prompt;
  std::string prompt_file;
  int n_predict = 256;
  bool chat = false;   // wrap the prompt in the model's chat template
  bool stats = false;  // print generation and KV statistics to stderr
  int show_kept = -1;  // >= 0: after prefill, show the prompt tokens this layer kept
  std::string system;
  std::string json_path;
  std::string kept_svg;          // draw what each method kept of the prompt (eval/svg.h)
  std::string dump_kept;         // JSON: each method's kept positions per layer and KV head
  std::vector<KVSpec> kv_list;   // several methods in turn; empty: --kv alone
  SamplingParams sampling;
  SamplingFlagsGiven sampling_given;  // the flags the user gave win over the model's hints
};

// The prompt with the tokens that `layer` kept (by a majority of its KV heads) marked:
// colour when `color`, else evicted runs collapse to "[... N evicted ...]".
std::string render_kept(const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const KVCache& cache, int layer, bool color);

// Files (--json, --kept-svg) are written once everything ran: Ctrl-C (Interrupted) leaves none.
int run_command(const RuntimeOptions& rt, const RunOptions& o);
int info_command(const RuntimeOptions& rt);
int methods_command();

}  // namespace kvlm
