// Exact scorers: extract the answer from what the model wrote and compare it with what
// the prompt hid. No fuzzy matching, no judge.
#pragma once
#include <string>
#include <vector>

namespace kvlm {

enum class AnswerKind {
  FirstNumber,  // the first number written must equal the one expected value
  Numbers,      // every expected number should appear (multivalue, multiquery)
  Names,        // every expected variable name should appear (vartrack)
};

struct Expected {
  AnswerKind kind = AnswerKind::FirstNumber;
  std::vector<std::string> items;
};

struct Score {
  double recall = 0;    // share of the expected items found (FirstNumber: 0 or 1)
  bool strict = false;  // exactly the expected items, nothing missing, nothing extra
};

// The numbers in text, in order. Digit groups of at most three digits separated by single
// spaces are one number ("5 8 3 1 2" and "4 817 263" are written numbers, "1234567
// 2345678" are two), since models sometimes space out the digits they copy.
std::vector<std::string> numbers_in(const std::string& text);
// Words of two or more capital letters (variable names as the tasks write them), in order.
std::vector<std::string> names_in(const std::string& text);

Score score_answer(const std::string& output, const Expected& expected);

}  // namespace kvlm
