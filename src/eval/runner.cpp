#include "eval/runner.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <set>
#include <stdexcept>
#include <tuple>

#include "eval/rng.h"
#include "util/interrupt.h"

namespace kvlm {

namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
}  // namespace

QueryMode parse_query_mode(const std::string& name) {
  if (name == "aware") return QueryMode::Aware;
  if (name == "agnostic") return QueryMode::Agnostic;
  throw std::invalid_argument("--query-mode " + name + ": give aware or agnostic");
}

TrialOutcome run_trial(Session& session, const Prompt& prompt, QueryMode mode, int max_tokens,
                       const std::function<void()>& after_prefill, bool shared) {
  TrialOutcome r;
  r.prompt_tokens = int(prompt.ids.size());
  session.reset();
  auto t = Clock::now();
  std::vector<float> logits;
  const std::vector<int32_t> context(prompt.ids.begin(), prompt.ids.begin() + prompt.question_start);
  if (mode == QueryMode::Aware) {
    logits = shared ? session.replay_shared() : session.feed(prompt.ids);
  } else {
    if (shared) session.replay_shared();
    else session.feed(context);
    logits = session.feed_uncompressed({prompt.ids.begin() + prompt.question_start, prompt.ids.end()});
  }
  r.prefill_seconds = since(t) + (shared ? session.shared_prefill_seconds() : 0);
  if (after_prefill) after_prefill();
  const KVStats kv = session.cache().stats();
  r.kv_bytes_held = kv.bytes_held;
  r.kv_bytes_full = kv.bytes_full;

  const Tokenizer& tok = session.tokenizer();
  StreamDecoder text(tok);
  t = Clock::now();
  for (int i = 0; i < max_tokens; i++) {
    const int32_t next = argmax(logits);
    if (tok.is_end_of_generation(next)) break;
    r.answer += text.push(next);
    r.generated_tokens++;
    const size_t content = r.answer.find_first_not_of(" \n");
    if (content != std::string::npos && r.answer.find("\n\n", content) != std::string::npos) break;
    if (i + 1 < max_tokens) logits = session.feed({next});
  }
  r.answer += text.flush();
  r.decode_seconds = since(t);
  r.score = score_answer(r.answer, prompt.expected);
  return r;
}

int prompt_count(const EvalGrid& grid) {
  return int(grid.ctx_list.size()) * grid.trials * std::max<int>(1, int(grid.depths.size()));
}

std::string prompt_index_error(int index, const EvalGrid& grid) {
  const int n = prompt_count(grid);
  return "--kept-prompt " + std::to_string(index) + ": the run has " + std::to_string(n) +
         (n == 1 ? " prompt (0)" : " prompts (0.." + std::to_string(n - 1) + ")");
}

GridRun run_grid(Session& session, const PromptBuilder& builder, const EvalGrid& grid,
                 const std::string& label, bool quiet, KeptCapture* kept,
                 const std::vector<TrialRecord>& done,
                 const std::function<void(const std::vector<TrialRecord>&)>& saved) {
  struct Planned {
    int ctx;
    int trial;
    Prompt prompt;
  };
  std::vector<Planned> planned;
  for (int ctx : grid.ctx_list) {
    for (int trial = 0; trial < grid.trials; trial++) {
      if (grid.depths.empty()) {
        const double depth = SplitMix64(mix_seed({grid.seed, uint64_t(trial), 3})).uniform();
        planned.push_back({ctx, trial, builder.build(ctx, depth, trial)});
      }
      for (double depth : grid.depths) planned.push_back({ctx, trial, builder.build(ctx, depth, trial)});
    }
  }
  if (kept) {
    if (kept->prompt >= prompt_count(grid))
      throw std::invalid_argument(prompt_index_error(kept->prompt, grid));
    kept->drawn = planned[kept->prompt].prompt;
  }
  // This shard's prompts, and which (method, prompt) pairs an earlier run finished.
  std::vector<size_t> mine;
  for (size_t i = 0; i < planned.size(); i++)
    if (int(i) % grid.shards == grid.shard) mine.push_back(i);
  std::set<std::pair<int, int>> finished;
  for (const TrialRecord& r : done) finished.insert({r.method, r.prompt});
  const auto to_run = [&](size_t m, size_t i) { return !finished.count({int(m), int(i)}); };
  double work_per_method = 0;
  for (size_t i : mine) work_per_method += double(planned[i].prompt.ids.size());

  GridRun run;
  run.planned = int(mine.size() * grid.methods.size());
  run.records = done;
  const bool shared = grid.share_prefill && grid.methods.size() > 1;
  // Shared: a prompt's prefill is most of its cost, paid once for all methods.
  Progress progress(label, work_per_method * (shared ? 1 : grid.methods.size()), run.planned, !quiet);
  {
    const std::set<size_t> mine_set(mine.begin(), mine.end());
    int items = 0;
    double work = 0, right = 0;
    for (const TrialRecord& r : done)
      if (mine_set.count(size_t(r.prompt))) {
        items++;
        work += double(planned[r.prompt].prompt.ids.size()) / (shared ? grid.methods.size() : 1);
        right += r.outcome.score.recall;
      }
    progress.resumed(items, work, right);
  }
  const auto run_one = [&](size_t m, size_t i) {
    const Planned& p = planned[i];
    char where[96];
    std::snprintf(where, sizeof where, " | ctx %d, depth %.2f, trial %d/%d", p.ctx,
                  p.prompt.depth, p.trial + 1, grid.trials);
    progress.start(grid.methods[m].method +
                   (grid.methods[m].budget.empty() ? "" : ":" + grid.methods[m].budget) + where);
    TrialRecord r{int(m), p.ctx, p.prompt.depth, p.trial, p.prompt.expected, {}, int(i), {}};
    const bool draw = kept && int(i) == kept->prompt;
    std::function<void()> capture;
    if (draw || grid.record_kept)
      capture = [&] {
        const KVCache& cache = session.cache();
        if (draw)
          kept->panels.push_back(capture_kept(grid.methods[m].spec, cache, session.strategy(),
                                              int(p.prompt.ids.size())));
        if (grid.record_kept)
          for (int l = 0; l < cache.n_layers(); l++) {
            r.kept.emplace_back();
            for (int h = 0; h < cache.n_kv_heads(); h++) r.kept.back().push_back(cache.positions(l, h));
          }
      };
    r.outcome = run_trial(session, p.prompt, grid.mode, builder.answer_tokens(), capture, shared);
    progress.finish(double(p.prompt.ids.size()) / (shared ? grid.methods.size() : 1),
                    r.outcome.score.recall);
    run.records.push_back(std::move(r));
  };
  try {
    if (shared) {
      std::vector<KVSpec> specs;
      for (const MethodRun& m : grid.methods) specs.push_back(KVSpec::parse(m.spec));
      for (size_t i : mine) {
        std::vector<size_t> methods;
        for (size_t m = 0; m < grid.methods.size(); m++)
          if (to_run(m, i)) methods.push_back(m);
        if (methods.empty()) continue;
        const Prompt& prompt = planned[i].prompt;
        const int prefilled = grid.mode == QueryMode::Aware ? int(prompt.ids.size()) : prompt.question_start;
        std::vector<Needs> needs;
        for (size_t m : methods) needs.push_back(session.prefill_needs(specs[m], prefilled));
        session.prefill_shared({prompt.ids.begin(), prompt.ids.begin() + prefilled}, needs);
        for (size_t m : methods) {
          session.set_strategy(specs[m]);
          run_one(m, i);
        }
        if (saved) saved(run.records);
      }
    } else {
      for (size_t m = 0; m < grid.methods.size(); m++) {
        session.set_strategy(KVSpec::parse(grid.methods[m].spec));
        for (size_t i : mine)
          if (to_run(m, i)) {
            run_one(m, i);
            if (saved) saved(run.records);
          }
      }
    }
  } catch (const Interrupted&) {  // the prompt in progress is dropped; the finished ones stand
    run.interrupted = true;
  }
  session.drop_shared();
  // Method-major, then prompt order: reports and JSON depend neither on the path nor on
  // what an earlier run (--resume) or another shard did.
  std::sort(run.records.begin(), run.records.end(), [](const TrialRecord& a, const TrialRecord& b) {
    return std::tie(a.method, a.prompt) < std::tie(b.method, b.prompt);
  });
  return run;
}

}  // namespace kvlm
