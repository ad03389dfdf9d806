// kvlm: the command line. Subcommands and their flags (names per CLI.md), nothing else.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "commands.h"
#include "eval/bench.h"

using namespace kvlm;

namespace {

void add_runtime_flags(CLI::App* cmd, RuntimeOptions& rt) {
  cmd->add_option("-m,--model", rt.model_path,
                  "GGUF model file (default: $KVLM_MODEL, else the fetched default model "
                  "weights/SmolLM2-135M-Instruct.Q4_1.gguf)");
  cmd->add_option("-c,--ctx-size", rt.ctx_size, "maximum context in tokens (default: the model's)")
      ->check(CLI::Range(1, 1 << 24));
  cmd->add_option("--kv", rt.kv, "KV cache method and parameters, e.g. full (see `kvlm methods`)")
      ->default_val("full");
  cmd->add_option("--device", rt.device,
                  "compute device: cpu or cuda (default: cuda when a GPU is visible, else cpu)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cmd->add_option("--dtype", rt.dtype,
                  "weight matrices on the device: f16, bf16 or f32 (default: f16 on cuda; the "
                  "cpu keeps f32)")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}));
  cmd->add_option("-t,--threads", rt.threads, "CPU threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  cmd->add_flag("-v,--verbose", rt.verbose, "more detail");
  cmd->add_flag("-q,--quiet", rt.quiet, "no banner");
}

void add_sampling_flags(CLI::App* cmd, SamplingParams& s) {
  cmd->add_option("--temp", s.temperature, "temperature; 0 = greedy")->default_val(s.temperature)
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--top-k", s.top_k, "keep the k most likely tokens; 0 = off")
      ->default_val(s.top_k)->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--top-p", s.top_p, "keep the smallest set with this much probability; 1 = off")
      ->default_val(s.top_p)->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", s.min_p, "drop tokens below min-p x p(best); 0 = off")
      ->default_val(s.min_p)->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repeat-penalty", s.repeat_penalty, "penalise recent tokens; 1 = off")
      ->default_val(s.repeat_penalty)->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--repeat-last-n", s.repeat_last_n, "how many recent tokens the penalty sees")
      ->default_val(s.repeat_last_n)->check(CLI::Range(0, 1 << 24));
  cmd->add_option("--seed", s.seed, "seed of every random choice")->default_val(s.seed);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvlm: a small Llama runtime for studying KV-cache compression"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "kvlm 0.1");
  RuntimeOptions rt;

  RunOptions run;
  CLI::App* run_cmd = app.add_subcommand("run", "generate text for one prompt, streamed to stdout");
  add_runtime_flags(run_cmd, rt);
  add_sampling_flags(run_cmd, run.sampling);
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

  ChatOptions chat;
  CLI::App* chat_cmd = app.add_subcommand("chat", "interactive chat in the terminal");
  add_runtime_flags(chat_cmd, rt);
  add_sampling_flags(chat_cmd, chat.sampling);
  chat_cmd->add_option("--system", chat.system, "system prompt (default: the template's)");
  chat_cmd->add_option("-n,--n-predict", chat.n_predict,
                       "tokens per answer at most (-1: until the model stops)")
      ->default_val(chat.n_predict)->check(CLI::Range(-1, 1 << 24));

  CLI::App* info_cmd = app.add_subcommand("info", "model configuration, tensors, tokenizer, template, memory");
  add_runtime_flags(info_cmd, rt);

  CLI::App* methods_cmd = app.add_subcommand("methods", "list the KV cache methods and their parameters");

  BenchOptions bench;
  std::string kv_list;
  CLI::App* bench_cmd = app.add_subcommand("bench", "prefill and decode speed per KV method");
  add_runtime_flags(bench_cmd, rt);
  bench_cmd->add_option("--prompt-len", bench.prompt_len, "prompt tokens")
      ->default_val(bench.prompt_len)->check(CLI::Range(1, 1 << 24));
  bench_cmd->add_option("--gen", bench.gen, "tokens to decode")
      ->default_val(bench.gen)->check(CLI::Range(1, 1 << 24));
  bench_cmd->add_option("--kv-list", kv_list, "KV methods to compare, comma-separated, e.g. full,snapkv:budget=256,window=32,streaming:budget=256 (default: full)");
  bench_cmd->add_option("--seed", bench.seed, "seed of the random prompt")->default_val(bench.seed);
  bench_cmd->add_option("--json", bench.json_path, "write the results as JSON to this file");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    if (code != 0) std::fprintf(stderr, "Run with --help for usage.\n");
    return code == 0 ? 0 : 2;
  }

  try {
    if (*run_cmd) {
      if (run.prompt.empty() && run.prompt_file.empty()) {
        std::fprintf(stderr, "kvlm run: give a prompt with -p TEXT or -f FILE\n");
        return 2;
      }
      return run_command(rt, run);
    }
    if (*chat_cmd) {
      Session session(rt);
      return chat_repl(session, chat);
    }
    if (*info_cmd) return info_command(rt);
    if (*methods_cmd) return methods_command();
    if (*bench_cmd) {
      if (!kv_list.empty()) bench.kv_list = split_kv_list(kv_list);
      for (const std::string& spec : bench.kv_list) make_strategy(spec);  // fail before loading
      Session session(rt);
      return run_bench(session, bench);
    }
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "kvlm: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "kvlm: %s\n", e.what());
    return 1;
  }
  return 0;
}
