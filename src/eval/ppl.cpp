#include "eval/ppl.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "eval/svg.h"
#include "model/json_file.h"
#include "util/interrupt.h"
#include "util/output_file.h"
#include "util/status_line.h"
#include "util/terminal_text.h"
#include "util/text_format.h"

namespace kvlm {

double PplSeries::perplexity() const {
  double nll = 0;
  for (size_t s = 0; s < segment_nll.size(); s++) nll += segment_nll[s] * segment_tokens[s];
  return tokens_scored ? std::exp(nll / tokens_scored) : 0;
}

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot read the text file");
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  if (text.empty()) throw std::runtime_error(path + ": the file is empty");
  if (const RepairedText checked = replace_invalid_utf8(text); checked.replaced > 0)
    throw std::runtime_error(path + ": not a text file (a NUL byte or invalid UTF-8 at byte " +
                             std::to_string(checked.first_offset) + ")");
  return text;
}

namespace {

// -log softmax(logits)[target], in double: the sum runs over a whole vocabulary.
double negative_log_likelihood(const std::vector<float>& logits, int32_t target) {
  float top = logits[0];
  for (float v : logits) top = std::max(top, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(double(v) - top);
  return std::log(sum) - (double(logits[target]) - top);
}

}  // namespace

PplSeries score_text(Session& session, const std::vector<int32_t>& tokens, int segment) {
  PplSeries r;
  r.method = session.strategy().name();
  StatusLine status(isatty(STDERR_FILENO), 0.5);
  double total_nll = 0, segment_nll = 0;
  int in_segment = 0;
  const auto close_segment = [&] {
    if (in_segment == 0) return;
    r.segment_nll.push_back(segment_nll / in_segment);
    r.segment_tokens.push_back(in_segment);
    segment_nll = 0, in_segment = 0;
  };
  std::vector<float> logits = session.feed({tokens[0]});
  for (size_t t = 1; t < tokens.size(); t++) {  // logits: after tokens [0, t)
    const double nll = negative_log_likelihood(logits, tokens[t]);
    total_nll += nll, segment_nll += nll, r.tokens_scored++;
    if (++in_segment == segment) close_segment();
    if (t + 1 == tokens.size()) break;
    if (session.cache().next_position() >= session.ctx_size()) {
      r.stopped_at = int(t);  // the context is full: t tokens read, the rest not scored
      break;
    }
    logits = session.feed({tokens[t]});
    char line[240];
    std::snprintf(line, sizeof line, "ppl %s: %zu/%zu tokens, perplexity so far %.2f, %.0f tok/s",
                  r.method.c_str(), t + 1, tokens.size(), std::exp(total_nll / r.tokens_scored),
                  (t + 1) / std::max(status.elapsed(), 1e-9));
    status.update(line);
  }
  close_segment();
  r.seconds = status.elapsed();
  const KVStats st = session.cache().stats();
  r.kv_bytes_held = st.bytes_held, r.kv_bytes_full = st.bytes_full;
  return r;
}

namespace {

// Each method's column: the spec as the user wrote it.
std::string table_text(const std::vector<PplSeries>& series, int segment) {
  std::vector<int> widths;
  std::string out = "tokens         ";
  for (const PplSeries& s : series) {
    widths.push_back(std::max(10, int(s.spec.size())));
    char cell[256];
    std::snprintf(cell, sizeof cell, " %*s", widths.back(), s.spec.c_str());
    out += cell;
  }
  out += "\n";
  size_t segments = 0;
  for (const PplSeries& s : series) segments = std::max(segments, s.segment_nll.size());
  for (size_t k = 0; k <= segments; k++) {
    char cell[256];
    if (k < segments) {
      const int start = 1 + int(k) * segment;
      std::snprintf(cell, sizeof cell, "%6d-%-8d", start, start + segment - 1);
    } else {
      std::snprintf(cell, sizeof cell, "%-15s", "all");
    }
    out += cell;
    for (size_t m = 0; m < series.size(); m++) {
      const PplSeries& s = series[m];
      if (k < segments && k >= s.segment_nll.size()) std::snprintf(cell, sizeof cell, " %*s", widths[m], "-");
      else
        std::snprintf(cell, sizeof cell, " %*.2f", widths[m],
                      k < segments ? std::exp(s.segment_nll[k]) : s.perplexity());
      out += cell;
    }
    out += "\n";
  }
  return out;
}

// What a run shows and writes, from the series it scored or an earlier --json.
struct PplRun {
  std::string model, text_path;
  int tokens = 0, ctx = 0, segment = 0;
  std::vector<PplSeries> series;
};

nlohmann::json run_json(const PplRun& run) {
  nlohmann::json methods = nlohmann::json::array();
  for (const PplSeries& s : run.series) {
    nlohmann::json segments = nlohmann::json::array();
    for (int k = 0, start = 1; k < int(s.segment_nll.size()); start += s.segment_tokens[k++])
      segments.push_back({{"start", start}, {"end", start + s.segment_tokens[k]},
                          {"tokens", s.segment_tokens[k]}, {"perplexity", std::exp(s.segment_nll[k])}});
    methods.push_back({{"spec", s.spec}, {"method", s.method}, {"perplexity", s.perplexity()},
                       {"tokens_scored", s.tokens_scored},
                       {"stopped_at", s.stopped_at ? nlohmann::json(s.stopped_at) : nlohmann::json()},
                       {"kv_bytes_held", s.kv_bytes_held}, {"kv_bytes_full", s.kv_bytes_full},
                       {"seconds", s.seconds}, {"segments", segments}});
  }
  return {{"command", "ppl"}, {"model", run.model}, {"text", run.text_path}, {"tokens", run.tokens},
          {"ctx", run.ctx}, {"segment", run.segment}, {"methods", methods}};
}

PplRun run_from_json(const nlohmann::json& doc) {
  PplRun run{doc.at("model").get<std::string>(), doc.at("text").get<std::string>(),
             doc.at("tokens").get<int>(), doc.at("ctx").get<int>(), doc.at("segment").get<int>(), {}};
  for (const nlohmann::json& m : doc.at("methods")) {
    PplSeries s;
    s.spec = m.at("spec").get<std::string>();
    s.method = m.at("method").get<std::string>();
    s.tokens_scored = m.at("tokens_scored").get<int>();
    s.stopped_at = m.at("stopped_at").is_null() ? 0 : m.at("stopped_at").get<int>();
    s.kv_bytes_held = m.at("kv_bytes_held").get<size_t>();
    s.kv_bytes_full = m.at("kv_bytes_full").get<size_t>();
    s.seconds = m.at("seconds").get<double>();
    for (const nlohmann::json& seg : m.at("segments")) {
      s.segment_nll.push_back(std::log(seg.at("perplexity").get<double>()));
      s.segment_tokens.push_back(seg.at("tokens").get<int>());
    }
    run.series.push_back(std::move(s));
  }
  return run;
}

// The table on stdout, then --csv, --json and --svg, each written whole.
void show(const PplRun& run, const PplOptions& o) {
  std::fputs(table_text(run.series, run.segment).c_str(), stdout);
  std::fflush(stdout);
  std::string csv = "method,spec,segment_start,segment_end,tokens,perplexity\n";
  std::vector<PerplexitySeries> lines;
  for (const PplSeries& s : run.series) {
    PerplexitySeries line{s.spec, {}};
    for (int k = 0, start = 1; k < int(s.segment_nll.size()); start += s.segment_tokens[k++]) {
      const int end = start + s.segment_tokens[k];
      const double ppl = std::exp(s.segment_nll[k]);
      csv += "\"" + s.method + "\",\"" + s.spec + "\"," + std::to_string(start) + "," +
             std::to_string(end) + "," + std::to_string(s.segment_tokens[k]) + "," + format_number(ppl) + "\n";
      line.points.push_back({0.5 * (start + end), ppl});
    }
    csv += "\"" + s.method + "\",\"" + s.spec + "\",1," + std::to_string(1 + s.tokens_scored) + "," +
           std::to_string(s.tokens_scored) + "," + format_number(s.perplexity()) + "\n";
    lines.push_back(std::move(line));
  }
  if (!o.csv_path.empty()) write_output(o.csv_path, csv, "--csv");
  if (!o.json_path.empty()) write_output(o.json_path, run_json(run).dump(2) + "\n", "--json");
  if (!o.svg_path.empty()) {
    const std::string name = run.text_path.substr(run.text_path.find_last_of('/') + 1);
    write_output(o.svg_path,
                 perplexity_chart_svg(lines, "Perplexity of " + name + " (" + std::to_string(run.tokens) +
                                                 " tokens), context " + std::to_string(run.ctx),
                                      "position in the text (tokens; each point a segment of " +
                                          std::to_string(run.segment) + ")"),
                 "--svg");
  }
}

}  // namespace

int run_ppl(const RuntimeOptions& rt, const PplOptions& o) {
  check_output_path(o.csv_path, "--csv");
  check_output_path(o.json_path, "--json");
  check_output_path(o.svg_path, "--svg");
  if (!o.replot_path.empty()) {
    try {
      const nlohmann::json doc = read_json_file(o.replot_path);
      if (!doc.is_object() || !doc.contains("segment") || !doc.contains("methods"))
        throw std::runtime_error("not the --json file of a kvlm ppl run");
      show(run_from_json(doc), o);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error("--replot " + o.replot_path + ": not a kvlm ppl --json file (" + e.what() + ")");
    } catch (const std::runtime_error& e) {
      throw std::runtime_error("--replot " + o.replot_path + ": " + e.what());
    }
    return 0;
  }
  const std::string text = read_text_file(o.text_path);
  for (const KVSpec& spec : o.kv_list) {
    const std::unique_ptr<KVStrategy> strategy = make_strategy(spec);  // fails before loading
    bool compresses = false;
    for (const MethodSpec& part : spec.parts) {
      const MethodTraits& t = find_method(part.name)->traits;
      compresses |= t.budgeted || t.observes || t.merges_layers;
    }
    if (compresses && !strategy->compresses_while_decoding())
      std::fprintf(stderr, "note: %s compresses after a prefill; ppl reads one token at a time, "
                   "so it keeps every token, as full does\n", spec.text().c_str());
  }
  RuntimeOptions first = rt;
  first.kv = o.kv_list.front().text();
  Session session(first);
  std::vector<int32_t> tokens = session.tokenizer().encode(text, true);
  if (o.max_tokens > 0 && int(tokens.size()) > o.max_tokens) tokens.resize(o.max_tokens);
  if (int(tokens.size()) - 1 < o.segment)
    throw std::runtime_error(o.text_path + ": " + std::to_string(tokens.size()) +
                             " tokens, fewer than one segment of " + std::to_string(o.segment) +
                             " to score (--segment)");
  std::fprintf(stderr, "ppl: %s, %zu tokens, segments of %d, context %d\n", o.text_path.c_str(),
               tokens.size(), o.segment, session.ctx_size());

  PplRun run{session.file().path(), o.text_path, int(tokens.size()), session.ctx_size(), o.segment, {}};
  for (const KVSpec& spec : o.kv_list) {
    session.set_strategy(spec);
    run.series.push_back(score_text(session, tokens, o.segment));
    PplSeries& s = run.series.back();
    s.spec = spec.text();
    std::fprintf(stderr, "ppl %s: perplexity %.3f over %d tokens in %.0f s (%.1f tok/s), KV %s held "
                 "at the end%s\n", s.method.c_str(), s.perplexity(), s.tokens_scored, s.seconds,
                 s.tokens_scored / std::max(s.seconds, 1e-9), format_bytes(s.kv_bytes_held).c_str(),
                 s.stopped_at ? (", stopped at token " + std::to_string(s.stopped_at) +
                                 ": the context is full").c_str() : "");
  }
  show(run, o);
  return 0;
}

}  // namespace kvlm
