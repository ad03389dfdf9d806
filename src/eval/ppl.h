// kvlm ppl: perplexity of a text file read through the KV cache, one token at a time, so
// that methods evict as they go (StreamingLLM's language-modelling test). Per segment of
// the text and overall, for several methods side by side.
#pragma once
#include <string>
#include <vector>

#include "kv/spec.h"
#include "session.h"

namespace kvlm {

struct PplOptions {
  std::string text_path;
  std::vector<KVSpec> kv_list = {KVSpec::parse("full")};
  int segment = 1024;   // tokens per reported segment
  int max_tokens = 0;   // 0: the whole file
  std::string csv_path, json_path, svg_path;  // "" = none
  std::string replot_path;  // an earlier --json: show it again (table, --csv, --svg), no model
};

// One method's result: the mean negative log-likelihood of each segment's tokens.
struct PplSeries {
  std::string spec;    // as the user gave it (the table's column)
  std::string method;  // the strategy's full name
  std::vector<double> segment_nll;  // segments scored completely or in part
  std::vector<int> segment_tokens;  // tokens scored in each
  int tokens_scored = 0;
  int stopped_at = 0;  // tokens read when the context filled; 0: read to the end
  size_t kv_bytes_held = 0, kv_bytes_full = 0;
  double seconds = 0;
  double perplexity() const;
};

// Reads the file as UTF-8 text; throws std::runtime_error naming it when it is missing,
// empty, or not text (a NUL byte or invalid UTF-8, with the byte offset).
std::string read_text_file(const std::string& path);

// Scores `tokens` (BOS first) with the session's current strategy: token t + 1 by the
// logits after token t. Stops early, recording where, when the context is full.
PplSeries score_text(Session& session, const std::vector<int32_t>& tokens, int segment);

int run_ppl(const RuntimeOptions& rt, const PplOptions& options);

}  // namespace kvlm
