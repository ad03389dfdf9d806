// The sweep's terminal table and the JSON that --replot reads back, on hand-made cells.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "eval/report.h"

namespace kvlm {
namespace {

EvalGrid two_method_grid() {
  EvalGrid grid;
  grid.methods = {{"full", "full", ""}, {"snapkv:budget=64", "snapkv", "budget=64"}};
  grid.ctx_list = {4096};
  return grid;
}

std::vector<Cell> two_method_cells() {
  Cell full{0, 4096, -1, 3, 2.0 / 3, 2.0 / 3, 179.5 * (1 << 20), 179.5 * (1 << 20), 161.5, 12.0, false};
  Cell snapkv{1, 4096, -1, 3, 0.0, 0.0, 2.8 * (1 << 20), 179.5 * (1 << 20), 150.0, 26.5, true};
  return {full, snapkv};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

TEST(EvalReport, SweepTableKeepsWideCostCellsApart) {
  // A third method at a budget of its own leaves a "-" in the other budgeted row.
  EvalGrid grid = two_method_grid();
  grid.methods.push_back({"streaming:budget=32", "streaming", "budget=32"});
  std::vector<Cell> cells = two_method_cells();
  cells.push_back({2, 4096, -1, 3, 1.0 / 3, 1.0 / 3, 1.4 * (1 << 20), 179.5 * (1 << 20), 160.0, 23.1, false});
  const std::string table = sweep_text(cells, grid, false);
  // "179.5 / 12.0" is as wide as the default column: it must still be set off by spaces.
  EXPECT_NE(table.find("  179.5 / 12.0"), std::string::npos) << table;
  EXPECT_NE(table.find("2.8 / 26.5"), std::string::npos) << table;
  EXPECT_NE(table.find("]*"), std::string::npos) << "a cell full cannot do is marked:\n" << table;
  // Every row of each table is as wide as its header, so the columns line up, "-" too.
  const std::vector<std::string> lines = lines_of(table);
  ASSERT_GT(lines.size(), 4u) << table;
  EXPECT_EQ(lines[1].substr(0, 6), "method") << table;
  for (size_t row = 2; row <= 4; row++) EXPECT_EQ(lines[row].size(), lines[1].size()) << table;
  // snapkv has no budget=32 cell, the last column: its "-" sits where the digits end.
  EXPECT_EQ(lines[3].substr(0, 6), "snapkv") << table;
  EXPECT_EQ(lines[3].substr(lines[3].size() - 2), "- ") << table;
  const size_t cost_header = std::find(lines.begin(), lines.end(), "KV held (MiB) / decode speed (tokens/s)") -
                             lines.begin() + 1;
  ASSERT_LT(cost_header + 3, lines.size()) << table;
  EXPECT_EQ(lines[cost_header + 1].size(), lines[cost_header].size()) << table;
  EXPECT_EQ(lines[cost_header + 2].size(), lines[cost_header].size()) << table;
  EXPECT_EQ(lines[cost_header + 3].size(), lines[cost_header].size()) << table;
}

TEST(EvalReport, CellsReadBackFromJsonAreTheCellsWritten) {
  const EvalGrid grid = two_method_grid();
  const std::vector<Cell> cells = two_method_cells();
  EvalGrid read_grid;
  const std::vector<Cell> read = cells_from_json(cells_json(cells, grid), read_grid);
  ASSERT_EQ(read_grid.methods.size(), 2u);
  EXPECT_EQ(read_grid.methods[1].spec, "snapkv:budget=64");
  EXPECT_EQ(read_grid.methods[1].method, "snapkv");
  EXPECT_EQ(read_grid.methods[1].budget, "budget=64");
  EXPECT_EQ(read_grid.methods[0].budget, "");
  EXPECT_EQ(sweep_text(read, read_grid, false), sweep_text(cells, grid, false));
  EXPECT_EQ(cells_csv(read, read_grid), cells_csv(cells, grid));
  ASSERT_EQ(read.size(), 2u);
  EXPECT_EQ(read[0].depth, -1) << "a sweep cell spans every depth (null in JSON)";
  EXPECT_TRUE(read[1].model_cannot);
  EXPECT_THROW(cells_from_json(nlohmann::json::array({{{"spec", 7}}}), read_grid),
               nlohmann::json::exception);
}

// A run's JSON text: the same document back when parsed, a line per field and per object
// of an array of objects, nothing nested indented further.
TEST(EvalReport, RunJsonHasALinePerFieldAndPerRecord) {
  const nlohmann::json doc = {{"title", "passkey"},
                              {"depths", {0.25, 0.5}},
                              {"shard", nullptr},
                              {"trials_detail", nlohmann::json::array()},
                              {"cells", cells_json(two_method_cells(), two_method_grid())}};
  const std::string text = run_json_text(doc);
  EXPECT_EQ(nlohmann::json::parse(text), doc);
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  EXPECT_EQ(lines, (std::vector<std::string>{
                       "{",
                       "  \"cells\": [",
                       "    " + doc["cells"][0].dump() + ",",
                       "    " + doc["cells"][1].dump(),
                       "  ],",
                       "  \"depths\": [0.25,0.5],",
                       "  \"shard\": null,",
                       "  \"title\": \"passkey\",",
                       "  \"trials_detail\": []",
                       "}"}));
}

}  // namespace
}  // namespace kvlm
