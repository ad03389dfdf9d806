// The exact scorers on hand-written model outputs: right, wrong, extra text, digits spaced
// out, lists with something missing or something extra.
#include <gtest/gtest.h>

#include "eval/score.h"

namespace kvlm {
namespace {

Score first_number(const std::string& output, const std::string& key) {
  return score_answer(output, {AnswerKind::FirstNumber, {key}});
}

TEST(EvalScore, FirstNumberRightWrongAndExtraText) {
  EXPECT_TRUE(first_number(" 58312.", "58312").strict);
  EXPECT_EQ(first_number(" 58312.", "58312").recall, 1.0);
  EXPECT_TRUE(first_number(" 58312, as I said. Another number: 11111", "58312").strict)
      << "text after the first number does not matter";
  EXPECT_FALSE(first_number(" 58313.", "58312").strict);
  EXPECT_EQ(first_number(" 58313.", "58312").recall, 0.0);
  EXPECT_FALSE(first_number(" 11111, no wait, 58312", "58312").strict) << "only the first counts";
  EXPECT_FALSE(first_number(" 583120", "58312").strict) << "a longer number is another number";
  EXPECT_FALSE(first_number(" not sure", "58312").strict);
  EXPECT_FALSE(first_number("", "58312").strict);
}

TEST(EvalScore, DigitsSplitBySpacesAreOneNumber) {
  EXPECT_TRUE(first_number(" 5 8 3 1 2.", "58312").strict);
  EXPECT_TRUE(first_number(" 58 312", "58312").strict);
  EXPECT_TRUE(first_number("is 4 817 263!", "4817263").strict);
  EXPECT_EQ(numbers_in("1234567 2345678"), (std::vector<std::string>{"1234567", "2345678"}))
      << "long groups are separate numbers";
  EXPECT_EQ(numbers_in("58  312"), (std::vector<std::string>{"58", "312"})) << "two spaces separate";
  EXPECT_EQ(numbers_in("a 12, 34 b 5"), (std::vector<std::string>{"12", "34", "5"}));
}

TEST(EvalScore, NumberListsGiveRecallAndStrict) {
  const Expected want{AnswerKind::Numbers, {"1111111", "2222222", "3333333", "4444444"}};
  Score all = score_answer(" 1111111, 2222222, 3333333 and 4444444.", want);
  EXPECT_EQ(all.recall, 1.0);
  EXPECT_TRUE(all.strict);
  Score reordered = score_answer("\n4444444\n3333333\n2222222\n1111111", want);
  EXPECT_TRUE(reordered.strict) << "order is free";
  Score half = score_answer(" 1111111 and 3333333.", want);
  EXPECT_EQ(half.recall, 0.5);
  EXPECT_FALSE(half.strict);
  Score extra = score_answer(" 1111111, 2222222, 3333333, 4444444 and 5555555", want);
  EXPECT_EQ(extra.recall, 1.0);
  EXPECT_FALSE(extra.strict) << "an extra number is not an exact answer";
}

TEST(EvalScore, VariableNamesGiveRecallAndStrict) {
  const Expected want{AnswerKind::Names, {"QWERT", "ASDFG", "ZXCVB"}};
  Score all = score_answer(" QWERT, ASDFG and ZXCVB.", want);
  EXPECT_EQ(all.recall, 1.0);
  EXPECT_TRUE(all.strict);
  Score partial = score_answer(" QWERT and Asdfg", want);
  EXPECT_NEAR(partial.recall, 1.0 / 3, 1e-12) << "names are matched exactly, case included";
  Score extra = score_answer(" QWERT, ASDFG, ZXCVB, POIUY", want);
  EXPECT_EQ(extra.recall, 1.0);
  EXPECT_FALSE(extra.strict);
  EXPECT_EQ(names_in("I think A, BB and the CCC."), (std::vector<std::string>{"BB", "CCC"}));
}

}  // namespace
}  // namespace kvlm
