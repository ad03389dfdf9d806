#include "eval/svg.h"

#include <algorithm>
#include <cstdio>

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
  std::vector<int> ctxs;
  std::vector<double> depths;
  for (const Cell& c : cells) {
    if (std::find(ctxs.begin(), ctxs.end(), c.ctx) == ctxs.end()) ctxs.push_back(c.ctx);
    if (std::find(depths.begin(), depths.end(), c.depth) == depths.end()) depths.push_back(c.depth);
  }
  std::sort(ctxs.begin(), ctxs.end());
  std::sort(depths.begin(), depths.end());
  const double cell_w = 52, cell_h = 34, left = 90, top = 56;
  const double grid_w = cell_w * depths.size(), grid_h = cell_h * ctxs.size();
  const double legend_x = left + grid_w + 24;
  const int width = width_for(title, legend_x + 70);
  const int height = int(top + grid_h + 76);

  std::string body = text(16, 24, title, "font-size=\"15\" font-weight=\"bold\"");
  bool any_cannot = false;
  for (size_t row = 0; row < ctxs.size(); row++) {
    const double y = top + cell_h * row;
    body += text(left - 10, y + cell_h / 2 + 4, std::to_string(ctxs[row]), "text-anchor=\"end\"");
    for (size_t col = 0; col < depths.size(); col++) {
      auto it = std::find_if(cells.begin(), cells.end(), [&](const Cell& c) {
        return c.ctx == ctxs[row] && c.depth == depths[col];
      });
      if (it == cells.end()) continue;
      const double x = left + cell_w * col;
      const Rgb colour = accuracy_colour(it->accuracy);
      body += "<rect x=\"" + fmt("%.1f", x) + "\" y=\"" + fmt("%.1f", y) + "\" width=\"" +
              fmt("%.1f", cell_w) + "\" height=\"" + fmt("%.1f", cell_h) + "\" fill=\"" +
              rgb(colour) + "\" stroke=\"white\"><title>context " + std::to_string(it->ctx) +
              ", depth " + fmt("%.2f", it->depth) + ": " + fmt("%.0f", 100 * it->accuracy) +
              "% of " + std::to_string(it->trials) + "</title></rect>\n";
      const bool light = 0.299 * colour.r + 0.587 * colour.g + 0.114 * colour.b > 140;
      any_cannot |= it->model_cannot;
      body += text(x + cell_w / 2, y + cell_h / 2 + 4,
                   fmt("%.0f", 100 * it->accuracy) + (it->model_cannot ? "*" : ""),
                   std::string("text-anchor=\"middle\" fill=\"") + (light ? "black" : "white") + "\"");
    }
  }
  for (size_t col = 0; col < depths.size(); col++)
    body += text(left + cell_w * (col + 0.5), top + grid_h + 18, fmt("%.2f", depths[col]),
                 "text-anchor=\"middle\"");
  body += text(left + grid_w / 2, top + grid_h + 40, "needle depth (0 = start of the text, 1 = end)",
               "text-anchor=\"middle\"");
  body += text(18, top + grid_h / 2, "context (tokens)",
               "text-anchor=\"middle\" transform=\"rotate(-90 18 " + fmt("%.1f", top + grid_h / 2) + ")\"");
  // Colour scale, 100% at the top.
  body += "<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">";
  for (int i = 0; i <= 10; i++)
    body += "<stop offset=\"" + fmt("%.1f", i / 10.0) + "\" stop-color=\"" + rgb(accuracy_colour(i / 10.0)) + "\"/>";
  body += "</linearGradient></defs>\n";
  const double scale_h = std::max(grid_h, 100.0);
  body += "<rect x=\"" + fmt("%.1f", legend_x) + "\" y=\"" + fmt("%.1f", top) + "\" width=\"14\" height=\"" +
          fmt("%.1f", scale_h) + "\" fill=\"url(#scale)\"/>\n";
  body += text(legend_x + 20, top + 10, "100%");
  body += text(legend_x + 20, top + scale_h, "0%");
  if (any_cannot) body += text(16, height - 10, kCannotNote, "font-size=\"11\"");
  return document(width, height, body);
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
  const int width = width_for(title, legend_x + 190);
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
      markers += "<circle cx=\"" + x + "\" cy=\"" + y + "\" r=\"3.5\" fill=\"" + colour +
                 "\"><title>" + escaped(m.method + " " + m.budget) + ": " +
                 fmt("%.0f", 100 * c.accuracy) + "%</title></circle>\n";
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
                     " px above or below their value so equal scores stay visible; hover a point for its number.",
                 "font-size=\"11\" fill=\"#555\"");
  if (any_cannot) body += text(16, height - 10, kCannotNote + 2, "font-size=\"11\"");  // no "* "
  return document(width, height, body);
}

}  // namespace kvlm
