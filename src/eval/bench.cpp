#include "eval/bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <nlohmann/json.hpp>

#include "util/output_file.h"
#include "util/text_format.h"

namespace kvlm {

namespace {
// Far beyond any CPU cache or a GPU's L2 (8x the development machine's 32 MiB of L3, 5x an
// H200's 50 MiB of L2), so the probe reads main memory. A GiB read the same bandwidth
// (medians of 4 alternating runs 46.0 and 46.6 GB/s here) but tripled bench's peak memory
// (1.13 GiB against 0.35 on the default model) and took up to 1.3 s to fault in on a VM.
constexpr size_t kBandwidthProbeBytes = size_t(256) << 20;
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
// Whether a method keeps positions below its budget (pos=cache, evicting while decoding),
// so that decoding may run past the context size.
bool bounded_positions(const KVSpec& spec) {
  const std::unique_ptr<KVStrategy> strategy = make_strategy(spec);
  return strategy->compresses_while_decoding() && strategy->position_mode() == KVPositions::Cache;
}
}  // namespace

int run_bench(Session& session, const BenchOptions& o) {
  const ModelConfig& c = session.file().config();
  for (const KVSpec& kv : o.kv_list)
    if (o.prompt_len + o.gen + 1 > session.ctx_size() && !bounded_positions(kv))
      throw std::runtime_error("--prompt-len " + std::to_string(o.prompt_len) + " + --gen " +
                               std::to_string(o.gen) + " exceed the context size of " +
                               std::to_string(session.ctx_size()) + " (" + kv.text() +
                               " keeps original positions; only a method that evicts while "
                               "decoding with pos=cache runs past it)");
  if (o.prompt_len + 1 > session.ctx_size())
    throw std::runtime_error("--prompt-len " + std::to_string(o.prompt_len) +
                             " does not fit the context size of " + std::to_string(session.ctx_size()));
  check_output_path(o.json_path, "--json");
  std::fprintf(stderr, "bench: measuring memory read bandwidth...\n");
  const double bandwidth = session.backend().read_bandwidth(kBandwidthProbeBytes);
  const double weight_bytes = double(session.model().weight_bytes_read_per_token());

  // A prompt of random ordinary tokens: throughput does not depend on the text.
  std::vector<int32_t> prompt(o.prompt_len);
  std::mt19937_64 rng(o.seed);
  for (int32_t& id : prompt)
    do id = int32_t(rng() % c.vocab_size);
    while (session.tokenizer().is_special(id));

  nlohmann::json rows = nlohmann::json::array();
  std::printf("%-28s %7s %13s %9s %9s %12s %14s %10s %10s %10s %10s\n", "method", "prompt",
              "prefill tok/s", "scoring", "TTFT ms", "decode tok/s", "roofline tok/s",
              "% roofline", "KV held", "KV full", "RSS");
  for (const KVSpec& kv : o.kv_list) {
    const std::string spec = kv.text();
    session.set_strategy(kv);
    std::fprintf(stderr, "bench: %s: warm-up\n", spec.c_str());
    session.feed(std::vector<int32_t>(prompt.begin(), prompt.begin() + std::min(32, o.prompt_len)));
    session.reset();

    std::fprintf(stderr, "bench: %s: prefill %d tokens, decode %d\n", spec.c_str(), o.prompt_len, o.gen);
    Sampler greedy({0.0f, 0, 1.0f, 0.0f, 1.0f, 64, o.seed});
    const double scoring_before = session.scoring_seconds();
    auto t = Clock::now();
    std::vector<float> logits = session.feed(prompt);
    int32_t next = greedy.sample(logits, {});
    const double ttft = since(t);
    const double prefill = ttft;  // sampling one token is negligible next to the prefill
    const double scoring_share = (session.scoring_seconds() - scoring_before) / prefill;
    const KVStats after_prefill = session.cache().stats();
    t = Clock::now();
    auto interval = t;
    for (int i = 0; i < o.gen; i++) {
      next = greedy.sample(session.feed({next}), {});
      if (o.report_every > 0 && (i + 1) % o.report_every == 0) {
        const KVStats now = session.cache().stats();
        std::fprintf(stderr, "bench: %s: %d tokens decoded, %.2f tok/s over the last %d, KV %s "
                     "held (%s allocated), positions used %d, resident %s\n", spec.c_str(), i + 1,
                     o.report_every / since(interval), o.report_every,
                     format_bytes(now.bytes_held).c_str(), format_bytes(now.bytes_allocated).c_str(),
                     session.cache().next_position(), format_bytes(resident_bytes()).c_str());
        interval = Clock::now();
      }
    }
    const double decode = since(t);
    const KVStats end = session.cache().stats();

    // Each decode step reads every weight once and the live KV cache once.
    const double kv_bytes = 0.5 * (after_prefill.bytes_held + end.bytes_held);
    const double roofline = bandwidth / (weight_bytes + kv_bytes);
    const double decode_tps = o.gen / decode;
    const size_t rss = resident_bytes();
    std::printf("%-28s %7d %13.1f %8.1f%% %9.1f %12.2f %14.2f %9.1f%% %10s %10s %10s\n",
                spec.substr(0, 28).c_str(), o.prompt_len, o.prompt_len / prefill,
                100 * scoring_share, ttft * 1e3, decode_tps, roofline, 100 * decode_tps / roofline,
                format_bytes(end.bytes_held).c_str(), format_bytes(end.bytes_full).c_str(),
                format_bytes(rss).c_str());
    std::fflush(stdout);
    rows.push_back({{"method", spec}, {"prompt_tokens", o.prompt_len}, {"generated_tokens", o.gen},
                    {"prefill_tokens_per_s", o.prompt_len / prefill}, {"ttft_ms", ttft * 1e3},
                    {"scoring_share_of_prefill", scoring_share}, {"resident_bytes", rss},
                    {"decode_tokens_per_s", decode_tps}, {"roofline_tokens_per_s", roofline},
                    {"roofline_fraction", decode_tps / roofline},
                    {"kv_bytes_held", end.bytes_held}, {"kv_bytes_full", end.bytes_full}});
  }
  const char* kv_dtype = dtype_name(session.cache().kv_dtype());
  // Weights read through 4 KiB pages decode a few percent slower (kernels/cpu/backend.cpp):
  // a file the page cache holds in small pages, e.g. one just written, is mapped in them.
  const size_t huge_pages = huge_page_bytes();
  std::fprintf(stderr,
               "bench: %s on %s; read bandwidth %.1f GB/s; %s of weights read per token; KV "
               "rows in %s; %s of memory in 2 MiB pages\n",
               session.file().path().c_str(), session.backend().name().c_str(), bandwidth / 1e9,
               format_bytes(weight_bytes).c_str(), kv_dtype, format_bytes(huge_pages).c_str());
  if (!o.json_path.empty()) {
    nlohmann::json doc = {{"model", session.file().path()}, {"backend", session.backend().name()},
                          {"kv_dtype", kv_dtype},
                          {"read_bandwidth_bytes_per_s", bandwidth},
                          {"weight_bytes_per_token", weight_bytes},
                          {"huge_page_bytes", huge_pages}, {"results", rows}};
    write_output(o.json_path, doc.dump(2) + "\n", "--json");
  }
  return 0;
}

}  // namespace kvlm
