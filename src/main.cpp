// kvlm: the command line. Subcommands and their flags (the names are a contract: README,
// "Using it"), nothing else.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.h"
#include "device.h"
#include "eval/bench.h"
#include "eval/ppl.h"
#include "eval/eval_commands.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/strips.h"
#include "util/interrupt.h"

using namespace kvlm;

namespace {

// --device, --dtype and --kv-dtype as typed; main resolves them once into
// RuntimeOptions::device.
struct DeviceFlags {
  std::string device, dtype, kv_dtype;
  bool f32_prefill = false;
};

void add_runtime_flags(CLI::App* cmd, RuntimeOptions& rt, DeviceFlags& dev, bool with_kv = true) {
  cmd->add_option("-m,--model", rt.model_path,
                  "GGUF file or Hugging Face directory (config.json + safetensors) (default: "
                  "$KVLM_MODEL, else the fetched default model "
                  "weights/SmolLM2-135M-Instruct.Q4_1.gguf, looked for in the working "
                  "directory, then beside this executable)");
  cmd->add_option("-c,--ctx-size", rt.ctx_size, "maximum context in tokens (default: the model's)")
      ->check(CLI::Range(1, 1 << 24));
  if (with_kv)
    cmd->add_option("--kv", rt.kv, "KV cache method and parameters, e.g. full (see `kvlm methods`)")
        ->default_val("full");
  cmd->add_option("--device", dev.device,
                  "compute device: cpu or cuda (default: cuda when a GPU is visible, else cpu)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--dtype", dev.dtype,
                  "convert every weight matrix to f32, f16 or bf16 on loading (default: keep "
                  "the file's types, quantised blocks included; cuda stores f32 files as f16)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->add_flag("--f32-prefill", dev.f32_prefill,
               "cpu: prefill's matrix products in float32 on every CPU (default: in bf16 pairs "
               "where the CPU has AVX512-BF16, ~1.5x faster: matmuls on every weight type but "
               "f32, attention's P.V over a 16-bit KV cache)");
  cmd->add_option("--kv-dtype", dev.kv_dtype,
                  "KV cache rows: f16, bf16 or f32 (default: f16; attention reads them as f32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->add_option("-t,--threads", rt.threads, "CPU threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("-v,--verbose", rt.verbose, "more detail");
  cmd->add_flag("-q,--quiet", rt.quiet, "no banner, no progress lines");
}

void add_template_flag(CLI::App* cmd, RuntimeOptions& rt) {
  cmd->add_option("--template", rt.chat_template,
                  "chat template instead of the model's own: chatml, llama2, llama3, mistral, "
                  "zephyr or plain")
      ->check(CLI::IsMember(ChatTemplate::names()));
}

// The defaults shown are kvlm's; a model that recommends its own sampling
// (generation_config.json, GGUF general.sampling.*) replaces them for the flags not given.
void add_sampling_flags(CLI::App* cmd, SamplingParams& s, SamplingFlagsGiven& given) {
  auto mark = [](bool& flag) { return [&flag](const std::string&) { flag = true; }; };
  cmd->add_option("--temp", s.temperature, "temperature; 0 = greedy (default: the model's, else 0.8)")
      ->check(CLI::Range(0.0, 100.0))->each(mark(given.temperature));
  cmd->add_option("--top-k", s.top_k, "keep the k most likely tokens; 0 = off (default: the model's, else 40)")
      ->check(CLI::Range(0, 1 << 24))->each(mark(given.top_k));
  cmd->add_option("--top-p", s.top_p,
                  "keep the smallest set with this much probability; 1 = off (default: the "
                  "model's, else 0.95)")
      ->check(CLI::Range(0.0, 1.0))->each(mark(given.top_p));
  cmd->add_option("--min-p", s.min_p, "drop tokens below min-p x p(best); 0 = off (default: the model's, else 0.05)")
      ->check(CLI::Range(0.0, 1.0))->each(mark(given.min_p));
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "penalise recent tokens; 1 = off")
      ->default_val(s.repeat_penalty)->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--repeat-last-n", s.repeat_last_n, "how many recent tokens the penalty sees")
      ->default_val(s.repeat_last_n)->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--seed", s.seed, "seed of every random choice")->default_val(s.seed);
}

// passkey, needle and sweep share these; each passes its own defaults.
CLI::App* add_eval_command(CLI::App& app, const std::string& name, const std::string& help,
                           RuntimeOptions& rt, DeviceFlags& dev, EvalOptions& e,
                           const std::string& depths, int trials) {
  CLI::App* cmd = app.add_subcommand(name, help);
  add_runtime_flags(cmd, rt, dev, name != "sweep");
  add_template_flag(cmd, rt);
  cmd->add_option("--depth,--depths", e.depths,
                  "where the key sits in the filler, 0 = start, 1 = end: one depth (0.5), a list "
                  "(0,0.5,1) or A:B:STEP" + std::string(depths.empty() ? " (default: a seeded random depth per trial)" : ""))
      ->default_val(depths);
  cmd->add_option("--trials", e.trials,
                  std::string("prompts per cell, each with its own key and filler") +
                      (name == "sweep" ? " (96: a cell's 95% interval is then about +-10 points at "
                                         "50% accuracy; e.g. 3 for a quick look)"
                                       : ""))
      ->default_val(trials)->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--seed", e.seed, "seed of every random choice (keys, filler, depths)")->default_val(e.seed);
  CLI::Option* chat = cmd->add_flag_callback("--chat", [&e] { e.chat = 1; },
                                             "wrap the prompt in the model's chat template "
                                             "(default: when the model has one)");
  cmd->add_flag_callback("--no-chat", [&e] { e.chat = 0; }, "a raw completion prompt")->excludes(chat);
  cmd->add_option("--query-mode", e.query_mode,
                  "aware: the question is in the prompt the method compresses; agnostic: it is "
                  "appended to the compressed context")
      ->default_val(e.query_mode)->check(CLI::IsMember({"aware", "agnostic"}));
  cmd->add_flag_callback("--no-share-prefill", [&e] { e.share_prefill = false; },
                         "prefill every prompt once per method, as a single-method run does "
                         "(default: once for all methods, which gives the same results)");
  cmd->add_option("--csv", e.csv_path, "write the cells as CSV to this file");
  CLI::Option* json = cmd->add_option("--json", e.json_path, "write the settings, cells and every answer as JSON to this file");
  cmd->add_option("--svg", e.svg_path, name == "sweep" ? "write a line chart (accuracy vs budget) as SVG"
                                                        : "write the heatmap (context x depth) as SVG");
  CLI::Option* replot = cmd->add_option("--replot", e.replot_path,
                  "show the results of an earlier run from its --json file (the table, --csv, --svg) "
                  "without loading the model or running anything")
      ->excludes(json);
  CLI::Option* kept = cmd->add_option(
      "--kept-svg", e.kept_svg,
      "draw which tokens every layer and KV head kept of one prompt, one panel per method, with "
      "the question and the planted key marked, as an SVG image")->excludes(replot);
  cmd->add_flag("--json-kept", e.json_kept,
               "with --json: each answer's record also holds \"kept\", the original positions every "
               "layer and KV head held after the prefill ([layer][KV head]; large: every method x prompt)")
      ->needs(json);
  cmd->add_option("--shard", e.shard,
                  "K/N: run only every N-th prompt, starting at prompt K (0 <= K < N), to split a "
                  "run across machines; `kvlm merge` puts the shards' --json files together")
      ->excludes(kept);
  cmd->add_option("--resume", e.resume_path,
                  "an earlier --json file of this very run (same settings, same shard): the "
                  "answers it holds are kept and not run again")->excludes(replot);
  cmd->add_option("--kept-prompt", e.kept_prompt,
                  "the prompt --kept-svg draws: 0 = the first of the run (prompts go by context, "
                  "then trial, then depth)")
      ->default_val(e.kept_prompt)->check(CLI::Range(0, 1 << 30))->needs(kept);
  if (name != "sweep")
    cmd->add_option("--kv-list", e.kv_list,
                    "several KV methods, each with its parameters, comma-separated (e.g. "
                    "full,snapkv:budget=128,streaming:budget=128): every prompt is prefilled once "
                    "for all of them; a table per method, and --svg stacks their heatmaps")
        ->excludes(cmd->get_option("--kv"));
  if (name != "passkey") {
    cmd->add_option("--haystack", e.haystack, "filler text file of your own (default: built-in essay generator)");
    cmd->add_option("--needles", e.needles, "needles of multikey/multivalue/multiquery, chain length of vartrack")
        ->default_val(e.needles)->check(CLI::Range(1, 40));
  }
  return cmd;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvlm: a small Llama runtime for studying KV-cache compression"};
  app.require_subcommand(1);
  // The GPU kit's run.sh records this line: which CPU code runs here, and whether CUDA can.
  app.set_version_flag("--version", std::string("kvlm 0.1; CPU kernels ") + simd::dispatch_level() +
                                        (strips::cpu_has_bf16_products()
                                             ? ", prefill in bf16 pairs (AVX512-BF16)"
                                             : "") +
                                        (cuda_built() ? "; CUDA backend built (" + cublas_library() +
                                                            " opened when used)"
                                                      : std::string("; no CUDA backend")));
  RuntimeOptions rt;
  DeviceFlags dev;

  RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "generate text for one prompt, streamed to stdout");
  run_cmd->footer("On a terminal, control characters in the answer are shown (^[ for ESC), not "
                  "obeyed; a pipe or file gets the exact text. Ctrl-C exits with status 130 and "
                  "writes no output file.");
  add_runtime_flags(run_cmd, rt, dev);
  add_sampling_flags(run_cmd, run.sampling, run.sampling_given);
  add_template_flag(run_cmd, rt);
  auto* prompt_opt = run_cmd->add_option("-p,--prompt", run.prompt, "prompt text");
  run_cmd->add_option("-f,--file", run.prompt_file, "read the prompt from a file")
      ->excludes(prompt_opt);
  run_cmd->add_option("-n,--n-predict", run.n_predict, "tokens to generate at most")
      ->default_val(run.n_predict)->check(CLI::Range(0, 1 << 24));
  run_cmd->add_flag("--chat", run.chat, "wrap the prompt in the model's chat template");
  run_cmd->add_option("--system", run.system, "system prompt (with --chat)");
  run_cmd->add_flag("--stats", run.stats,
                    "print speed and KV statistics (kept lengths per layer, bytes saved) to stderr");
  run_cmd->add_option("--show-kept", run.show_kept,
                      "after prefill, print the prompt to stderr with the tokens layer L kept "
                      "(by a majority of its KV heads) highlighted")
      ->check(CLI::Range(0, 1 << 20));
  run_cmd->add_option("--json", run.json_path, "write statistics as JSON to this file");
  std::string run_kv_list;
  run_cmd->add_option("--kv-list", run_kv_list,
                      "several KV methods, comma-separated (e.g. full,snapkv:budget=128,"
                      "streaming:budget=128): the prompt runs with each in turn")
      ->excludes(run_cmd->get_option("--kv"));
  run_cmd->add_option("--dump-kept", run.dump_kept,
                      "write, per method, layer and KV head, the original positions of the prompt "
                      "tokens kept after prefill as JSON (with -v: the tokens' text too), to "
                      "compare kept sets with other implementations");
  run_cmd->add_option("--kept-svg", run.kept_svg,
                      "draw which prompt tokens every layer and KV head kept after prefill, one "
                      "panel per method, as an SVG image");

  ChatOptions chat;
  CLI::App* chat_cmd = app.add_subcommand("chat", "interactive chat in the terminal");
  chat_cmd->footer("Input bytes that are not UTF-8, and NUL bytes, become U+FFFD (with a note). "
                   "Control characters in answers are shown (^[ for ESC), not obeyed. Ctrl-C "
                   "drops the turn in progress; the conversation goes on as before it. A turn "
                   "that does not fit drops the oldest turns first (--no-context-shift).");
  add_runtime_flags(chat_cmd, rt, dev);
  add_sampling_flags(chat_cmd, chat.sampling, chat.sampling_given);
  add_template_flag(chat_cmd, rt);
  chat_cmd->add_option("--system", chat.system, "system prompt (default: the template's)");
  chat_cmd->add_option("-n,--n-predict", chat.n_predict,
                       "tokens per answer at most (-1: until the model stops)")
      ->default_val(chat.n_predict)->check(CLI::Range(-1, 1 << 24));
  chat_cmd->add_flag_callback("--no-context-shift", [&chat] { chat.context_shift = false; },
                              "when a turn does not fit in the context, fail it (default: drop "
                              "the oldest turns, keep the system prompt, read the rest again)");

  CLI::App* info_cmd = app.add_subcommand("info", "model configuration, tensors, tokenizer, template, memory");
  add_runtime_flags(info_cmd, rt, dev);
  add_template_flag(info_cmd, rt);

  CLI::App* methods_cmd = app.add_subcommand("methods", "list the KV cache methods and their parameters");

  EvalOptions merge;
  std::vector<std::string> merge_files;
  CLI::App* merge_cmd = app.add_subcommand(
      "merge", "put the --json files of a passkey, needle or sweep run's shards together: the "
               "table an unsharded run prints");
  merge_cmd->add_option("files", merge_files, "the shards' --json files")->required()->check(CLI::ExistingFile);
  merge_cmd->add_option("--json", merge.json_path, "write the merged run as JSON");
  merge_cmd->add_option("--csv", merge.csv_path, "write the cells as CSV");
  merge_cmd->add_option("--svg", merge.svg_path, "write the chart (sweep) or heatmap as SVG");

  BenchOptions bench;
  std::string kv_list;
  CLI::App* bench_cmd = app.add_subcommand("bench", "prefill and decode speed per KV method");
  add_runtime_flags(bench_cmd, rt, dev);
  bench_cmd->add_option("--prompt-len", bench.prompt_len, "prompt tokens")
      ->default_val(bench.prompt_len)->check(CLI::Range(1, 1 << 24));
  bench_cmd->add_option("--gen", bench.gen, "tokens to decode")
      ->default_val(bench.gen)->check(CLI::Range(1, 1 << 24));
  bench_cmd->add_option("--kv-list", kv_list, "KV methods to compare, comma-separated, e.g. full,snapkv:budget=256,window=32,streaming:budget=256 (default: full)");
  bench_cmd->add_option("--seed", bench.seed, "seed of the random prompt")->default_val(bench.seed);
  bench_cmd->add_option("--json", bench.json_path, "write the results as JSON to this file");
  bench_cmd->add_option("--report-every", bench.report_every,
                        "a line on stderr every N decoded tokens: speed, KV bytes, resident "
                        "memory (a soak test; pair with --kv-list streaming:budget=256 and a "
                        "large --gen)")->check(CLI::Range(1, 1 << 30));

  PplOptions ppl;
  std::string ppl_kv_list = "full";
  CLI::App* ppl_cmd = app.add_subcommand(
      "ppl", "perplexity of a text file read through the KV cache one token at a time, per "
             "segment and overall, for each method");
  ppl_cmd->footer("Methods evict as the text streams in. Original positions end at the context "
                  "size; streaming (positions inside the cache) reads any length. Example: kvlm "
                  "ppl -f book.txt --ctx 2048 --kv-list full,streaming:budget=256,"
                  "streaming:budget=256,sinks=0 --svg ppl.svg");
  add_runtime_flags(ppl_cmd, rt, dev, false);
  ppl_cmd->add_option("--ctx", rt.ctx_size, "the same as -c, --ctx-size")->check(CLI::Range(1, 1 << 24));
  CLI::Option* ppl_file = ppl_cmd->add_option("-f,--file", ppl.text_path, "the text (UTF-8)");
  ppl_cmd->add_option("--replot", ppl.replot_path,
                      "show an earlier run again from its --json file (the table, --csv, --svg), "
                      "without the model")->excludes(ppl_file);
  ppl_cmd->add_option("--kv-list", ppl_kv_list, "KV methods, comma-separated, e.g. "
                      "full,streaming:budget=256,h2o:budget=256")->default_val(ppl_kv_list);
  ppl_cmd->add_option("--segment", ppl.segment, "tokens per reported segment")
      ->default_val(ppl.segment)->check(CLI::Range(1, 1 << 24));
  ppl_cmd->add_option("--max-tokens", ppl.max_tokens, "read at most this many tokens of the text")
      ->check(CLI::Range(2, 1 << 30));
  ppl_cmd->add_option("--csv", ppl.csv_path, "write the segments as CSV");
  ppl_cmd->add_option("--json", ppl.json_path, "write the results as JSON");
  ppl_cmd->add_option("--svg", ppl.svg_path, "write a chart (perplexity against position) as SVG");

  EvalOptions passkey, needle, sweep;
  CLI::App* passkey_cmd = add_eval_command(
      app, "passkey", "find a 5-digit pass key hidden in filler text, by depth", rt, dev, passkey, "0:1:0.25", 3);
  passkey_cmd->add_option("--ctx", passkey.ctx, "prompt length in tokens, answer included (e.g. 2048 or 2k)")
      ->default_val("2k");
  CLI::App* needle_cmd = add_eval_command(
      app, "needle", "needle in a haystack (and RULER-style variants): context x depth heatmap", rt,
      dev, needle, "0:1:0.1", 1);
  needle_cmd->add_option("--task", needle.task, "single, multikey, multivalue, multiquery or vartrack")
      ->default_val("single");
  needle_cmd->add_option("--ctx-list", needle.ctx_list, "prompt lengths in tokens, e.g. 1k,2k,4k")
      ->default_val("1k,2k,4k");
  CLI::App* sweep_cmd = add_eval_command(
      app, "sweep", "every KV method at every budget on the same prompts: accuracy table", rt,
      dev, sweep, "", 96);
  sweep_cmd->add_option("--task", sweep.task, "passkey or needle:<variant> (e.g. needle:multikey)")
      ->default_val("passkey");
  sweep_cmd->add_option("--kv-list", sweep.kv_list, "KV methods, comma-separated, without budgets")
      ->default_val("full,streaming,h2o,snapkv,pyramidkv,adakv,dynamickv,simlayerkv,knorm,minicache");
  sweep_cmd->add_option("--budgets", sweep.budgets, "budgets for the methods that take one: "
                        "tokens (64), budget=N or ratio=R (share of the prompt kept)")
      ->default_val("64,128,256,512");
  sweep_cmd->add_option("--ctx", sweep.ctx, "prompt length in tokens, answer included (e.g. 4096 or 4k)")
      ->default_val("4k");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // CLI11 prints the error and a pointer to --help
  }

  catch_interrupts();  // Ctrl-C stops work where it can be left cleanly (util/interrupt.h)
  try {
    if (!*methods_cmd && !*merge_cmd) {
      rt.device = resolve_device(dev.device, dev.dtype, dev.kv_dtype);
      if (dev.f32_prefill && rt.device.device == Device::Cuda)
        throw std::invalid_argument(
            "--f32-prefill: a cpu option; cuda's prefill multiplies the weights as --dtype "
            "stores them, with cuBLAS");
      rt.device.bf16_prefill = !dev.f32_prefill;
    }
    // Loading and long prefills show a status line on a terminal (not in pipes or logs).
    rt.progress = (*run_cmd || *chat_cmd) && !rt.quiet;
    if (*run_cmd) {
      if (run.prompt.empty() && run.prompt_file.empty()) {
        std::fprintf(stderr, "kvlm run: give a prompt with -p TEXT or -f FILE\n");
        return 2;
      }
      if (!run_kv_list.empty()) run.kv_list = parse_kv_list(run_kv_list);
      return run_command(rt, run);
    }
    if (*chat_cmd) {
      Session session(rt);
      return chat_repl(session, chat);
    }
    if (*info_cmd) return info_command(rt);
    if (*methods_cmd) return methods_command();
    if (*merge_cmd) return merge_command(merge_files, merge);
    if (*passkey_cmd) return eval_command(EvalCommand::Passkey, rt, passkey);
    if (*needle_cmd) return eval_command(EvalCommand::Needle, rt, needle);
    if (*sweep_cmd) return eval_command(EvalCommand::Sweep, rt, sweep);
    if (*ppl_cmd) {
      if (ppl.text_path.empty() && ppl.replot_path.empty()) {
        std::fprintf(stderr, "kvlm ppl: give the text with -f FILE (or --replot RUN.json)\n");
        return 2;
      }
      ppl.kv_list = parse_kv_list(ppl_kv_list);
      return run_ppl(rt, ppl);
    }
    if (*bench_cmd) {
      if (!kv_list.empty()) bench.kv_list = parse_kv_list(kv_list);
      for (const KVSpec& spec : bench.kv_list) make_strategy(spec);  // fail before loading
      Session session(rt);
      return run_bench(session, bench);
    }
  } catch (const Interrupted& e) {
    std::fprintf(stderr, "kvlm: %s\n", e.what());
    return kInterruptedExitStatus;
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "kvlm: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvlm: %s\n", e.what());
    return 1;
  }
  return 0;
}
