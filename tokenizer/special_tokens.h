// Special tokens written in text ("<|im_start|>", "</s>"): both tokenizers cut them out as
// single ids first and tokenize the text between them on its own.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kvlm {

class SpecialTokenMatcher {
 public:
  void add(int32_t id, std::string text);  // an empty text can never match and is ignored
  size_t size() const { return n_tokens_; }

  // Walks the text in order: on_text gets each non-empty stretch between special tokens,
  // on_special each token found. Where several tokens start at the same place, the longest
  // one that `accept` lets through wins.
  void split(std::string_view text, const std::function<bool(int32_t)>& accept,
             const std::function<void(std::string_view)>& on_text,
             const std::function<void(int32_t)>& on_special) const;

 private:
  struct Entry {
    int32_t id;
    std::string text;
  };
  // By first byte, longest first.
  std::array<std::vector<Entry>, 256> by_first_byte_;
  size_t n_tokens_ = 0;
};

}  // namespace kvlm
