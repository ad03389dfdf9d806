#include "eval/score.h"

#include <algorithm>
#include <cctype>
#include <set>

namespace kvlm {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_letter(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }

// Maximal runs of characters satisfying `in` in text, as [begin, end) offsets.
template <class Pred>
std::vector<std::pair<size_t, size_t>> runs(const std::string& text, Pred in) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < text.size();) {
    if (!in(text[i])) {
      i++;
      continue;
    }
    size_t end = i;
    while (end < text.size() && in(text[end])) end++;
    out.push_back({i, end});
    i = end;
  }
  return out;
}

}  // namespace

std::vector<std::string> numbers_in(const std::string& text) {
  std::vector<std::string> numbers;
  bool can_join = false;  // the previous group was short and ended right before " "
  size_t previous_end = 0;
  for (const auto& [begin, end] : runs(text, is_digit)) {
    const bool short_group = end - begin <= 3;
    const bool joins = can_join && short_group && begin == previous_end + 1 && text[previous_end] == ' ';
    if (joins) numbers.back() += text.substr(begin, end - begin);
    else numbers.push_back(text.substr(begin, end - begin));
    can_join = short_group;
    previous_end = end;
  }
  return numbers;
}

std::vector<std::string> names_in(const std::string& text) {
  std::vector<std::string> names;
  for (const auto& [begin, end] : runs(text, is_letter)) {
    const std::string word = text.substr(begin, end - begin);
    if (word.size() >= 2 && std::all_of(word.begin(), word.end(), is_upper)) names.push_back(word);
  }
  return names;
}

Score score_answer(const std::string& output, const Expected& expected) {
  if (expected.kind == AnswerKind::FirstNumber) {
    const std::vector<std::string> numbers = numbers_in(output);
    const bool right = !numbers.empty() && numbers.front() == expected.items.front();
    return {right ? 1.0 : 0.0, right};
  }
  const std::vector<std::string> found =
      expected.kind == AnswerKind::Numbers ? numbers_in(output) : names_in(output);
  const std::set<std::string> got(found.begin(), found.end());
  const std::set<std::string> want(expected.items.begin(), expected.items.end());
  size_t hits = 0;
  for (const std::string& item : want) hits += got.count(item);
  return {want.empty() ? 0.0 : double(hits) / double(want.size()), got == want};
}

}  // namespace kvlm
