#include "eval/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iterator>
#include <tuple>

#include "eval/stats.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

std::string escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string rgb(Rgb c) {
  return "rgb(" + std::to_string(c.r) + "," + std::to_string(c.g) + "," + std::to_string(c.b) + ")";
}

std::string text(double x, double y, const std::string& s, const std::string& attributes = "") {
  return "<text x=\"" + fmt("%.1f", x) + "\" y=\"" + fmt("%.1f", y) + "\"" +
         (attributes.empty() ? "" : " " + attributes) + ">" + escaped(s) + "</text>\n";
}

// Wide enough for the title (bold 15 px: about 8.5 px a character) and the drawing.
int width_for(const std::string& title, double drawing) {
  return int(std::max(drawing, 32 + 8.5 * title.size()));
}

std::string document(int width, int height, const std::string& body) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
         "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
         "\" height=\"" + std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) +
         " " + std::to_string(height) + "\" font-family=\"Helvetica, Arial, sans-serif\" "
         "font-size=\"13\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n" + body +
         "</svg>\n";
}

const char* kCannotNote = "* full scores below 50% here: the model cannot do this, whatever the KV method";

// Tableau's ten categorical colours: distinct for most readers, colour-blind ones included.
const char* kLineColours[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                              "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};

}  // namespace

std::string heatmap_svg(const std::vector<Cell>& cells, const std::string& title) {
  return heatmaps_svg({{"", cells}}, title);
}

std::string heatmaps_svg(const std::vector<HeatmapPanel>& panels, const std::string& title) {
  const double cell_w = 52, cell_h = 34, left = 90;
  // Several panels: each under its caption, in two columns from four panels on.
  const bool captions = panels.size() > 1;
  const int columns = panels.size() > 3 ? 2 : 1;
  const double caption_h = captions ? 26 : 0, first_top = captions ? 48 : 56;
  struct Axes {
    std::vector<int> ctxs;
    std::vector<double> depths;
  };
  std::vector<Axes> axes(panels.size());
  double panel_w = 0, panel_h = 0;  // the largest panel's grid
  for (size_t p = 0; p < panels.size(); p++) {
    for (const Cell& c : panels[p].cells) {
      std::vector<int>& ctxs = axes[p].ctxs;
      std::vector<double>& depths = axes[p].depths;
      if (std::find(ctxs.begin(), ctxs.end(), c.ctx) == ctxs.end()) ctxs.push_back(c.ctx);
      if (std::find(depths.begin(), depths.end(), c.depth) == depths.end()) depths.push_back(c.depth);
    }
    std::sort(axes[p].ctxs.begin(), axes[p].ctxs.end());
    std::sort(axes[p].depths.begin(), axes[p].depths.end());
    panel_w = std::max(panel_w, cell_w * axes[p].depths.size());
    panel_h = std::max(panel_h, cell_h * axes[p].ctxs.size());
  }
  // A column is as wide as its grid or its depth label (about 300 px), whichever is wider.
  const double column_w = left + std::max(panel_w, 230.0) + 40, row_h = caption_h + panel_h + 56;

  std::string body = text(16, 24, title, "font-size=\"15\" font-weight=\"bold\"");
  bool any_cannot = false;
  for (size_t p = 0; p < panels.size(); p++) {
    const HeatmapPanel& panel = panels[p];
    const std::vector<int>& ctxs = axes[p].ctxs;
    const std::vector<double>& depths = axes[p].depths;
    const double x0 = column_w * (p % columns), top = first_top + row_h * (p / columns) + caption_h;
    const double grid_w = cell_w * depths.size(), grid_h = cell_h * ctxs.size();
    if (captions) body += text(x0 + left, top - 10, panel.caption, "font-weight=\"bold\"");
    for (size_t row = 0; row < ctxs.size(); row++) {
      const double y = top + cell_h * row;
      body += text(x0 + left - 10, y + cell_h / 2 + 4, std::to_string(ctxs[row]), "text-anchor=\"end\"");
      for (size_t col = 0; col < depths.size(); col++) {
        auto it = std::find_if(panel.cells.begin(), panel.cells.end(), [&](const Cell& c) {
          return c.ctx == ctxs[row] && c.depth == depths[col];
        });
        if (it == panel.cells.end()) continue;
        const double x = x0 + left + cell_w * col;
        const Rgb colour = accuracy_colour(it->accuracy);
        body += "<rect x=\"" + fmt("%.1f", x) + "\" y=\"" + fmt("%.1f", y) + "\" width=\"" +
                fmt("%.1f", cell_w) + "\" height=\"" + fmt("%.1f", cell_h) + "\" fill=\"" +
                rgb(colour) + "\" stroke=\"white\"><title>" +
                (captions ? escaped(panel.caption) + ", " : "") + "context " +
                std::to_string(it->ctx) + ", depth " + fmt("%.2f", it->depth) + ": " +
                fmt("%.0f", 100 * it->accuracy) + "% of " + std::to_string(it->trials) +
                "</title></rect>\n";
        const bool light = 0.299 * colour.r + 0.587 * colour.g + 0.114 * colour.b > 140;
        any_cannot |= it->model_cannot;
        body += text(x + cell_w / 2, y + cell_h / 2 + 4,
                     fmt("%.0f", 100 * it->accuracy) + (it->model_cannot ? "*" : ""),
                     std::string("text-anchor=\"middle\" fill=\"") + (light ? "black" : "white") + "\"");
      }
    }
    for (size_t col = 0; col < depths.size(); col++)
      body += text(x0 + left + cell_w * (col + 0.5), top + grid_h + 18, fmt("%.2f", depths[col]),
                   "text-anchor=\"middle\"");
    body += text(x0 + left + grid_w / 2, top + grid_h + 40,
                 "needle depth (0 = start of the text, 1 = end)", "text-anchor=\"middle\"");
    const double label_x = x0 + 18;
    body += text(label_x, top + grid_h / 2, "context (tokens)",
                 "text-anchor=\"middle\" transform=\"rotate(-90 " + fmt("%.1f", label_x) + " " +
                     fmt("%.1f", top + grid_h / 2) + ")\"");
  }
  // One colour scale, 100% at the top, right of the panels.
  const double legend_x = column_w * (columns - 1) + left + (columns > 1 ? std::max(panel_w, 230.0) : panel_w) + 24;
  const double legend_top = first_top + caption_h, scale_h = std::max(std::min(panel_h, 200.0), 100.0);
  body += "<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">";
  for (int i = 0; i <= 10; i++)
    body += "<stop offset=\"" + fmt("%.1f", i / 10.0) + "\" stop-color=\"" + rgb(accuracy_colour(i / 10.0)) + "\"/>";
  body += "</linearGradient></defs>\n";
  body += "<rect x=\"" + fmt("%.1f", legend_x) + "\" y=\"" + fmt("%.1f", legend_top) +
          "\" width=\"14\" height=\"" + fmt("%.1f", scale_h) + "\" fill=\"url(#scale)\"/>\n";
  body += text(legend_x + 20, legend_top + 10, "100%");
  body += text(legend_x + 20, legend_top + scale_h, "0%");
  const size_t rows = (panels.size() + columns - 1) / columns;
  const int height = int(first_top + row_h * rows + 20);
  if (any_cannot) body += text(16, height - 10, kCannotNote, "font-size=\"11\"");
  return document(width_for(title, legend_x + 70), height, body);
}

std::string line_chart_svg(const std::vector<Cell>& cells, const EvalGrid& grid,
                           const std::string& title) {
  std::vector<std::string> budgets, methods;
  for (const MethodRun& m : grid.methods) {
    if (!m.budget.empty() && std::find(budgets.begin(), budgets.end(), m.budget) == budgets.end())
      budgets.push_back(m.budget);
    if (std::find(methods.begin(), methods.end(), m.method) == methods.end())
      methods.push_back(m.method);
  }
  const double left = 64, top = 48, plot_w = std::max(120.0 * budgets.size(), 360.0), plot_h = 300;
  const double legend_x = left + plot_w + 28;
  // The legend: a 30 px line sample, then the label (13 px text: about 7.5 px a character,
  // " (no budget)" included).
  size_t longest_label = 0;
  for (const std::string& m : methods) longest_label = std::max(longest_label, m.size() + 12);
  const int width = width_for(title, legend_x + std::max(190.0, 40 + 7.5 * longest_label));
  const int height = int(top + plot_h + 102);
  auto x_of = [&](size_t i) {
    return budgets.size() < 2 ? left + plot_w / 2 : left + 20 + (plot_w - 40) * i / (budgets.size() - 1);
  };
  // Methods often score the same (every one at 0% is common), and equal lines would hide
  // each other: each method's line is shifted by a couple of pixels, which the caption says.
  const double spread = 2.0;
  auto y_of = [&](double accuracy) { return top + plot_h * (1 - accuracy); };
  auto line_y = [&](double accuracy, size_t method) {
    return y_of(accuracy) + spread * (method - (methods.size() - 1) / 2.0);
  };

  std::string body = text(16, 24, title, "font-size=\"15\" font-weight=\"bold\"");
  for (int pct = 0; pct <= 100; pct += 25) {
    const double y = y_of(pct / 100.0);
    body += "<line x1=\"" + fmt("%.1f", left) + "\" y1=\"" + fmt("%.1f", y) + "\" x2=\"" +
            fmt("%.1f", left + plot_w) + "\" y2=\"" + fmt("%.1f", y) + "\" stroke=\"#ddd\"/>\n";
    body += text(left - 8, y + 4, std::to_string(pct) + "%", "text-anchor=\"end\"");
  }
  for (size_t i = 0; i < budgets.size(); i++)
    body += text(x_of(i), top + plot_h + 30, budgets[i], "text-anchor=\"middle\"");
  body += text(left + plot_w / 2, top + plot_h + 54, "KV budget (tokens per KV head per layer)",
               "text-anchor=\"middle\"");
  body += text(16, top + plot_h / 2, "accuracy",
               "text-anchor=\"middle\" transform=\"rotate(-90 16 " + fmt("%.1f", top + plot_h / 2) + ")\"");

  bool any_cannot = false;
  for (size_t k = 0; k < methods.size(); k++) {
    const std::string colour = kLineColours[k % std::size(kLineColours)];
    std::string points, markers;
    bool level = false;
    for (const Cell& c : cells) {
      const MethodRun& m = grid.methods[c.method];
      if (m.method != methods[k]) continue;
      any_cannot |= c.model_cannot;
      if (m.budget.empty()) {  // no budget: the same accuracy everywhere
        level = true;
        points = fmt("%.1f", left) + "," + fmt("%.1f", line_y(c.accuracy, k)) + " " +
                 fmt("%.1f", left + plot_w) + "," + fmt("%.1f", line_y(c.accuracy, k));
        continue;
      }
      const size_t i = std::find(budgets.begin(), budgets.end(), m.budget) - budgets.begin();
      const std::string x = fmt("%.1f", x_of(i)), y = fmt("%.1f", line_y(c.accuracy, k));
      points += x + "," + y + " ";
      const Interval interval = wilson_interval(c.accuracy, c.trials);  // an error bar
      markers += "<line x1=\"" + x + "\" y1=\"" + fmt("%.1f", line_y(interval.low, k)) + "\" x2=\"" +
                 x + "\" y2=\"" + fmt("%.1f", line_y(interval.high, k)) + "\" stroke=\"" + colour +
                 "\" stroke-width=\"5\" stroke-opacity=\"0.25\"/>\n";
      markers += "<circle cx=\"" + x + "\" cy=\"" + y + "\" r=\"3.5\" fill=\"" + colour +
                 "\"><title>" + escaped(m.method + " " + m.budget) + ": " +
                 fmt("%.0f", 100 * c.accuracy) + "% (95% interval " + fmt("%.0f", 100 * interval.low) +
                 "-" + fmt("%.0f", 100 * interval.high) + "%, " + std::to_string(c.trials) +
                 " trials)</title></circle>\n";
    }
    body += "<polyline fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"2\"" +
            (level ? " stroke-dasharray=\"6 4\"" : "") + " points=\"" + points + "\"/>\n" + markers;
    const double ly = top + 8 + 20 * k;
    body += "<line x1=\"" + fmt("%.1f", legend_x) + "\" y1=\"" + fmt("%.1f", ly) + "\" x2=\"" +
            fmt("%.1f", legend_x + 24) + "\" y2=\"" + fmt("%.1f", ly) + "\" stroke=\"" + colour +
            "\" stroke-width=\"2\"" + (level ? " stroke-dasharray=\"6 4\"" : "") + "/>\n";
    body += text(legend_x + 30, ly + 4, methods[k] + (level ? " (no budget)" : ""));
  }
  if (methods.size() > 1)
    body += text(16, height - 26,
                 "Lines are drawn up to " + fmt("%.0f", spread * (methods.size() - 1) / 2) +
                     " px above or below their value so equal scores stay visible; bars: 95% Wilson "
                     "intervals; hover a point for its numbers.",
                 "font-size=\"11\" fill=\"#555\"");
  if (any_cannot) body += text(16, height - 10, kCannotNote + 2, "font-size=\"11\"");  // no "* "
  return document(width, height, body);
}

std::string perplexity_chart_svg(const std::vector<PerplexitySeries>& series,
                                 const std::string& title, const std::string& x_label) {
  double x_max = 1, y_min = 1e300, y_max = 0;
  for (const PerplexitySeries& s : series)
    for (auto [x, y] : s.points)
      x_max = std::max(x_max, x), y_min = std::min(y_min, y), y_max = std::max(y_max, y);
  if (y_max <= 0) y_min = 1, y_max = 10;
  // The log axis runs between whole powers of ten, with lines at 1x, 2x and 5x.
  const double lo = std::pow(10.0, std::floor(std::log10(std::max(y_min, 1.0)))),
               hi = std::pow(10.0, std::ceil(std::log10(std::max(y_max, lo * 10))));
  const double left = 64, top = 48, plot_w = 560, plot_h = 300, legend_x = left + plot_w + 28;
  double longest = 0;
  for (const PerplexitySeries& s : series) longest = std::max(longest, 7.5 * s.name.size());
  const int width = width_for(title, legend_x + 40 + longest), height = int(top + plot_h + 70);
  auto x_of = [&](double x) { return left + plot_w * x / x_max; };
  auto y_of = [&](double y) {
    return top + plot_h * (1 - std::log(std::max(y, lo) / lo) / std::log(hi / lo));
  };
  auto line = [&](double x1, double y1, double x2, double y2, const std::string& style) {
    return "<line x1=\"" + fmt("%.1f", x1) + "\" y1=\"" + fmt("%.1f", y1) + "\" x2=\"" +
           fmt("%.1f", x2) + "\" y2=\"" + fmt("%.1f", y2) + "\" " + style + "/>\n";
  };
  std::string body = text(16, 24, title, "font-size=\"15\" font-weight=\"bold\"");
  for (double decade = lo; decade <= hi * 1.001; decade *= 10)
    for (double step : {1.0, 2.0, 5.0}) {
      const double v = decade * step, y = y_of(v);
      if (v > hi * 1.001) break;
      body += line(left, y, left + plot_w, y, step == 1 ? "stroke=\"#ccc\"" : "stroke=\"#eee\"");
      body += text(left - 8, y + 4, fmt("%g", v), "text-anchor=\"end\"");
    }
  // Position labels every 1, 2 or 5 x 10^k tokens, at most 8 of them.
  double x_step = std::pow(10.0, std::floor(std::log10(x_max / 8)));
  for (double factor : {1.0, 2.0, 5.0, 10.0})
    if (x_max / (x_step * factor) <= 8) {
      x_step *= factor;
      break;
    }
  for (double x = 0; x <= x_max; x += x_step)
    body += text(x_of(x), top + plot_h + 20, fmt("%g", x), "text-anchor=\"middle\"");
  body += text(left + plot_w / 2, top + plot_h + 44, x_label, "text-anchor=\"middle\"");
  body += text(16, top + plot_h / 2, "perplexity (log scale)",
               "text-anchor=\"middle\" transform=\"rotate(-90 16 " + fmt("%.1f", top + plot_h / 2) + ")\"");
  for (size_t k = 0; k < series.size(); k++) {
    const std::string colour = kLineColours[k % std::size(kLineColours)];
    std::string points;
    for (auto [x, y] : series[k].points)
      points += fmt("%.1f", x_of(x)) + "," + fmt("%.1f", y_of(y)) + " ";
    body += "<polyline fill=\"none\" stroke=\"" + colour + "\" stroke-width=\"2\" points=\"" +
            points + "\"><title>" + escaped(series[k].name) + "</title></polyline>\n";
    const double ly = top + 8 + 20 * k;
    body += line(legend_x, ly, legend_x + 24, ly, "stroke=\"" + colour + "\" stroke-width=\"2\"");
    body += text(legend_x + 30, ly + 4, series[k].name);
  }
  return document(width, height, body);
}

namespace {

// Runs of consecutive positions in an ascending list: (first, length).
std::vector<std::pair<int32_t, int>> runs(const std::vector<int32_t>& positions) {
  std::vector<std::pair<int32_t, int>> out;
  for (int32_t p : positions) {
    if (!out.empty() && out.back().first + out.back().second == p) out.back().second++;
    else out.push_back({p, 1});
  }
  return out;
}

// A tick step of 1, 2 or 5 times a power of ten giving at most about 10 ticks.
int tick_step(int n) {
  for (int power = 1;; power *= 10)
    for (int m : {1, 2, 5})
      if (n / (power * m) <= 10) return power * m;
}

}  // namespace

std::string kept_map_svg(const std::string& title, const std::vector<std::string>& tokens,
                         const std::vector<KeptPanel>& panels, const KeptMarks& marks) {
  const int n = std::max<int>(1, int(tokens.size()));
  const bool spelled = n <= 96;  // short prompts get their text along the axis
  const double left = 118, plot_w = 1000, row_h = 2, layer_gap = 1, header_h = 34;
  const double top = 64;
  auto x_of = [&](double position) { return left + position * plot_w / n; };
  const char* kKept = "#2b6cb0";
  const char* kMerged = "#f28e2b";
  const char* kEvicted = "#e4e4e4";
  const char* kNote = "#8e44ad";

  std::string body = text(16, 24, title, "font-size=\"15\" font-weight=\"bold\"");
  // Legend.
  double lx = left;
  for (auto [colour, what] : {std::pair{kKept, "kept"}, {kMerged, "merged (shared with its pair layer)"},
                              {kEvicted, "evicted"}, {kNote, "layer note (e.g. lazy)"},
                              {"#f6d55c", "needle / key"}, {"#d62728", "question starts"}}) {
    body += "<rect x=\"" + fmt("%.1f", lx) + "\" y=\"36\" width=\"12\" height=\"12\" fill=\"" +
            colour + "\"/>\n";
    body += text(lx + 16, 46, what, "font-size=\"12\"");
    lx += 28 + 6.6 * std::string(what).size();
  }

  double y = top;
  for (const KeptPanel& p : panels) {
    const int layers = int(p.kept.size());
    const int heads = layers ? int(p.kept[0].size()) : 0;
    const double rows_h = layers * (heads * row_h + layer_gap);
    // "12 of 30 layers lazy" for each note the strategy gave.
    std::vector<std::pair<std::string, int>> notes;
    for (const std::string& note : p.layer_notes) {
      if (note.empty()) continue;
      auto it = std::find_if(notes.begin(), notes.end(), [&](const auto& n) { return n.first == note; });
      if (it == notes.end()) notes.push_back({note, 1});
      else it->second++;
    }
    char held[160];
    std::snprintf(held, sizeof held, "   KV held %s of %s (%.1f%%)",
                  format_bytes(double(p.bytes_held)).c_str(), format_bytes(double(p.bytes_full)).c_str(),
                  p.bytes_full ? 100.0 * double(p.bytes_held) / double(p.bytes_full) : 100.0);
    std::string summary = held;
    for (const auto& [note, count] : notes)
      summary += "; " + std::to_string(count) + " of " + std::to_string(layers) + " layers " + note;
    body += "<text x=\"" + fmt("%.1f", left) + "\" y=\"" + fmt("%.1f", y + 16) +
            "\"><tspan font-weight=\"bold\">" + escaped(p.label) + "</tspan><tspan font-size=\"12\" "
            "fill=\"#444\" xml:space=\"preserve\">" + escaped(summary) + "</tspan></text>\n";
    const double y0 = y + header_h - 10;
    body += "<g class=\"panel\" data-method=\"" + escaped(p.label) + "\">\n";
    for (int l = 0; l < layers; l++) {
      const double ly = y0 + l * (heads * row_h + layer_gap);
      if (l % 5 == 0)
        body += text(left - 14, ly + heads * row_h, "L" + std::to_string(l),
                     "text-anchor=\"end\" font-size=\"9\"");
      if (!p.layer_notes[l].empty())
        body += "<rect x=\"" + fmt("%.1f", left - 10) + "\" y=\"" + fmt("%.1f", ly) +
                "\" width=\"7\" height=\"" + fmt("%.1f", heads * row_h) + "\" fill=\"" + kNote +
                "\"><title>layer " + std::to_string(l) + ": " + escaped(p.layer_notes[l]) +
                "</title></rect>\n";
      for (int h = 0; h < heads; h++) {
        const std::vector<int32_t>& kept = p.kept[l][h];
        const std::vector<int32_t>& merged = p.merged[l][h];
        std::vector<int32_t> own;
        std::set_difference(kept.begin(), kept.end(), merged.begin(), merged.end(),
                            std::back_inserter(own));
        const double ry = ly + h * row_h;
        // One path per colour and row, a closed box per run; data-own / data-merged list
        // the runs as first:length, which is what a test (or a curious reader) counts.
        std::string own_runs, merged_runs, paths;
        for (auto [cells, colour, listed] :
             {std::tuple<const std::vector<int32_t>*, const char*, std::string*>{&own, kKept, &own_runs},
              {&merged, kMerged, &merged_runs}}) {
          std::string d;
          double at = left;
          for (auto [first, length] : runs(*cells)) {
            if (!listed->empty()) *listed += ' ';
            *listed += std::to_string(first) + ':' + std::to_string(length);
            const std::string w = fmt("%.2f", length * plot_w / n);
            d += 'm' + fmt("%.2f", x_of(first) - at) + " 0h" + w + 'v' + fmt("%g", row_h) + "h-" + w + 'z';
            at = x_of(first);
          }
          if (!d.empty())
            paths += "<path fill=\"" + std::string(colour) + "\" d=\"M" + fmt("%.1f", left) + " " +
                     fmt("%.1f", ry) + d + "\"/>";
        }
        body += "<g data-layer=\"" + std::to_string(l) + "\" data-head=\"" + std::to_string(h) +
                "\" data-kept=\"" + std::to_string(kept.size()) + "\" data-own=\"" + own_runs +
                "\" data-merged=\"" + merged_runs + "\">";
        body += "<rect x=\"" + fmt("%.1f", left) + "\" y=\"" + fmt("%.1f", ry) + "\" width=\"" +
                fmt("%.1f", plot_w) + "\" height=\"" + fmt("%.1f", row_h) + "\" fill=\"" + kEvicted + "\"/>";
        body += paths;
        body += "</g>\n";
      }
    }
    body += "</g>\n";
    // Marks over the rows: translucent needle bands, the question's first token.
    for (auto [begin, end] : marks.needles)
      body += "<rect x=\"" + fmt("%.2f", x_of(begin)) + "\" y=\"" + fmt("%.1f", y0 - 3) +
              "\" width=\"" + fmt("%.2f", std::max(1.5, (end - begin) * plot_w / n)) + "\" height=\"" +
              fmt("%.1f", rows_h + 6) + "\" fill=\"#f6d55c\" fill-opacity=\"0.45\"><title>needle: tokens " +
              std::to_string(begin) + "-" + std::to_string(end - 1) + "</title></rect>\n";
    if (marks.question_start >= 0)
      body += "<line x1=\"" + fmt("%.2f", x_of(marks.question_start)) + "\" x2=\"" +
              fmt("%.2f", x_of(marks.question_start)) + "\" y1=\"" + fmt("%.1f", y0 - 3) +
              "\" y2=\"" + fmt("%.1f", y0 + rows_h + 3) +
              "\" stroke=\"#d62728\" stroke-width=\"1.5\" stroke-dasharray=\"3 2\"/>\n";
    y = y0 + rows_h + 14;
  }

  // The prompt axis: ticks, and a hover strip that names every token (groups of tokens on
  // long prompts, so the file stays small).
  body += "<line x1=\"" + fmt("%.1f", left) + "\" x2=\"" + fmt("%.1f", left + plot_w) + "\" y1=\"" +
          fmt("%.1f", y) + "\" y2=\"" + fmt("%.1f", y) + "\" stroke=\"black\"/>\n";
  const int step = tick_step(n);
  for (int t = 0; t < n; t += step) {
    body += "<line x1=\"" + fmt("%.2f", x_of(t)) + "\" x2=\"" + fmt("%.2f", x_of(t)) + "\" y1=\"" +
            fmt("%.1f", y) + "\" y2=\"" + fmt("%.1f", y + 5) + "\" stroke=\"black\"/>\n";
    if (!spelled) body += text(x_of(t), y + 18, std::to_string(t), "text-anchor=\"middle\" font-size=\"11\"");
  }
  const int group = std::max(1, (n + 1023) / 1024);
  for (int t = 0; t < int(tokens.size()); t += group) {
    std::string words;
    for (int k = t; k < std::min<int>(t + group, int(tokens.size())); k++) words += tokens[k];
    body += "<rect x=\"" + fmt("%.2f", x_of(t)) + "\" y=\"" + fmt("%.1f", y) + "\" width=\"" +
            fmt("%.2f", group * plot_w / n) + "\" height=\"24\" fill=\"white\" fill-opacity=\"0\"><title>" +
            (group == 1 ? "token " + std::to_string(t) : "tokens " + std::to_string(t) + "-" +
                                                                std::to_string(t + group - 1)) +
            ": " + escaped(words) + "</title></rect>\n";
    if (spelled)
      body += text(x_of(t + 0.5), y + 10, tokens[t],
                   "font-size=\"10\" transform=\"rotate(60 " + fmt("%.2f", x_of(t + 0.5)) + " " +
                       fmt("%.1f", y + 10) + ")\"");
  }
  const double axis_h = spelled ? 90 : 40;
  body += text(left + plot_w / 2, y + axis_h - 8,
               "prompt position (" + std::to_string(tokens.size()) + " tokens; hover for the text)",
               "text-anchor=\"middle\"");
  return document(width_for(title, left + plot_w + 20), int(y + axis_h), body);
}

}  // namespace kvlm
