// Self-contained SVG images written by the binary itself: the needle heatmap (context x
// depth), the sweep's line chart (accuracy vs budget), ppl's chart and kept maps (which prompt tokens
// every layer and KV head kept, one panel per method).
#pragma once
#include <string>
#include <vector>

#include "eval/kept.h"
#include "eval/report.h"

namespace kvlm {

// Cells of one method, one per (ctx, depth).
std::string heatmap_svg(const std::vector<Cell>& cells, const std::string& title);
// Several methods' heatmaps stacked, each under its caption, with one colour scale.
struct HeatmapPanel {
  std::string caption;
  std::vector<Cell> cells;
};
std::string heatmaps_svg(const std::vector<HeatmapPanel>& panels, const std::string& title);
// Cells of a sweep, one per method run: a line per method across the budgets; a method
// without a budget is a dashed level line.
std::string line_chart_svg(const std::vector<Cell>& cells, const EvalGrid& grid,
                           const std::string& title);
// One line of a perplexity chart: (position in the text, perplexity) points.
struct PerplexitySeries {
  std::string name;
  std::vector<std::pair<double, double>> points;
};
// Perplexity (log scale) against position in the text, one line per method.
std::string perplexity_chart_svg(const std::vector<PerplexitySeries>& series,
                                 const std::string& title, const std::string& x_label);
// x = prompt position (hover shows the token), y = layer, a thin row per KV head within
// it; a cell is kept (blue), merged into a shared layer pair (orange) or evicted (grey).
// One panel per method with its KV bytes held; layer notes (SimLayerKV's lazy layers)
// marked at the left; the question's start and the needles marked on every panel.
// Every row is <g data-layer data-head data-kept data-own data-merged>: the runs of
// consecutive kept tokens as "first:length" lists, one path per colour drawing them, so a
// reader or a test can count the cells.
std::string kept_map_svg(const std::string& title, const std::vector<std::string>& tokens,
                         const std::vector<KeptPanel>& panels, const KeptMarks& marks);

}  // namespace kvlm
