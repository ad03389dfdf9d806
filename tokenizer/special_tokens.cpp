#include "tokenizer/special_tokens.h"

#include <algorithm>

namespace kvlm {

void SpecialTokenMatcher::add(int32_t id, std::string text) {
  if (text.empty()) return;
  auto& candidates = by_first_byte_[static_cast<unsigned char>(text[0])];
  // Longest first, so that "<|im_start|>" wins over a shorter token that is its prefix;
  // equal lengths keep the order they were added in.
  const auto at = std::find_if(candidates.begin(), candidates.end(),
                               [&](const Entry& e) { return e.text.size() < text.size(); });
  candidates.insert(at, Entry{id, std::move(text)});
  ++n_tokens_;
}

void SpecialTokenMatcher::split(std::string_view text, const std::function<bool(int32_t)>& accept,
                                const std::function<void(std::string_view)>& on_text,
                                const std::function<void(int32_t)>& on_special) const {
  size_t stretch_begin = 0;
  for (size_t pos = 0; pos < text.size();) {
    const Entry* found = nullptr;
    for (const Entry& e : by_first_byte_[static_cast<unsigned char>(text[pos])]) {
      if (text.compare(pos, e.text.size(), e.text) == 0 && accept(e.id)) {
        found = &e;
        break;
      }
    }
    if (!found) {
      ++pos;
      continue;
    }
    if (pos > stretch_begin) on_text(text.substr(stretch_begin, pos - stretch_begin));
    on_special(found->id);
    pos += found->text.size();
    stretch_begin = pos;
  }
  if (stretch_begin < text.size()) on_text(text.substr(stretch_begin));
}

}  // namespace kvlm
