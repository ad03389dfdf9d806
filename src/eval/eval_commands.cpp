#include "eval/eval_commands.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include "session.h"
#include "util/interrupt.h"
#include "util/output_file.h"
#include "eval/report.h"
#include "eval/runner.h"
#include "eval/kept.h"
#include "eval/svg.h"
#include "model/json_file.h"
#include "util/parse_number.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

double parse_double(const std::string& text, const std::string& flag) {
  const std::optional<double> v = parse_finite(text);
  if (!v) throw std::invalid_argument(flag + " " + text + ": '" + text + "' is not a number");
  return *v;
}

// The one place where the evaluations meet chat templates: the user's text goes where the
// template (the model's own or --template) puts a user message.
Framing task_framing(const Session& session, int chat) {
  const ChatTemplate tmpl = session.chat_template();
  const bool use_template = chat == 1 || (chat == -1 && tmpl.kind() != ChatTemplate::Kind::Plain);
  if (!use_template) return {};
  const std::string marker = "\x1f";
  std::string turn = tmpl.render({{"user", marker}}, true);
  // The prompt builder adds the tokenizer's BOS itself, so a BOS the template wrote goes.
  const Tokenizer& tok = session.tokenizer();
  if (tok.bos_id() >= 0 && tok.add_bos_default()) {
    const std::string bos = tok.token_bytes(tok.bos_id());
    if (!bos.empty() && turn.rfind(bos, 0) == 0) turn.erase(0, bos.size());
  }
  const size_t at = turn.find(marker);
  return {turn.substr(0, at), turn.substr(at + marker.size())};
}

std::vector<Sentence> read_haystack(const std::string& path) {
  if (path.empty()) return {};
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("--haystack " + path + ": cannot read the file");
  std::stringstream text;
  text << in.rdbuf();
  std::vector<Sentence> sentences = split_sentences(text.str());
  if (sentences.empty()) throw std::runtime_error("--haystack " + path + ": no sentences in it");
  return sentences;
}

// "64" -> budget=64; "budget=64" and "ratio=0.25" as they are. A budget that no method can
// take (0) is refused here; one that only some methods refuse leaves those out (below).
std::pair<std::string, std::string> budget_param(const std::string& item) {
  auto checked = [&](std::string key, std::string value) {
    if (key == "budget" && !value.empty() && value.find_first_not_of('0') == std::string::npos)
      throw std::invalid_argument("--budgets " + item + ": a budget keeps at least one token");
    return std::pair{key, value};
  };
  for (const std::string key : {"budget", "ratio"})
    if (item.size() > key.size() && item.compare(0, key.size(), key) == 0 && item[key.size()] == '=')
      return checked(key, item.substr(key.size() + 1));
  if (!item.empty() && item.find_first_not_of("0123456789") == std::string::npos)
    return checked("budget", item);
  throw std::invalid_argument("--budgets " + item + ": give a token count (64), budget=N or ratio=R");
}

bool takes_budget(const MethodSpec& part) {
  const MethodInfo* info = find_method(part.name);
  return info && info->traits.budgeted;
}

// Every method of the list at every budget; methods without a budget parameter once.
// `full` joins the list when missing: it tells whether the model can do the task at all.
std::vector<MethodRun> sweep_methods(const std::string& kv_list, const std::string& budgets) {
  std::vector<KVSpec> specs = parse_kv_list(kv_list);
  const KVSpec full = KVSpec::parse("full");
  if (std::find(specs.begin(), specs.end(), full) == specs.end()) {
    std::fprintf(stderr, "sweep: adding full, the baseline that says what the model can do\n");
    specs.insert(specs.begin(), full);
  }
  std::vector<std::pair<std::string, std::string>> params;
  for (const std::string& b : split(budgets, ',')) params.push_back(budget_param(b));
  if (params.empty()) throw std::invalid_argument("--budgets: give at least one budget");
  std::vector<MethodRun> runs;
  for (const KVSpec& spec : specs) {
    bool budgeted = false;
    for (const MethodSpec& part : spec.parts) {
      if (!takes_budget(part)) continue;
      budgeted = true;
      if (part.has("budget") || part.has("ratio"))
        throw std::invalid_argument("--kv-list " + spec.text() + ": the budget comes from --budgets");
    }
    if (!budgeted) {
      runs.push_back({spec.text(), spec.text(), ""});
      continue;
    }
    // A budget the method cannot take (e.g. not above its window) is left out with a note;
    // a method that takes none of them is an error.
    std::string first_error;
    size_t taken = 0;
    for (const auto& [key, value] : params) {
      KVSpec with_budget = spec;
      for (MethodSpec& part : with_budget.parts)
        if (takes_budget(part)) part.set(key, value);
      try {
        make_strategy(with_budget);
        runs.push_back({with_budget.text(), spec.text(), key + "=" + value});
        taken++;
      } catch (const std::invalid_argument& e) {
        if (first_error.empty()) first_error = e.what();
        std::fprintf(stderr, "sweep: leaving out %s: %s\n", with_budget.text().c_str(), e.what());
      }
    }
    if (taken == 0) throw std::invalid_argument(first_error);
  }
  return runs;
}

}  // namespace

int parse_token_count(const std::string& text, const std::string& flag) {
  const bool kilo = !text.empty() && (text.back() == 'k' || text.back() == 'K');
  const double v = parse_double(kilo ? text.substr(0, text.size() - 1) : text, flag) * (kilo ? 1024 : 1);
  if (v < 1 || v > (1 << 24) || v != std::floor(v))
    throw std::invalid_argument(flag + " " + text + ": give a whole number of tokens, e.g. 4096 or 4k");
  return int(v);
}

std::vector<double> parse_depths(const std::string& text, const std::string& flag) {
  std::vector<double> depths;
  const std::vector<std::string> range = split(text, ':');
  if (range.size() == 3) {
    const double from = parse_double(range[0], flag), to = parse_double(range[1], flag),
                 step = parse_double(range[2], flag);
    if (step <= 0 || to < from)
      throw std::invalid_argument(flag + " " + text + ": A:B:STEP needs A <= B and STEP > 0");
    const int n = int(std::floor((to - from) / step + 1e-9)) + 1;
    for (int i = 0; i < n; i++) depths.push_back(std::min(to, from + i * step));
  } else if (range.size() == 1) {
    for (const std::string& item : split(text, ',')) depths.push_back(parse_double(item, flag));
  }
  if (depths.empty())
    throw std::invalid_argument(flag + " " + text + ": give a depth, a list (0,0.5,1) or A:B:STEP");
  for (double d : depths)
    if (d < 0 || d > 1)
      throw std::invalid_argument(flag + " " + text + ": depths lie in [0, 1] (0 = start, 1 = end)");
  return depths;
}

std::pair<int, int> parse_shard(const std::string& text) {
  const std::vector<std::string> parts = split(text, '/');
  const std::optional<double> k = parts.size() == 2 ? parse_finite(parts[0]) : std::nullopt,
                              n = parts.size() == 2 ? parse_finite(parts[1]) : std::nullopt;
  if (!k || !n || *k != std::floor(*k) || *n != std::floor(*n) || *k < 0 || *n < 1 || *k >= *n ||
      *n > (1 << 20))
    throw std::invalid_argument("--shard " + text + ": give K/N with 0 <= K < N, e.g. 0/16 for the "
                                "first of 16 shards");
  return {int(*k), int(*n)};
}

namespace {

const char* command_name(EvalCommand command) {
  switch (command) {
    case EvalCommand::Passkey: return "passkey";
    case EvalCommand::Needle: return "needle";
    case EvalCommand::Sweep: return "sweep";
  }
  return "?";
}

TaskOptions task_options(EvalCommand command, const EvalOptions& o) {
  TaskOptions task{Task::Passkey, o.needles};
  if (command == EvalCommand::Needle) task.task = parse_task(o.task);
  if (command == EvalCommand::Sweep && o.task != "passkey") {
    const bool needle = o.task == "needle" || o.task.rfind("needle:", 0) == 0;
    if (!needle) throw std::invalid_argument("--task " + o.task + ": give passkey or needle:<variant>");
    task.task = o.task == "needle" ? Task::Single : parse_task(o.task.substr(7));
  }
  return task;
}

// Everything the flags alone can refute is checked here, before the model loads.
EvalGrid make_grid(EvalCommand command, const RuntimeOptions& rt, const EvalOptions& o) {
  EvalGrid grid;
  grid.trials = o.trials;
  grid.seed = o.seed;
  grid.mode = parse_query_mode(o.query_mode);
  grid.share_prefill = o.share_prefill;
  grid.record_kept = o.json_kept;
  if (!o.shard.empty()) std::tie(grid.shard, grid.shards) = parse_shard(o.shard);
  if (!o.depths.empty()) grid.depths = parse_depths(o.depths, "--depths");
  if (command == EvalCommand::Needle) {
    for (const std::string& c : split(o.ctx_list, ','))
      grid.ctx_list.push_back(parse_token_count(c, "--ctx-list"));
    if (grid.ctx_list.empty()) throw std::invalid_argument("--ctx-list: give at least one length");
  } else {
    grid.ctx_list = {parse_token_count(o.ctx, "--ctx")};
  }
  if (command == EvalCommand::Sweep) {
    grid.methods = sweep_methods(o.kv_list, o.budgets);
  } else if (!o.kv_list.empty()) {  // several methods, each as given
    for (const KVSpec& spec : parse_kv_list(o.kv_list))
      grid.methods.push_back({spec.text(), spec.text(), ""});
  } else {
    grid.methods = {{rt.kv, rt.kv, ""}};
  }
  for (const MethodRun& m : grid.methods) make_strategy(m.spec);  // fail before loading
  return grid;
}

// One line that says what ran: task, length or method, query mode, framing, trials, seed.
std::string describe(EvalCommand command, const EvalOptions& o, const TaskOptions& task,
                     const EvalGrid& grid, bool chat) {
  std::ostringstream s;
  if (command == EvalCommand::Sweep) s << o.task << " at " << grid.ctx_list[0] << " tokens";
  else
    s << (command == EvalCommand::Needle ? "needle " + task_name(task.task) : "passkey") << ", kv "
      << (grid.methods.size() == 1 ? grid.methods[0].spec
                                   : std::to_string(grid.methods.size()) + " methods");
  s << ", query " << query_mode_name(grid.mode) << ", " << (chat ? "chat template" : "raw prompt")
    << ", " << grid.trials << (grid.trials == 1 ? " trial" : " trials")
    << (grid.depths.empty() ? " at seeded random depths" : " per cell") << ", seed " << o.seed;
  return s.str();
}

// The terminal table or heatmap, and the --csv and --svg files.
void show_results(EvalCommand command, const std::string& title, const std::vector<Cell>& cells,
                  const EvalGrid& grid, const EvalOptions& o) {
  const bool by_depth = command != EvalCommand::Sweep;
  const bool colour = isatty(STDOUT_FILENO) && !(std::getenv("NO_COLOR") && *std::getenv("NO_COLOR"));
  // passkey and needle: a heatmap per method (under its name when there are several).
  std::vector<HeatmapPanel> panels;
  if (by_depth)
    for (size_t m = 0; m < grid.methods.size(); m++) {
      panels.push_back({grid.methods[m].spec, {}});
      for (const Cell& c : cells)
        if (c.method == int(m)) panels.back().cells.push_back(c);
    }
  std::printf("%s\n", title.c_str());
  if (!by_depth) std::fputs(sweep_text(cells, grid, colour).c_str(), stdout);
  for (const HeatmapPanel& panel : panels)
    std::printf("%s%s", panels.size() > 1 ? ("--- " + panel.caption + "\n").c_str() : "",
                heatmap_text(panel.cells, colour).c_str());
  std::fflush(stdout);
  if (!o.csv_path.empty()) write_output(o.csv_path, cells_csv(cells, grid), "--csv");
  if (!o.svg_path.empty())
    write_output(o.svg_path,
                 !by_depth ? line_chart_svg(cells, grid, title)
                 : panels.size() == 1 ? heatmap_svg(panels[0].cells, title)
                                      : heatmaps_svg(panels, title),
                 "--svg");
}

// An earlier run's --json file shown again without the model: an hour-long sweep can be
// redrawn, or written as CSV or SVG, in a moment.
int replot(EvalCommand command, const EvalOptions& o) {
  const std::string name = command_name(command), flag = "--replot " + o.replot_path;
  check_output_path(o.csv_path, "--csv");
  check_output_path(o.svg_path, "--svg");
  nlohmann::json doc;
  try {
    doc = read_json_file(o.replot_path);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(std::string("--replot ") + e.what());
  }
  const SavedReport report = report_from_json(doc, name, flag);
  show_results(command, report.title, report.cells, report.grid, o);
  return 0;
}

// The settings a --json file records; files agree on all of them when they are parts of
// one run (--resume, kvlm merge).
const char* const kSettings[] = {"command", "task", "model", "query_mode", "chat_template",
                                 "seed", "trials", "ctx", "depths", "kv", "haystack", "needles"};

nlohmann::json methods_json(const EvalGrid& grid) {
  nlohmann::json methods = nlohmann::json::array();
  for (const MethodRun& m : grid.methods)
    methods.push_back({{"spec", m.spec}, {"method", m.method}, {"budget", m.budget}});
  return methods;
}

// What --json holds: the settings, the cells of `records` and every answer. `state`:
// "running" (written after each prompt), "interrupted" or "finished".
nlohmann::json run_document(const nlohmann::json& settings, const std::string& title,
                            const std::string& backend, const EvalGrid& grid, EvalCommand command,
                            const std::vector<TrialRecord>& records, int planned,
                            const std::string& state) {
  nlohmann::json doc = settings;
  doc["title"] = title;
  doc["backend"] = backend;
  doc["methods"] = methods_json(grid);
  doc["cells"] = cells_json(summarise(records, grid, command != EvalCommand::Sweep), grid);
  doc["trials_detail"] = trials_json(records, grid);
  doc["state"] = state;
  doc["interrupted"] = state == "interrupted";
  doc["prompts_planned"] = planned;
  return doc;
}

// The first setting where two --json documents differ (the shard too, when asked), or ""
// when they agree.
// Models compare by file name: shards run on machines whose checkouts lie in other
// directories are parts of one run.
std::string differing_setting(const nlohmann::json& a, const nlohmann::json& b, bool with_shard) {
  const auto file_name = [](const nlohmann::json& path) {
    if (!path.is_string()) return path.dump();
    std::filesystem::path p = std::filesystem::path(path.get<std::string>()).lexically_normal();
    if (p.filename().empty()) p = p.parent_path();  // "dir/" names dir
    return p.filename().string();
  };
  for (const char* key : kSettings) {
    const nlohmann::json x = a.value(key, nlohmann::json()), y = b.value(key, nlohmann::json());
    if (std::string(key) == "model" ? file_name(x) != file_name(y) : x != y) return key;
  }
  if (with_shard && a.value("shard", nlohmann::json()) != b.value("shard", nlohmann::json())) return "shard";
  return "";
}

nlohmann::json shard_json(const EvalGrid& grid) {
  return grid.shards > 1 ? nlohmann::json(std::to_string(grid.shard) + "/" + std::to_string(grid.shards))
                         : nlohmann::json();
}

nlohmann::json read_run(const std::string& path, const std::string& flag) {
  try {
    nlohmann::json doc = read_json_file(path);
    if (!doc.is_object() || !doc.contains("trials_detail") || !doc.contains("methods"))
      throw std::runtime_error(path + ": not the --json file of a kvlm passkey, needle or sweep "
                               "run (or one written before --resume and merge existed)");
    return doc;
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(flag + e.what());
  }
}

}  // namespace

int eval_command(EvalCommand command, RuntimeOptions rt, const EvalOptions& o) {
  if (!o.replot_path.empty()) return replot(command, o);
  const std::string name = command_name(command);
  const TaskOptions task = task_options(command, o);
  const EvalGrid grid = make_grid(command, rt, o);
  check_output_path(o.csv_path, "--csv");
  check_output_path(o.json_path, "--json");
  check_output_path(o.svg_path, "--svg");
  check_output_path(o.kept_svg, "--kept-svg");
  KeptCapture kept{o.kept_prompt, {}, {}};
  if (!o.kept_svg.empty() && o.kept_prompt >= prompt_count(grid))
    throw std::invalid_argument(prompt_index_error(o.kept_prompt, grid));
  const std::vector<Sentence> haystack = read_haystack(o.haystack);

  rt.quiet = true;  // the progress line says what runs
  Session session(rt);
  const int longest = *std::max_element(grid.ctx_list.begin(), grid.ctx_list.end());
  const std::string ctx_flag = command == EvalCommand::Needle ? "--ctx-list" : "--ctx";
  const int trained = session.file().config().context_length;
  if (longest > trained)
    throw std::invalid_argument(ctx_flag + " " + std::to_string(longest) +
                                " exceeds the model's context of " + std::to_string(trained) +
                                " tokens");
  if (longest > session.ctx_size())
    throw std::invalid_argument(ctx_flag + " " + std::to_string(longest) + " does not fit --ctx-size " +
                                std::to_string(session.ctx_size()));
  const Framing framing = task_framing(session, o.chat);
  const bool chat = !framing.before_user.empty();
  const PromptBuilder builder(session.tokenizer(), framing, task, o.seed, haystack);
  // A context too short for the task's own text is refused before the banner: one trial's
  // prompt at the shortest length (others differ only in the needles' digits and words).
  try {
    builder.build(*std::min_element(grid.ctx_list.begin(), grid.ctx_list.end()), 0.0, 0);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(ctx_flag + ": " + e.what());
  }
  const std::string title = describe(command, o, task, grid, chat);
  std::fprintf(stderr, "%s: %s; model %s\n", name.c_str(), title.c_str(), session.file().path().c_str());
  if (grid.methods.size() > 1)
    std::fprintf(stderr, "%s: %s\n", name.c_str(),
                 grid.share_prefill ? "each prompt is prefilled once for all methods (the same "
                                      "results; --no-share-prefill prefills it per method)"
                                    : "each method prefills each prompt itself (--no-share-prefill)");

  nlohmann::json specs = nlohmann::json::array();
  for (const MethodRun& m : grid.methods) specs.push_back(m.spec);
  const nlohmann::json settings = {
      {"command", name}, {"task", task_name(task.task)}, {"model", session.file().path()},
      {"query_mode", query_mode_name(grid.mode)}, {"chat_template", chat}, {"seed", o.seed},
      {"trials", grid.trials}, {"ctx", grid.ctx_list}, {"depths", grid.depths}, {"kv", specs},
      {"haystack", o.haystack.empty() ? "built-in" : o.haystack}, {"needles", task.needles},
      {"shard", shard_json(grid)}};
  std::vector<TrialRecord> done;
  if (!o.resume_path.empty()) {
    const nlohmann::json earlier = read_run(o.resume_path, "--resume ");
    if (const std::string differs = differing_setting(earlier, settings, true); !differs.empty())
      throw std::invalid_argument("--resume " + o.resume_path + ": its " + differs + " (" +
                                  earlier.value(differs, nlohmann::json()).dump() +
                                  ") is not this run's (" + settings[differs].dump() + ")");
    try {
      done = trials_from_json(earlier.at("trials_detail"), grid);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("--resume " + o.resume_path + ": unreadable trials (" + e.what() + ")");
    }
    std::fprintf(stderr, "%s: resuming %s: %zu of the run's answers are there and are not run again\n",
                 name.c_str(), o.resume_path.c_str(), done.size());
  }
  // Written after every prompt, so that a crash loses at most the prompt in progress.
  const int planned = (prompt_count(grid) - grid.shard + grid.shards - 1) / grid.shards *
                      int(grid.methods.size());
  const auto save = [&](const std::vector<TrialRecord>& so_far) {
    if (o.json_path.empty()) return;
    write_output(o.json_path,
                 run_json_text(run_document(settings, title, session.backend().name(), grid,
                                            command, so_far, planned, "running")),
                 "--json");
  };
  const GridRun run = run_grid(session, builder, grid, name, false,
                               o.kept_svg.empty() ? nullptr : &kept, done, save);
  const std::vector<TrialRecord>& records = run.records;
  const std::vector<Cell> cells = summarise(records, grid, command != EvalCommand::Sweep);
  // Interrupted: the finished prompts go to --json, marked; a table, CSV or SVG of part of
  // the grid would pass for the whole, so none is made.
  if (run.interrupted) {
    std::string line = name + ": interrupted (Ctrl-C) after " + std::to_string(records.size()) +
                       " of " + std::to_string(run.planned) + " prompts";
    if (!o.json_path.empty()) line += "; " + o.json_path + " holds the finished ones";
    std::fprintf(stderr, "%s\n", line.c_str());
  } else {
    show_results(command, title, cells, grid, o);
  }
  if (!o.json_path.empty())
    write_output(o.json_path,
                 run_json_text(run_document(settings, title, session.backend().name(), grid,
                                            command, records, run.planned,
                                            run.interrupted ? "interrupted" : "finished")),
                 "--json");
  if (run.interrupted) return kInterruptedExitStatus;
  if (!o.kept_svg.empty()) {
    const Prompt& p = kept.drawn;
    const Tokenizer& tok = session.tokenizer();
    KeptMarks marks{p.question_start, token_ranges(tok, p.ids, p.text, p.needles)};
    char which[128];
    std::snprintf(which, sizeof which, "; prompt %d: %zu tokens, key at depth %.2f", o.kept_prompt,
                  p.ids.size(), p.depth);
    write_output(o.kept_svg, kept_map_svg(title + which, token_texts(tok, p.ids), kept.panels, marks),
                 "--kept-svg");
  }
  return 0;
}

int merge_command(const std::vector<std::string>& files, const EvalOptions& o) {
  check_output_path(o.csv_path, "--csv");
  check_output_path(o.json_path, "--json");
  check_output_path(o.svg_path, "--svg");
  std::vector<nlohmann::json> docs;
  for (const std::string& file : files) docs.push_back(read_run(file, "kvlm merge: "));
  const nlohmann::json& first = docs.front();
  std::map<std::string, std::string> shard_files;  // shard -> the file holding it
  for (size_t i = 0; i < docs.size(); i++) {
    if (const std::string differs = differing_setting(first, docs[i], false); !differs.empty())
      throw std::invalid_argument("kvlm merge: " + files[0] + " and " + files[i] + " differ in " +
                                  differs + " (" + first.value(differs, nlohmann::json()).dump() +
                                  " vs " + docs[i].value(differs, nlohmann::json()).dump() + ")");
    const std::string shard = docs[i].value("shard", nlohmann::json()).dump();
    if (!shard_files.emplace(shard, files[i]).second)
      throw std::invalid_argument("kvlm merge: " + shard_files[shard] + " and " + files[i] +
                                  " hold the same shard (" + shard + ")");
  }
  EvalCommand command = EvalCommand::Sweep;
  for (EvalCommand c : {EvalCommand::Passkey, EvalCommand::Needle, EvalCommand::Sweep})
    if (first.at("command") == command_name(c)) command = c;
  EvalGrid grid;
  std::vector<TrialRecord> records;
  int planned = 0;
  try {
    for (const nlohmann::json& m : first.at("methods"))
      grid.methods.push_back({m.at("spec").get<std::string>(), m.at("method").get<std::string>(),
                              m.at("budget").get<std::string>()});
    for (const nlohmann::json& doc : docs) {
      const std::vector<TrialRecord> part = trials_from_json(doc.at("trials_detail"), grid);
      records.insert(records.end(), part.begin(), part.end());
      planned += doc.at("prompts_planned").get<int>();
    }
  } catch (const nlohmann::json::exception& e) {
    throw std::runtime_error("kvlm merge: " + std::string(e.what()));
  }
  std::sort(records.begin(), records.end(), [](const TrialRecord& a, const TrialRecord& b) {
    return std::tie(a.method, a.prompt) < std::tie(b.method, b.prompt);
  });
  for (size_t i = 1; i < records.size(); i++)
    if (records[i].method == records[i - 1].method && records[i].prompt == records[i - 1].prompt)
      throw std::invalid_argument("kvlm merge: prompt " + std::to_string(records[i].prompt) + " of " +
                                  grid.methods[records[i].method].spec + " is in two files");
  std::fprintf(stderr, "merge: %zu files, %zu of %d answers%s\n", files.size(), records.size(),
               planned, int(records.size()) < planned ? " (some shards did not finish)" : "");
  const std::string title = first.at("title").get<std::string>();
  show_results(command, title, summarise(records, grid, command != EvalCommand::Sweep), grid, o);
  if (!o.json_path.empty()) {
    nlohmann::json settings;
    for (const char* key : kSettings) settings[key] = first.value(key, nlohmann::json());
    settings["shard"] = nullptr;
    write_output(o.json_path,
                 run_json_text(run_document(settings, title, first.value("backend", ""), grid,
                                            command, records, planned,
                                            int(records.size()) < planned ? "interrupted"
                                                                          : "finished")),
                 "--json");
  }
  return 0;
}

}  // namespace kvlm
