#include "eval/report.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>

#include "eval/stats.h"

namespace kvlm {

namespace {

std::string format(const char* fmt, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, value);
  return buf;
}

std::string percent(double share) { return format("%.0f", 100 * share); }

// The 6x6x6 cube of the 256-colour palette, which every terminal with colour has.
std::string ansi_background(Rgb c) {
  auto level = [](int v) { return (v * 5 + 127) / 255; };
  const int index = 16 + 36 * level(c.r) + 6 * level(c.g) + level(c.b);
  const bool light = 0.299 * c.r + 0.587 * c.g + 0.114 * c.b > 140;
  return "\033[48;5;" + std::to_string(index) + (light ? ";30m" : ";97m");
}
const char* kReset = "\033[0m";

// `text` right-aligned in `width`, on the accuracy's colour when `colour`.
std::string coloured_cell(const std::string& text, double accuracy, int width, bool colour) {
  std::string padded = std::string(std::max<int>(0, width - int(text.size())), ' ') + text;
  return colour ? ansi_background(accuracy_colour(accuracy)) + padded + kReset : padded;
}

std::string pad_right(const std::string& s, size_t width) {
  return s.size() >= width ? s : s + std::string(width - s.size(), ' ');
}

std::string pad_left(const std::string& s, size_t width) {
  return s.size() >= width ? s : std::string(width - s.size(), ' ') + s;
}

const char* kCannotNote =
    "* full scores below 50% here: the model cannot do this, whatever the KV method\n";
const char* kIntervalNote = "[low,high]: the 95% Wilson interval of the accuracy over the cell's trials\n";
const char* kDiffersNote =
    "! differs from full on the same prompts (exact sign test on the prompts one of the two "
    "gets right, p < 0.05)\n";

// A sweep cell: "67 [ 21, 94] " and its mark ("*": full cannot; "!": differs from full).
constexpr int kAccuracyWidth = 14;
std::string accuracy_text(const Cell& c) {
  const Interval i = wilson_interval(c.accuracy, c.trials);
  char text[64];
  std::snprintf(text, sizeof text, "%3.0f [%3.0f,%3.0f]%c", 100 * c.accuracy, 100 * i.low,
                100 * i.high, c.model_cannot ? '*' : c.differs_from_full() ? '!' : ' ');
  return text;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

}  // namespace

std::vector<Cell> summarise(const std::vector<TrialRecord>& records, const EvalGrid& grid,
                            bool by_depth) {
  struct Sums {
    Cell cell;
    double prompt_tokens = 0, prefill_seconds = 0, generated_tokens = 0, decode_seconds = 0;
  };
  std::map<std::tuple<int, int, double>, Sums> sums;  // (method, ctx, depth)
  // Which prompts `full` got exactly right, for the paired comparison: (ctx, depth, trial).
  std::map<std::tuple<int, double, int>, bool> full_right;
  for (const TrialRecord& r : records)
    if (grid.methods[r.method].spec == "full") full_right[{r.ctx, r.depth, r.trial}] = r.outcome.score.strict;
  std::map<std::tuple<int, int, double>, std::pair<int, int>> split;  // (only full, only the method)
  for (const TrialRecord& r : records) {
    const double depth = by_depth ? r.depth : -1;
    Sums& s = sums[{r.method, r.ctx, depth}];
    Cell& c = s.cell;
    c.method = r.method, c.ctx = r.ctx, c.depth = depth;
    c.trials++;
    c.accuracy += r.outcome.score.recall;
    c.strict += r.outcome.score.strict;
    c.kv_bytes_held += double(r.outcome.kv_bytes_held);
    c.kv_bytes_full += double(r.outcome.kv_bytes_full);
    s.prompt_tokens += r.outcome.prompt_tokens;
    s.prefill_seconds += r.outcome.prefill_seconds;
    s.generated_tokens += r.outcome.generated_tokens;
    s.decode_seconds += r.outcome.decode_seconds;
    if (grid.methods[r.method].spec == "full") continue;
    if (auto it = full_right.find({r.ctx, r.depth, r.trial}); it != full_right.end()) {
      std::pair<int, int>& counts = split[{r.method, r.ctx, depth}];
      if (it->second && !r.outcome.score.strict) counts.first++;
      if (!it->second && r.outcome.score.strict) counts.second++;
      c.p_vs_full = 0;  // compared; the p-value follows
    }
  }
  std::vector<Cell> out;
  for (auto& [key, s] : sums) {
    Cell c = s.cell;
    if (c.p_vs_full >= 0) c.p_vs_full = sign_test_p(split[key].first, split[key].second);
    c.accuracy /= c.trials, c.strict /= c.trials;
    c.kv_bytes_held /= c.trials, c.kv_bytes_full /= c.trials;
    // Total tokens over total time, so long prompts weigh what they cost.
    c.prefill_tokens_per_s = s.prefill_seconds > 0 ? s.prompt_tokens / s.prefill_seconds : 0;
    c.decode_tokens_per_s = s.decode_seconds > 0 ? s.generated_tokens / s.decode_seconds : 0;
    out.push_back(c);
  }
  // Cells that `full` (when it ran) fails on the same prompts.
  for (const Cell& baseline : out) {
    if (grid.methods[baseline.method].spec != "full" || baseline.accuracy >= 0.5) continue;
    for (Cell& c : out)
      if (c.ctx == baseline.ctx && c.depth == baseline.depth) c.model_cannot = true;
  }
  return out;
}

Rgb accuracy_colour(double a) {
  const Rgb red{215, 48, 39}, yellow{254, 224, 139}, green{26, 152, 80};
  a = std::clamp(a, 0.0, 1.0);
  const Rgb& from = a < 0.5 ? red : yellow;
  const Rgb& to = a < 0.5 ? yellow : green;
  const double t = a < 0.5 ? a * 2 : a * 2 - 1;
  auto mix = [t](int x, int y) { return int(std::lround(x + (y - x) * t)); };
  return {mix(from.r, to.r), mix(from.g, to.g), mix(from.b, to.b)};
}

std::string heatmap_text(const std::vector<Cell>& cells, bool colour) {
  std::vector<int> ctxs;
  std::vector<double> depths;
  for (const Cell& c : cells) {
    if (std::find(ctxs.begin(), ctxs.end(), c.ctx) == ctxs.end()) ctxs.push_back(c.ctx);
    if (std::find(depths.begin(), depths.end(), c.depth) == depths.end()) depths.push_back(c.depth);
  }
  std::sort(ctxs.begin(), ctxs.end());
  std::sort(depths.begin(), depths.end());
  constexpr int kWidth = 6;
  std::string out = "accuracy (%) by context (rows, tokens) and depth (columns)\n" +
                    pad_right("context", 8);
  for (double d : depths) out += pad_left(format("%.2f", d), kWidth);
  out += "  |   all\n";
  bool any_cannot = false;
  for (int ctx : ctxs) {
    out += pad_left(std::to_string(ctx), 7) + " ";
    double sum = 0;
    int trials = 0;
    for (double d : depths) {
      auto it = std::find_if(cells.begin(), cells.end(),
                             [&](const Cell& c) { return c.ctx == ctx && c.depth == d; });
      if (it == cells.end()) {
        out += pad_left("- ", kWidth);
        continue;
      }
      any_cannot |= it->model_cannot;
      out += coloured_cell(percent(it->accuracy) + (it->model_cannot ? "*" : " "), it->accuracy,
                           kWidth, colour);
      sum += it->accuracy * it->trials;
      trials += it->trials;
    }
    const double all = trials ? sum / trials : 0;
    out += "  | " + coloured_cell(percent(all) + " ", all, kWidth - 1, colour) + "\n";
  }
  return out + (any_cannot ? kCannotNote : "");
}

std::string sweep_text(const std::vector<Cell>& cells, const EvalGrid& grid, bool colour) {
  std::vector<std::string> rows, budgets;
  for (const MethodRun& m : grid.methods) {
    const std::string row = m.method + (m.budget.empty() ? " (no budget)" : "");
    if (std::find(rows.begin(), rows.end(), row) == rows.end()) rows.push_back(row);
    if (!m.budget.empty() && std::find(budgets.begin(), budgets.end(), m.budget) == budgets.end())
      budgets.push_back(m.budget);
  }
  if (budgets.empty()) budgets.push_back("");
  auto find = [&](const std::string& row, const std::string& budget) -> const Cell* {
    for (const Cell& c : cells) {
      const MethodRun& m = grid.methods[c.method];
      if (m.method + (m.budget.empty() ? " (no budget)" : "") == row &&
          (m.budget.empty() || m.budget == budget))
        return &c;
    }
    return nullptr;
  };
  size_t label_width = 8;
  for (const std::string& r : rows) label_width = std::max(label_width, r.size() + 2);
  auto cost_text = [](const Cell& c) {
    return format("%.1f", c.kv_bytes_held / (1 << 20)) + " / " + format("%.1f", c.decode_tokens_per_s);
  };
  size_t width = kAccuracyWidth + 2;  // every column keeps two spaces before its widest entry
  for (const std::string& b : budgets) width = std::max(width, b.size() + 2);
  for (const Cell& c : cells) width = std::max(width, cost_text(c).size() + 2);

  std::string head = pad_right("method", label_width);
  for (const std::string& b : budgets) head += pad_left(b, width);
  std::string accuracy = "accuracy (%)\n" + head + "\n";
  std::string cost = "KV held (MiB) / decode speed (tokens/s)\n" + head + "\n";
  bool any_cannot = false, any_differs = false;
  for (const std::string& row : rows) {
    accuracy += pad_right(row, label_width);
    cost += pad_right(row, label_width);
    for (const std::string& b : budgets) {
      const Cell* c = find(row, b);
      if (!c) {
        accuracy += pad_left("- ", width);  // the space is where a number's "*" would go
        cost += pad_left("-", width);
        continue;
      }
      any_cannot |= c->model_cannot;
      any_differs |= c->differs_from_full() && !c->model_cannot;
      accuracy += std::string(width - kAccuracyWidth, ' ') +
                  coloured_cell(accuracy_text(*c), c->accuracy, kAccuracyWidth, colour);
      cost += pad_left(cost_text(*c), width);
    }
    accuracy += "\n";
    cost += "\n";
  }
  bool any_missing = false;
  for (const std::string& row : rows)
    for (const std::string& b : budgets) any_missing |= find(row, b) == nullptr;
  return accuracy + kIntervalNote + (any_cannot ? kCannotNote : "") +
         (any_differs ? kDiffersNote : "") +
         (any_missing ? "- the method cannot take this budget (see stderr)\n" : "") + "\n" + cost;
}

std::string cells_csv(const std::vector<Cell>& cells, const EvalGrid& grid) {
  std::string out =
      "method,budget,spec,query_mode,ctx,depth,trials,accuracy,accuracy_low,accuracy_high,"
      "strict,kv_bytes_held,kv_bytes_full,kv_kept_share,prefill_tokens_per_s,"
      "decode_tokens_per_s,model_cannot,p_vs_full\n";
  for (const Cell& c : cells) {
    const MethodRun& m = grid.methods[c.method];
    char numbers[320];
    const Interval interval = wilson_interval(c.accuracy, c.trials);
    std::snprintf(numbers, sizeof numbers, "%d,%s,%d,%.4f,%.4f,%.4f,%.4f,%.0f,%.0f,%.4f,%.1f,%.2f,%d,%s",
                  c.ctx, c.depth < 0 ? "" : format("%.4f", c.depth).c_str(), c.trials, c.accuracy,
                  interval.low, interval.high, c.strict, c.kv_bytes_held, c.kv_bytes_full,
                  c.kv_bytes_full > 0 ? c.kv_bytes_held / c.kv_bytes_full : 0.0,
                  c.prefill_tokens_per_s, c.decode_tokens_per_s, int(c.model_cannot),
                  c.p_vs_full < 0 ? "" : format("%.4g", c.p_vs_full).c_str());
    out += csv_field(m.method) + "," + csv_field(m.budget) + "," + csv_field(m.spec) + "," +
           query_mode_name(grid.mode) + "," + numbers + "\n";
  }
  return out;
}

nlohmann::json cells_json(const std::vector<Cell>& cells, const EvalGrid& grid) {
  nlohmann::json out = nlohmann::json::array();
  for (const Cell& c : cells) {
    const MethodRun& m = grid.methods[c.method];
    out.push_back({{"method", m.method}, {"budget", m.budget}, {"spec", m.spec}, {"ctx", c.ctx},
                   {"depth", c.depth < 0 ? nlohmann::json() : nlohmann::json(c.depth)},
                   {"trials", c.trials}, {"accuracy", c.accuracy}, {"strict", c.strict},
                   {"kv_bytes_held", c.kv_bytes_held}, {"kv_bytes_full", c.kv_bytes_full},
                   {"prefill_tokens_per_s", c.prefill_tokens_per_s},
                   {"decode_tokens_per_s", c.decode_tokens_per_s},
                   {"model_cannot", c.model_cannot},
                   {"accuracy_low", wilson_interval(c.accuracy, c.trials).low},
                   {"accuracy_high", wilson_interval(c.accuracy, c.trials).high},
                   {"p_vs_full", c.p_vs_full < 0 ? nlohmann::json() : nlohmann::json(c.p_vs_full)}});
  }
  return out;
}

std::string run_json_text(const nlohmann::json& doc) {
  std::string out = "{";
  const char* separator = "\n";
  for (const auto& [key, value] : doc.items()) {
    out += separator + std::string("  ") + nlohmann::json(key).dump() + ": ";
    separator = ",\n";
    if (!value.is_array() || value.empty() || !value.front().is_object()) {
      out += value.dump();
      continue;
    }
    out += "[";
    const char* item_separator = "\n    ";
    for (const nlohmann::json& item : value) {
      out += item_separator + item.dump();
      item_separator = ",\n    ";
    }
    out += "\n  ]";
  }
  return out + "\n}\n";
}

namespace {

// A count such as ctx or trials. nlohmann's get<int>() converts a fraction or a value
// beyond int unchecked (undefined behaviour for a large fraction), so the type and range
// are checked first, failing as a mistyped field does.
int count_of(const nlohmann::json& cell, const char* key) {
  const nlohmann::json& v = cell.at(key);
  if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT_MAX)
    throw nlohmann::json::type_error::create(
        302, std::string(key) + " must be an integer in [0, " + std::to_string(INT_MAX) +
                 "], but is " + v.dump(), &v);
  return v.get<int>();
}

}  // namespace

std::vector<Cell> cells_from_json(const nlohmann::json& cells, EvalGrid& grid) {
  std::vector<Cell> out;
  for (const nlohmann::json& j : cells) {
    const MethodRun run{j.at("spec").get<std::string>(), j.at("method").get<std::string>(),
                        j.at("budget").get<std::string>()};
    auto same = [&](const MethodRun& m) { return m.spec == run.spec; };
    auto it = std::find_if(grid.methods.begin(), grid.methods.end(), same);
    if (it == grid.methods.end()) it = grid.methods.insert(grid.methods.end(), run);
    Cell c;
    c.method = int(it - grid.methods.begin());
    c.ctx = count_of(j, "ctx");
    c.depth = j.at("depth").is_null() ? -1 : j.at("depth").get<double>();
    c.trials = count_of(j, "trials");
    c.accuracy = j.at("accuracy").get<double>();
    c.strict = j.at("strict").get<double>();
    c.kv_bytes_held = j.at("kv_bytes_held").get<double>();
    c.kv_bytes_full = j.at("kv_bytes_full").get<double>();
    c.prefill_tokens_per_s = j.at("prefill_tokens_per_s").get<double>();
    c.decode_tokens_per_s = j.at("decode_tokens_per_s").get<double>();
    c.model_cannot = j.at("model_cannot").get<bool>();
    // Files written before the comparison existed have no p_vs_full.
    if (j.contains("p_vs_full") && !j.at("p_vs_full").is_null()) c.p_vs_full = j.at("p_vs_full").get<double>();
    out.push_back(c);
  }
  return out;
}

SavedReport report_from_json(const nlohmann::json& doc, const std::string& command,
                             const std::string& source) {
  SavedReport report;
  try {
    const std::string made_by = doc.at("command").get<std::string>();
    if (made_by != command)
      throw std::invalid_argument(source + ": written by kvlm " + made_by + ", not kvlm " + command);
    report.title = doc.at("title").get<std::string>();
    report.cells = cells_from_json(doc.at("cells"), report.grid);
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error(source + ": not a kvlm " + command + " --json file (" + e.what() + ")");
  }
  if (report.cells.empty()) throw std::runtime_error(source + ": the file has no cells");
  return report;
}

nlohmann::json trials_json(const std::vector<TrialRecord>& records, const EvalGrid& grid) {
  nlohmann::json out = nlohmann::json::array();
  for (const TrialRecord& r : records) {
    const TrialOutcome& o = r.outcome;
    out.push_back({{"spec", grid.methods[r.method].spec}, {"prompt", r.prompt}, {"ctx", r.ctx},
                   {"depth", r.depth}, {"trial", r.trial}, {"expected", r.expected.items},
                   {"answer_kind", int(r.expected.kind)}, {"answer", o.answer},
                   {"recall", o.score.recall}, {"strict", o.score.strict},
                   {"prompt_tokens", o.prompt_tokens}, {"prefill_seconds", o.prefill_seconds},
                   {"generated_tokens", o.generated_tokens}, {"decode_seconds", o.decode_seconds},
                   {"kv_bytes_held", o.kv_bytes_held}, {"kv_bytes_full", o.kv_bytes_full}});
    if (!r.kept.empty()) out.back()["kept"] = r.kept;
  }
  return out;
}

std::vector<TrialRecord> trials_from_json(const nlohmann::json& trials, const EvalGrid& grid) {
  std::vector<TrialRecord> out;
  for (const nlohmann::json& j : trials) {
    const std::string spec = j.at("spec").get<std::string>();
    const auto it = std::find_if(grid.methods.begin(), grid.methods.end(),
                                 [&](const MethodRun& m) { return m.spec == spec; });
    if (it == grid.methods.end())
      throw std::invalid_argument("a trial of method " + spec + ", which this grid does not run");
    TrialRecord r;
    r.method = int(it - grid.methods.begin());
    r.prompt = count_of(j, "prompt");
    r.ctx = count_of(j, "ctx");
    r.depth = j.at("depth").get<double>();
    r.trial = count_of(j, "trial");
    r.expected.items = j.at("expected").get<std::vector<std::string>>();
    r.expected.kind = AnswerKind(count_of(j, "answer_kind"));
    TrialOutcome& o = r.outcome;
    o.answer = j.at("answer").get<std::string>();
    o.score = {j.at("recall").get<double>(), j.at("strict").get<bool>()};
    o.prompt_tokens = count_of(j, "prompt_tokens");
    o.prefill_seconds = j.at("prefill_seconds").get<double>();
    o.generated_tokens = count_of(j, "generated_tokens");
    o.decode_seconds = j.at("decode_seconds").get<double>();
    o.kv_bytes_held = j.at("kv_bytes_held").get<size_t>();
    o.kv_bytes_full = j.at("kv_bytes_full").get<size_t>();
    if (j.contains("kept")) r.kept = j.at("kept").get<std::vector<std::vector<std::vector<int32_t>>>>();
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace kvlm
