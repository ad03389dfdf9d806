// The kvlm executable end to end: golden greedy text, scripted chat, and clear errors
// (message naming the culprit, exit status 1 for runtime failures, 2 for bad usage).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_fixture.h"
#include "device.h"
#include "kernels/cpu/simd.h"
#include "kernels/cpu/strips.h"
#include "model_fixture.h"
#include "safetensors_writer.h"

namespace kvlm {
namespace {

using namespace test::cli;

nlohmann::json golden_case(int i) {
  std::ifstream in(test::data_path("smollm2_golden.json"));
  return nlohmann::json::parse(in)["cases"][i];
}

// The reference is transformers on the dequantised weights, so kvlm runs the same numbers:
// --dtype f32 (weights widened at load, activations unrounded).
TEST(Cli, RunProducesTheGoldenGreedyText) {
  KVLM_REQUIRE_MODEL();
  for (int i : {0, 1}) {
    nlohmann::json c = golden_case(i);
    Result r = kvlm("run " + model_flag() + " --dtype f32 --temp 0 -n 32 -p " + quote(c["prompt"]));
    ASSERT_EQ(r.status, 0) << r.err;
    // The reference ran 32 steps regardless; kvlm stops at the end-of-turn token.
    std::string expected = c["greedy_text"];
    expected = expected.substr(0, expected.find("<|im_end|>"));
    EXPECT_EQ(r.out, expected + "\n") << "stdout holds only the answer";
    EXPECT_NE(r.err.find("kvlm: "), std::string::npos) << "the banner goes to stderr";
  }
}

// --dtype f32: with its Q4_1 weights read as llama.cpp reads them (inputs rounded to 8
// bits per block), the default model opens its greedy answer with "L'Étoile", exactly as
// llama.cpp does on the same file (README, "Weights").
TEST(Cli, ChatAnswersScriptedInputAndExitsCleanlyOnEof) {
  KVLM_REQUIRE_MODEL();
  Result r = kvlm("chat " + model_flag() + " --dtype f32 --temp 0 -n 24",
                  "What is the capital of France?\n/stats\nAnd of Italy?\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("Paris"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Rome"), std::string::npos) << "the second turn sees the first: " << r.out;
  EXPECT_NE(r.err.find("kv full:"), std::string::npos) << "/stats prints the cache";
  EXPECT_NE(r.err.find("tok/s"), std::string::npos) << "a stats line follows each answer";
}

TEST(Cli, ChatCommandsWork) {
  KVLM_REQUIRE_MODEL();
  Result r = kvlm("chat " + model_flag(), "/help\n/kv nosuch\n/reset\n/nope\n/quit\nnot read\n");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("/reset"), std::string::npos);
  EXPECT_NE(r.err.find("unknown method 'nosuch'"), std::string::npos);
  EXPECT_NE(r.err.find("unknown command /nope"), std::string::npos);
  EXPECT_EQ(r.out, "") << "/quit ends before the last line";
}

TEST(Cli, InfoDescribesTheModel) {
  KVLM_REQUIRE_MODEL();
  Result r = kvlm("info " + model_flag());
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* s : {"layers      30", "9 query, 3 kv", "pre-tokenizer smollm", "chatml", "Q4_1",
                        "-> GGUF loader (272 tensors)", "template text from GGUF tokenizer.chat_template"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " in\n" << r.out;
}

// A Hugging Face directory goes through the safetensors loader, the sentencepiece
// tokenizer of its tokenizer.model and the template of its tokenizer_config.json.
TEST(Cli, InfoDescribesAHuggingFaceDirectory) {
  Result r = kvlm("info -m " + kvlm::test::data_path("hf/sharded-dynamic"));
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* s : {"model.safetensors.index.json -> safetensors loader (3 shards",
                        "sentencepiece", "tokenizer.model", "zephyr", "dynamic"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " in\n" << r.out;
}

// A model's generation_config.json sets the sampling that run, chat and info use for the
// flags not given; do_sample false is greedy, exactly as --temp 0.
TEST(Cli, SamplingDefaultsComeFromTheModel) {
  test::TempDir dir("sampling-hints");
  std::filesystem::copy(test::data_path("hf/sharded-dynamic"), dir.path(),
                        std::filesystem::copy_options::recursive);
  const std::string gen = dir.file("generation_config.json");
  test::write_text(gen, R"({"bos_token_id": 1, "eos_token_id": 2, "temperature": 0.25, "top_p": 0.8})");
  Result info = kvlm("info -m " + dir.path());
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_NE(info.out.find("sampling    temperature 0.25, top-k 40, top-p 0.8, min-p 0.05 (temperature, "
                          "top-p from generation_config.json; flags override)"), std::string::npos) << info.out;
  Result hinted = kvlm("run -m " + dir.path() + " -n 3 -p hello");
  ASSERT_EQ(hinted.status, 0) << hinted.err;
  EXPECT_NE(hinted.err.find("kvlm: sampling temperature 0.25, top-k 40, top-p 0.8, min-p 0.05 "
                            "(temperature, top-p from generation_config.json)"), std::string::npos) << hinted.err;
  Result flagged = kvlm("run -m " + dir.path() + " -n 3 -p hello --temp 0.7 --top-p 0.5");
  ASSERT_EQ(flagged.status, 0) << flagged.err;
  EXPECT_EQ(flagged.err.find("kvlm: sampling"), std::string::npos) << "every hinted flag was given";

  test::write_text(gen, R"({"bos_token_id": 1, "eos_token_id": 2, "temperature": 0.9, "do_sample": false})");
  Result model_greedy = kvlm("run -m " + dir.path() + " -n 8 -p hello --seed 3");
  Result flag_greedy = kvlm("run -m " + dir.path() + " -n 8 -p hello --seed 3 --temp 0");
  ASSERT_EQ(model_greedy.status, 0) << model_greedy.err;
  EXPECT_NE(model_greedy.err.find("kvlm: sampling greedy (temperature from generation_config.json)"),
            std::string::npos) << model_greedy.err;
  EXPECT_EQ(model_greedy.out, flag_greedy.out);
}

// SimLayerKV's threshold follows the model family; SmolLM2 has none and gets LLaMA-3's.
TEST(Cli, StatsNameSimLayerKVsThresholdAndWhy) {
  KVLM_REQUIRE_MODEL();
  Result r = kvlm("run " + model_flag() + " --temp 0 -n 1 --kv simlayerkv --stats -p " +
                  quote("The river runs past the old mill."));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("simlayerkv: delta 0.9 (no official value for this model; LLaMA-3's"),
            std::string::npos) << r.err;
}

TEST(Cli, MethodsListsEveryMethodWithParamsAndPaper) {
  Result r = kvlm("methods");
  EXPECT_EQ(r.status, 0);
  for (const char* m : {"full ", "streaming ", "h2o ", "snapkv ", "pyramidkv ", "adakv ",
                        "dynamickv ", "simlayerkv ", "knorm ", "minicache "})
    EXPECT_NE(("\n" + r.out).find(std::string("\n") + m), std::string::npos) << m;
  EXPECT_NE(r.out.find("arXiv 2404.14469"), std::string::npos);
  EXPECT_NE(r.out.find("window=32"), std::string::npos);
}

TEST(Cli, StatsAndShowKeptShowWhatTheMethodKept) {
  KVLM_REQUIRE_MODEL();
  std::string prompt;
  for (int i = 0; i < 12; i++) prompt += "The river runs past the old mill and under the bridge. ";
  Result r = kvlm("run " + model_flag() + " --temp 0 -n 2 --kv snapkv:budget=24,window=8 --stats "
                  "--show-kept 5 -p " + quote(prompt));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("layer 5 keeps 24 of"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("evicted ...]"), std::string::npos) << "no colour when not a terminal";
  EXPECT_NE(r.err.find("layers  0-29: kept min 26 / mean 26.0 / max 26\n"), std::string::npos)
      << "24 kept + 2 decoded tokens in every layer, on one line\n" << r.err;
  EXPECT_NE(r.err.find("smaller"), std::string::npos);
}

// --kv-list runs the prompt with each method in turn; --kept-svg draws them side by side.
TEST(Cli, RunWithSeveralMethodsAnswersEachAndDrawsWhatTheyKept) {
  KVLM_REQUIRE_MODEL();
  const fs::path dir = fs::temp_directory_path() / ("kvlm_kept_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string svg = (dir / "kept.svg").string(), json = (dir / "runs.json").string();
  std::string prompt;
  for (int i = 0; i < 6; i++) prompt += "The river runs past the old mill and under the bridge. ";
  Result r = kvlm("run " + model_flag() + " --temp 0 -n 2 --kv-list full,snapkv:budget=24,window=8 "
                  "--kept-svg " + svg + " --json " + json + " -p " + quote(prompt));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.rfind("--- full\n", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\n--- snapkv:budget=24,window=8\n"), std::string::npos) << r.out;
  const nlohmann::json j = nlohmann::json::parse(slurp(json));
  ASSERT_EQ(j["runs"].size(), 2u);
  EXPECT_EQ(j["runs"][1]["kv_lengths"][0][0], 24 + 2) << "24 kept + the 2 tokens generated";
  const std::string drawing = slurp(svg);
  size_t panels = 0;
  for (size_t at = drawing.find("<g class=\"panel\""); at != std::string::npos;
       at = drawing.find("<g class=\"panel\"", at + 1))
    panels++;
  EXPECT_EQ(panels, 2u);
  EXPECT_NE(drawing.find("data-method=\"snapkv:budget=24,window=8\""), std::string::npos);
  fs::remove_all(dir);
  expect_error(kvlm("run " + model_flag() + " --kv full --kv-list full -p x"), 2, "--kv-list");
}

// Progress lines are for terminals: a long prefill into a pipe writes none.
TEST(Cli, NoProgressLinesWhenStderrIsNotATerminal) {
  KVLM_REQUIRE_MODEL();
  std::string prompt;
  for (int i = 0; i < 24; i++) prompt += "The river runs past the old mill and under the bridge. ";
  Result r = kvlm("run " + model_flag() + " --temp 0 -n 1 --stats -p " + quote(prompt));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("prompt 2"), std::string::npos) << "a prompt of over 256 tokens:\n" << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find(" tokens: layer "), std::string::npos) << r.err;  // "prefill N tokens: layer l/L"
}

TEST(Cli, BadModelFilesGiveOneLineErrors) {
  fs::path dir = fs::temp_directory_path() / "kvlm_cli_models";
  fs::create_directories(dir);
  expect_error(kvlm("run -p hi --model /no/such.gguf"), 1, "/no/such.gguf: no such file");
  expect_error(kvlm("run -p hi --model " + dir.string()), 1, "is a directory");
  std::ofstream(dir / "text.gguf") << "this is not a model file at all";
  expect_error(kvlm("run -p hi --model " + (dir / "text.gguf").string()), 1, "magic");
  if (test::have_model()) {  // the real file cut in the middle of its tensor data
    std::ifstream in(test::model_path(), std::ios::binary);
    std::string head(4 << 20, '\0');
    in.read(head.data(), head.size());
    std::ofstream(dir / "cut.gguf", std::ios::binary) << head;
    Result r = kvlm("run -p hi --model " + (dir / "cut.gguf").string());
    expect_error(r, 1, (dir / "cut.gguf").string());
  }
  fs::remove_all(dir);
}

// Without --model or $KVLM_MODEL, kvlm looks for the fetched default model in weights/ of
// the working directory, then beside its own executable, so ./kvlm also runs from elsewhere;
// with neither, it says how to fetch it.
TEST(Cli, TheDefaultModelIsFoundBesideTheExecutable) {
  const char* bin = std::getenv("KVLM_BIN");
  const fs::path install = fs::temp_directory_path() / ("kvlm_install_" + std::to_string(::getpid()));
  const fs::path elsewhere = install / "elsewhere";
  fs::create_directories(elsewhere);
  fs::copy_file(bin ? bin : "./kvlm", install / "kvlm");
  auto info = [&] {
    const std::string cmd = "cd " + quote(elsewhere.string()) + " && env -u KVLM_MODEL " +
                            quote((install / "kvlm").string()) + " info > out 2> err";
    const int raw = std::system(cmd.c_str());
    return Result{WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(elsewhere / "out"),
                  slurp(elsewhere / "err")};
  };
  expect_error(info(), 1, "weights/SmolLM2-135M-Instruct.Q4_1.gguf: the default model is not "
                          "here; fetch it with `make model`");
  const fs::path fetched = install / "weights/SmolLM2-135M-Instruct.Q4_1.gguf";
  fs::create_directories(fetched.parent_path());
  fs::copy_file(test::data_path("quant_models/tiny256-Q4_K.gguf"), fetched);
  const Result r = info();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("file        " + fetched.string()), std::string::npos) << r.out;
  fs::remove_all(install);
}

TEST(Cli, BadFlagsAreUsageErrors) {
  expect_error(kvlm("run -p hi --kv nosuch"), 2, "unknown method 'nosuch'");
  expect_error(kvlm("run -p hi --kv snapkv:budget=abc"), 2, "budget=abc");
  expect_error(kvlm("run -p hi --kv snapkv:kernel=4"), 2, "kernel");
  expect_error(kvlm("run -p hi --kv snapkv:nope=1"), 2, "unknown parameter 'nope'");
  expect_error(kvlm("run -p hi --kv streaming+minicache"), 2, "minicache");
  expect_error(kvlm("run -p hi --temp -1"), 2, "--temp");
  expect_error(kvlm("run -p hi -n abc"), 2, "-n");
  expect_error(kvlm("run"), 2, "-p");
  expect_error(kvlm("frobnicate"), 2, "--help");
  expect_error(kvlm("run -p hi --device tpu"), 2, "--device");
  expect_error(kvlm("run -p hi --chat --template vicuna"), 2, "--template");
  expect_error(kvlm("chat --template vicuna"), 2, "--template");
}

TEST(Cli, TemplateFlagOverridesTheModelsTemplate) {
  KVLM_REQUIRE_MODEL();
  Result info = kvlm("info " + model_flag());
  ASSERT_EQ(info.status, 0) << info.err;
  EXPECT_NE(info.out.find("template    chatml (detected from <|im_start|>"), std::string::npos)
      << info.out;
  info = kvlm("info " + model_flag() + " --template llama3");
  EXPECT_NE(info.out.find("template    llama3 (--template llama3)"), std::string::npos) << info.out;
  // The prompt's length shows which layout was used: ChatML with SmolLM2's default system
  // prompt, whether detected or named, and the much shorter plain one when named.
  auto prompt_tokens = [&](const std::string& flags) {
    Result r = kvlm("run " + model_flag() + " --temp 0 -n 1 --chat --stats -p hi " + flags);
    EXPECT_EQ(r.status, 0) << r.err;
    const size_t at = r.err.find("prompt ");
    return at == std::string::npos ? -1 : std::atoi(r.err.c_str() + at + 7);
  };
  const int detected = prompt_tokens(""), chatml = prompt_tokens("--template chatml"),
            plain = prompt_tokens("--template plain");
  EXPECT_EQ(detected, chatml);
  EXPECT_GT(plain, 0);
  EXPECT_LT(plain, chatml);
}

TEST(Cli, DeviceAndDtypeAreCheckedBeforeLoading) {
  expect_error(kvlm("run -p hi --dtype f8"), 2, "--dtype");
  expect_error(kvlm("run -p hi --device cpu --dtype q4_0"), 2, "--dtype");
  // A random model: the check must not depend on the default model being there.
  if (cuda_gpu_count() == 0) {
    expect_error(kvlm("run -p hi --device cuda --model random:smollm2-135m"), 1, "--device cuda");
  }
}

// The GPU kit's log records which clone of the CPU kernels runs on its machine.
TEST(Cli, VersionNamesTheCpuKernelsInUse) {
  Result r = kvlm("--version");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find(std::string("CPU kernels ") + simd::dispatch_level()), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find(cuda_built() ? "CUDA backend built" : "no CUDA backend"), std::string::npos)
      << r.out;
}

// The banner names the prefill products in use: bf16 pairs where the CPU has AVX512-BF16,
// float32 everywhere with --f32-prefill.
TEST(Cli, F32PrefillTurnsTheBf16ProductsOff) {
  const std::string args = "run -m tests/data/hf/llama3-gqa -p hi -n 1 --temp 0";
  const Result pairs = kvlm(args), exact = kvlm(args + " --f32-prefill");
  ASSERT_EQ(pairs.status, 0) << pairs.err;
  ASSERT_EQ(exact.status, 0) << exact.err;
  EXPECT_EQ(pairs.err.find("prefill in bf16 pairs") != std::string::npos,
            strips::cpu_has_bf16_products()) << pairs.err;
  EXPECT_EQ(exact.err.find("bf16 pairs"), std::string::npos) << exact.err;
  EXPECT_NE(exact.err.find("on cpu ("), std::string::npos) << exact.err;
}

// --f32-prefill chooses among the CPU's products; on cuda it would change nothing.
TEST(Cli, F32PrefillIsRefusedOnCuda) {
  const Result r = kvlm("info --model random:smollm2-135m --device cuda --f32-prefill");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("--f32-prefill: a cpu option"), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}

// The memory plan needs no GPU: it is computed from the configuration.
TEST(Cli, InfoPrintsTheMemoryPlanOfARandomModel) {
  Result r = kvlm("info --model random:llama2-7b --device cuda --dtype f16 -c 4096");
  ASSERT_EQ(r.status, 0) << r.err;
  // 6.74e9 weights x 2 bytes = 12.6 GiB; the f16 KV cache (the default) holds 2 x 32
  // layers x 4096 values x 2 bytes = 0.5 MiB per token, 2 GiB at 4096 tokens; f32 twice that.
  for (const char* s : {"6.74B parameters (6738415616)", "plan on cuda at ctx 4096 (KV cache f16", "12.6 GiB",
                        "f16, 512.0 KiB per token", "2.0 GiB", "total"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " in\n" << r.out;
  r = kvlm("info --model random:llama2-7b --device cuda --kv-dtype f32 -c 4096");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* s : {"(KV cache f32", "f32, 1.0 MiB per token", "4.0 GiB"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " in\n" << r.out;
  expect_error(kvlm("info --model random:llama2-7b --kv-dtype f8"), 2, "--kv-dtype");
#ifdef KVLM_CUDA
  // Only a build with the CUDA backend knows its scratch sizes.
  EXPECT_NE(r.out.find("scratch"), std::string::npos) << r.out;
#endif
  expect_error(kvlm("info --model random:gpt5"), 1, "known: llama2-7b, llama3-8b");
}

TEST(Cli, PromptLongerThanTheContextIsRefused) {
  KVLM_REQUIRE_MODEL();
  expect_error(kvlm("run " + model_flag() + " -c 8 -p " +
                    quote("a prompt that is clearly longer than eight tokens of context")),
               1, "longer than the context size of 8");
}

TEST(Cli, UnwritableJsonPathFailsBeforeWork) {
  KVLM_REQUIRE_MODEL();
  expect_error(kvlm("run " + model_flag() + " -p hi -n 1 --json /no/such/dir/out.json"), 1,
               "/no/such/dir/out.json");
}

TEST(Cli, RunWritesStatsJson) {
  KVLM_REQUIRE_MODEL();
  fs::path out = fs::temp_directory_path() / "kvlm_cli_stats.json";
  Result r = kvlm("run " + model_flag() + " --temp 0 -n 4 -p Hello --json " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(slurp(out));
  EXPECT_EQ(j["kv_method"], "full");
  EXPECT_EQ(j["kv_bytes_held"], j["kv_bytes_full"]);
  EXPECT_EQ(j["kv_lengths"].size(), 30u);
  // Bytes are the stored rows': f16 by default, twice as many with --kv-dtype f32.
  r = kvlm("run " + model_flag() + " --temp 0 -n 4 -p Hello --kv-dtype f32 --json " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json f32 = nlohmann::json::parse(slurp(out));
  EXPECT_EQ(f32["kv_bytes_held"].get<size_t>(), 2 * j["kv_bytes_held"].get<size_t>());
  fs::remove(out);
}

// An answer cut by a full context says so on stderr (exit 0: it is an answer, not an
// error) and in --json; one that ends at its token limit says nothing.
TEST(Cli, RunSaysWhenTheContextCutTheAnswer) {
  const std::string tiny = "run -m " + test::data_path("quant_models/tiny256-Q4_K.gguf") +
                           " --temp 0 -p hi ";
  const fs::path out = fs::temp_directory_path() / ("kvlm_cli_cut_" + std::to_string(::getpid()) + ".json");
  Result r = kvlm(tiny + "-c 6 -n 20 --json " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json cut = nlohmann::json::parse(slurp(out));
  const int generated = cut["generated_tokens"];
  EXPECT_EQ(cut["prompt_tokens"].get<int>() + generated, 6);
  EXPECT_TRUE(cut["stopped_at_full_context"]);
  EXPECT_NE(r.err.find("stopped after " + std::to_string(generated) +
                       " tokens: the context of 6 tokens is full"), std::string::npos) << r.err;
  r = kvlm(tiny + "-c 64 -n 2 --json " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(nlohmann::json::parse(slurp(out))["stopped_at_full_context"]);
  EXPECT_EQ(r.err.find("stopped after"), std::string::npos) << r.err;
  fs::remove(out);
}

// --dump-kept: per method, layer and KV head, the kept original positions; snapkv keeps
// its budget per head, the observation window among them; -v adds the tokens' text.
TEST(Cli, DumpKeptWritesEveryHeadsKeptPositions) {
  const fs::path out = fs::temp_directory_path() / ("kvlm_cli_kept_" + std::to_string(::getpid()) + ".json");
  std::string prompt;
  for (int i = 0; i < 12; i++) prompt += "the quick brown fox jumps over the lazy dog ";
  const Result r = kvlm("run -m tests/data/hf/llama3-gqa -v --temp 0 -n 2 -p " + quote(prompt) +
                        " --kv-list full,snapkv:budget=16,window=4 --dump-kept " + out.string());
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(slurp(out));
  const int n = j["prompt_tokens"];
  ASSERT_GT(n, 40);
  ASSERT_EQ(j["tokens"].size(), size_t(n));
  ASSERT_EQ(j["methods"].size(), 2u);
  EXPECT_EQ(j["methods"][1]["spec"], "snapkv:budget=16,window=4");
  for (int m = 0; m < 2; m++) {
    const nlohmann::json& layers = j["methods"][m]["kept"];
    ASSERT_EQ(layers.size(), 2u);
    for (const nlohmann::json& layer : layers) {
      ASSERT_EQ(layer.size(), 2u) << "two KV heads";
      for (const nlohmann::json& head : layer) {
        const std::vector<int> kept = head;
        ASSERT_EQ(kept.size(), size_t(m == 0 ? n : 16));
        EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
        for (int w = 1; w <= 4; w++) EXPECT_EQ(kept[kept.size() - w], n - w) << "the window stays";
      }
    }
  }
  EXPECT_EQ(kvlm("run -m tests/data/hf/llama3-gqa -p hi -n 1 --dump-kept /no/such/dir/k.json").status, 1);
  fs::remove(out);
}

// bench --report-every: a method with positions inside the cache decodes past the context
// in bounded memory (a small soak); one with original positions is refused up front.
TEST(Cli, BenchReportsAsItDecodesPastTheContext) {
  const std::string args = "bench -m tests/data/hf/untied-linear -c 32 --prompt-len 8 --gen 40 ";
  const Result r = kvlm(args + "--report-every 20 --kv-list streaming:budget=8");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* line : {": 20 tokens decoded,", ": 40 tokens decoded,"})
    EXPECT_NE(r.err.find(line), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("positions used 8,"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("positions used 9"), std::string::npos) << r.err;
  expect_error(kvlm(args + "--kv-list full"), 1,
               "exceed the context size of 32 (full keeps original positions");
}

}  // namespace
}  // namespace kvlm
