// Self-contained SVG images of evaluation results, written by the binary itself: the
// needle heatmap (context x depth) and the sweep's line chart (accuracy vs budget).
#pragma once
#include <string>
#include <vector>

#include "eval/report.h"

namespace kvlm {

// Cells of one method, one per (ctx, depth).
std::string heatmap_svg(const std::vector<Cell>& cells, const std::string& title);
// Cells of a sweep, one per method run: a line per method across the budgets; a method
// without a budget is a dashed level line.
std::string line_chart_svg(const std::vector<Cell>& cells, const EvalGrid& grid,
                           const std::string& title);

}  // namespace kvlm
