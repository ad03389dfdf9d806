// What an evaluation shows: trials summed up into cells, the terminal heatmap (context x
// depth) and sweep table (method x budget), and the CSV and JSON files.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "eval/runner.h"

namespace kvlm {

struct Cell {
  int method = 0;      // index into EvalGrid::methods
  int ctx = 0;
  double depth = -1;   // -1: over every depth the trials used
  int trials = 0;
  double accuracy = 0;  // mean recall (the share right for one-number answers)
  double strict = 0;    // share of answers exactly right
  double kv_bytes_held = 0, kv_bytes_full = 0;  // mean, before the answer
  double prefill_tokens_per_s = 0, decode_tokens_per_s = 0;
  // `full` scores below 50% on the same prompts: the model cannot do this, whatever the
  // method, so the cell says nothing about compression.
  bool model_cannot = false;
  // Against `full` on the same prompts (exactly right or not): the exact sign test's
  // two-sided p-value (eval/stats.h); -1 when not compared (full itself, or no full).
  double p_vs_full = -1;
  bool differs_from_full() const { return p_vs_full >= 0 && p_vs_full < 0.05; }
};

// One cell per (method, ctx, depth), or per (method, ctx) with by_depth false. A cell's
// 95% interval is wilson_interval(accuracy, trials).
std::vector<Cell> summarise(const std::vector<TrialRecord>& records, const EvalGrid& grid,
                            bool by_depth);

// Red (0%) through yellow to green (100%).
struct Rgb {
  int r, g, b;
};
Rgb accuracy_colour(double accuracy);

// Rows = contexts, columns = depths, then every depth together; cells in percent.
std::string heatmap_text(const std::vector<Cell>& cells, bool colour);
// Rows = methods, columns = budgets: accuracy, then KV held and decode speed.
std::string sweep_text(const std::vector<Cell>& cells, const EvalGrid& grid, bool colour);

std::string cells_csv(const std::vector<Cell>& cells, const EvalGrid& grid);
nlohmann::json cells_json(const std::vector<Cell>& cells, const EvalGrid& grid);
// A run's --json document as text: its fields one per line, and each object of an array
// of objects (cells, trials_detail) on a line of its own, compact. Indented throughout, a sweep of
// 4,032 answers took 2 MiB, a third of it indentation; a line per answer also keeps the
// file easy to grep and diff.
std::string run_json_text(const nlohmann::json& doc);
// The inverse of cells_json: the cells, and the grid's methods in the order they ran.
// Throws nlohmann::json::exception on a missing or mistyped field.
std::vector<Cell> cells_from_json(const nlohmann::json& cells, EvalGrid& grid);

// What --replot shows again: an earlier run's --json document, as kvlm `command` wrote it.
struct SavedReport {
  std::string title;
  EvalGrid grid;  // the methods, in the order they ran
  std::vector<Cell> cells;
};
// Throws std::invalid_argument when another command wrote `doc`, and std::runtime_error
// ("<source>: ...") when it is not such a document or has no cells.
SavedReport report_from_json(const nlohmann::json& doc, const std::string& command,
                             const std::string& source);

nlohmann::json trials_json(const std::vector<TrialRecord>& records, const EvalGrid& grid);
// The inverse of trials_json, for the methods of `grid` (by spec). Throws
// nlohmann::json::exception on a missing or mistyped field, std::invalid_argument on a
// method the grid does not hold.
std::vector<TrialRecord> trials_from_json(const nlohmann::json& trials, const EvalGrid& grid);

}  // namespace kvlm
