#include "eval/kept.h"

#include <algorithm>
#include <cstdio>

namespace kvlm {

KeptPanel capture_kept(const std::string& label, const KVCache& cache, const KVStrategy& strategy,
                       int prompt_tokens) {
  KeptPanel p;
  p.label = label;
  const int layers = cache.n_layers(), heads = cache.n_kv_heads();
  p.kept.assign(layers, std::vector<std::vector<int32_t>>(heads));
  p.merged = p.kept;
  p.layer_notes.resize(layers);
  for (int l = 0; l < layers; l++) {
    p.layer_notes[l] = strategy.layer_note(l);
    for (int h = 0; h < heads; h++) {
      const std::vector<int32_t>& positions = cache.positions(l, h);
      const int shared = cache.shared_length(l, h);
      for (int slot = 0; slot < int(positions.size()); slot++) {
        if (positions[slot] >= prompt_tokens) continue;
        p.kept[l][h].push_back(positions[slot]);
        if (slot < shared) p.merged[l][h].push_back(positions[slot]);
      }
      // Shared slots come first in a merged head, each merge's tokens after the last's, so
      // positions are sorted here.
      std::sort(p.kept[l][h].begin(), p.kept[l][h].end());
      std::sort(p.merged[l][h].begin(), p.merged[l][h].end());
    }
  }
  const KVStats st = cache.stats();
  p.bytes_held = st.bytes_held;
  p.bytes_full = st.bytes_full;
  return p;
}

std::vector<std::pair<int, int>> token_ranges(const Tokenizer& tok, const std::vector<int32_t>& ids,
                                              const std::string& text,
                                              const std::vector<std::pair<size_t, size_t>>& bytes) {
  std::vector<size_t> ends(ids.size());  // ends[i]: bytes spelled by tokens 0..i
  size_t total = 0;
  for (size_t i = 0; i < ids.size(); i++) ends[i] = total += tok.token_bytes(ids[i]).size();
  const size_t shift = total >= text.size() ? total - text.size() : 0;
  auto token_at = [&](size_t byte) {  // the token that spells byte `byte` of text
    return int(std::upper_bound(ends.begin(), ends.end(), byte + shift) - ends.begin());
  };
  std::vector<std::pair<int, int>> ranges;
  for (const auto& [begin, end] : bytes)
    ranges.push_back({token_at(begin), std::min(int(ids.size()), token_at(end - 1) + 1)});
  return ranges;
}

std::vector<std::string> token_texts(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::vector<std::string> texts;
  for (int32_t id : ids) {
    const std::string b = tok.token_bytes(id);
    std::string out;
    for (size_t i = 0; i < b.size();) {
      const unsigned char c = b[i];
      const int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
      bool whole = len > 0 && i + len <= b.size();
      for (int k = 1; whole && k < len; k++) whole = (static_cast<unsigned char>(b[i + k]) >> 6) == 2;
      if (whole && !(len == 1 && (c < 0x20 || c == 0x7f))) {
        out.append(b, i, len);
        i += len;
      } else {
        char code[8];
        std::snprintf(code, sizeof code, "\\x%02X", c);
        out += c == '\n' ? "\\n" : code;
        i++;
      }
    }
    texts.push_back(out);
  }
  return texts;
}

}  // namespace kvlm
