// Wilson intervals and the exact sign test (eval/stats.h) against values worked by hand,
// and how a sweep's cells carry them: the paired comparison with full on the same prompts.
#include <gtest/gtest.h>

#include "eval/report.h"
#include "eval/stats.h"

namespace kvlm {
namespace {

// Wilson, z = 1.96: centre (p + z^2/2n) / (1 + z^2/n), half-width
// z sqrt(p(1-p)/n + z^2/4n^2) / (1 + z^2/n).
//   2 of 3: centre 1.3069/2.2805 = 0.5731, half 1.96 * 0.42519 / 2.2805 = 0.3654
//   0 of 3: [0, 1.2805/2.2805 = 0.5615];  3 of 3: [0.4385, 1]
//   50 of 100: centre 0.5, half 1.96 * sqrt(0.0025 + 0.0000960) / 1.0384 = 0.0962
TEST(EvalStats, WilsonIntervalsByHand) {
  const Interval two_of_three = wilson_interval(2.0 / 3, 3);
  EXPECT_NEAR(two_of_three.low, 0.2077, 1e-3);
  EXPECT_NEAR(two_of_three.high, 0.9385, 1e-3);
  EXPECT_EQ(wilson_interval(0, 3).low, 0);
  EXPECT_NEAR(wilson_interval(0, 3).high, 0.5615, 1e-3);
  EXPECT_NEAR(wilson_interval(1, 3).low, 0.4385, 1e-3);
  EXPECT_EQ(wilson_interval(1, 3).high, 1);
  EXPECT_NEAR(wilson_interval(0.5, 100).low, 0.5 - 0.0962, 1e-3);
  EXPECT_NEAR(wilson_interval(0.5, 100).high, 0.5 + 0.0962, 1e-3);
  EXPECT_EQ(wilson_interval(0.5, 0).low, 0);
  EXPECT_EQ(wilson_interval(0.5, 0).high, 1);
}

// Two-sided: 2 * sum_{i <= min} C(n, i) / 2^n.
//   6 vs 0: 2/64 = 0.03125;  5 vs 0: 2/32 = 0.0625;  7 vs 1: 2 * 9/256 = 0.0703
//   3 vs 3: capped at 1;  0 vs 0: 1;  large n stays finite (30 vs 10: 0.0022)
TEST(EvalStats, SignTestByHand) {
  EXPECT_NEAR(sign_test_p(6, 0), 0.03125, 1e-9);
  EXPECT_NEAR(sign_test_p(0, 5), 0.0625, 1e-9);
  EXPECT_NEAR(sign_test_p(7, 1), 0.0703125, 1e-9);
  EXPECT_EQ(sign_test_p(3, 3), 1);
  EXPECT_EQ(sign_test_p(0, 0), 1);
  EXPECT_NEAR(sign_test_p(30, 10), 0.00222, 5e-5);
  EXPECT_GT(sign_test_p(600, 500), 0);
}

TrialRecord record(int method, int trial, bool right) {
  TrialRecord r;
  r.method = method, r.ctx = 1024, r.depth = 0.5, r.trial = trial;
  r.outcome.score = {right ? 1.0 : 0.0, right};
  return r;
}

// full right on prompts 0-7, a method right on 0 and 1 only (6 prompts only full gets):
// p = 2/64, marked; one right on 0-5 and on 8 (2 vs 1) is not.
TEST(EvalStats, CellsCompareWithFullOnTheSamePrompts) {
  EvalGrid grid;
  grid.methods = {{"full", "full", ""}, {"a", "a", ""}, {"b", "b", ""}};
  std::vector<TrialRecord> records;
  for (int t = 0; t < 10; t++) {
    records.push_back(record(0, t, t < 8));
    records.push_back(record(1, t, t < 2));
    records.push_back(record(2, t, t < 6 || t == 8));
  }
  const std::vector<Cell> cells = summarise(records, grid, false);
  ASSERT_EQ(cells.size(), 3u);
  EXPECT_EQ(cells[0].p_vs_full, -1) << "full is not compared with itself";
  EXPECT_NEAR(cells[1].p_vs_full, 0.03125, 1e-9);
  EXPECT_TRUE(cells[1].differs_from_full());
  EXPECT_NEAR(cells[2].p_vs_full, sign_test_p(2, 1), 1e-9);
  EXPECT_FALSE(cells[2].differs_from_full());
  grid.methods[0].method = "a";  // now no method is `full`, so nothing is compared
  grid.methods[0].spec = "a0";
  for (const Cell& c : summarise(records, grid, false)) EXPECT_EQ(c.p_vs_full, -1);

  grid.methods[0] = {"full", "full", ""};
  grid.methods[1].budget = grid.methods[2].budget = "budget=64";
  grid.methods[1].spec = "a:budget=64", grid.methods[2].spec = "b:budget=64";
  const std::string table = sweep_text(cells, grid, false);
  EXPECT_NE(table.find(" 20 [  6, 51]!"), std::string::npos) << table;
  EXPECT_NE(table.find(" 70 [ 40, 89] "), std::string::npos) << table;
  EXPECT_NE(table.find("! differs from full on the same prompts"), std::string::npos) << table;
  EXPECT_NE(table.find("95% Wilson interval"), std::string::npos) << table;
  const std::string csv = cells_csv(cells, grid);
  EXPECT_NE(csv.find("accuracy,accuracy_low,accuracy_high,"), std::string::npos) << csv;
  EXPECT_NE(csv.find(",0.03125\n"), std::string::npos) << csv;
  const nlohmann::json json = cells_json(cells, grid);
  EXPECT_TRUE(json[0]["p_vs_full"].is_null());
  EvalGrid read_grid;
  EXPECT_EQ(cells_from_json(json, read_grid)[1].p_vs_full, cells[1].p_vs_full);
}

}  // namespace
}  // namespace kvlm
