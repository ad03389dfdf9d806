// Kept maps: which prompt tokens each layer and KV head of the cache holds after a method
// compressed the prompt, captured as plain data so it can be drawn (kept_map_svg in
// eval/svg.h) method beside method.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kv/kv_cache.h"
#include "kv/strategy.h"
#include "tokenizer/tokenizer.h"

namespace kvlm {

struct KeptPanel {
  std::string label;  // the method's spec
  // [layer][kv head] prompt positions held, ascending; `merged` the subset held in
  // storage shared with another layer (MiniCache), the rest are the head's own rows.
  std::vector<std::vector<std::vector<int32_t>>> kept, merged;
  std::vector<std::string> layer_notes;  // [layer] e.g. "lazy"; "" for none
  size_t bytes_held = 0, bytes_full = 0;
};

// The cache as it is now, restricted to the first prompt_tokens positions.
KeptPanel capture_kept(const std::string& label, const KVCache& cache, const KVStrategy& strategy,
                       int prompt_tokens);

// What the picture marks on the prompt axis (token positions).
struct KeptMarks {
  int question_start = -1;                  // where the question begins; -1: none
  std::vector<std::pair<int, int>> needles; // [begin, end) of each planted key or needle
};

// The token whose text covers each byte range [begin, end) of `text`, where `text` is
// what the tokens spell (a leading special token such as BOS may come before it).
std::vector<std::pair<int, int>> token_ranges(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                              const std::string& text,
                                              const std::vector<std::pair<size_t, size_t>>& bytes);

// Each token's text, readable in an SVG: valid UTF-8, control bytes and broken sequences
// shown as their \xNN codes.
std::vector<std::string> token_texts(const Tokenizer& tok, const std::vector<int32_t>& ids);

}  // namespace kvlm
