#include "commands.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "device.h"
#include "eval/bench.h"
#include "eval/kept.h"
#include "eval/svg.h"
#include "memory_plan.h"
#include "util/output_file.h"
#include "util/terminal_text.h"
#include "util/text_format.h"

namespace kvlm {

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot read the prompt file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string rope_text(const ModelConfig& c) {
  char text[256];
  int n = std::snprintf(text, sizeof text, "theta %g, %d dims rotated, scaling %s", c.rope_theta,
                        c.rope_dim, rope_scaling_name(c.rope_scaling));
  auto append = [&](auto... args) {
    n += std::snprintf(text + n, sizeof text - n, args...);
  };
  if (c.rope_scaling != RopeScaling::None) append(" (factor %g", c.rope_factor);
  if (c.rope_scaling == RopeScaling::Llama3)
    append(", low/high frequency factors %g/%g, original context %d", c.rope_low_freq_factor,
           c.rope_high_freq_factor, c.rope_original_context);
  if (c.rope_scaling == RopeScaling::Dynamic)
    append(", theta grows past %d positions", c.rope_original_context);
  if (c.rope_scaling != RopeScaling::None) append(")");
  if (!c.rope_freq_factors.empty()) append(", per-frequency factors from rope_freqs.weight");
  return text;
}

}  // namespace

std::string render_kept(const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const KVCache& cache, int layer, bool color) {
  std::vector<int> votes(prompt.size(), 0);
  for (int h = 0; h < cache.n_kv_heads(); h++)
    for (int32_t pos : cache.positions(layer, h))
      if (pos < int(prompt.size())) votes[pos]++;
  std::string out;
  int kept = 0;
  size_t i = 0;
  while (i < prompt.size()) {
    const bool keep = 2 * votes[i] > cache.n_kv_heads();
    size_t end = i;
    std::string text;
    while (end < prompt.size() && (2 * votes[end] > cache.n_kv_heads()) == keep)
      text += tok.token_bytes(prompt[end++]);
    if (keep) {
      kept += int(end - i);
      out += color ? "\033[1;32m" + text + "\033[0m" : text;
    } else {
      out += color ? "\033[2m" + text + "\033[0m"
                   : "[... " + std::to_string(end - i) + " evicted ...]";
    }
    i = end;
  }
  char head[160];
  std::snprintf(head, sizeof head, "layer %d keeps %d of %zu prompt tokens (kept by most of its %d KV heads%s):\n",
                layer, kept, prompt.size(), cache.n_kv_heads(), color ? "; bright = kept, dim = evicted" : "");
  return head + out + "\n";
}

int run_command(const RuntimeOptions& rt, const RunOptions& o) {
  std::string text = o.prompt_file.empty() ? o.prompt : read_file(o.prompt_file);
  check_output_path(o.json_path, "--json");
  check_output_path(o.kept_svg, "--kept-svg");
  check_output_path(o.dump_kept, "--dump-kept");
  const std::vector<KVSpec> specs = o.kv_list.empty() ? std::vector<KVSpec>{KVSpec::parse(rt.kv)}
                                                      : o.kv_list;
  for (const KVSpec& spec : specs) make_strategy(spec);  // fail before loading
  RuntimeOptions first = rt;
  first.kv = specs.front().text();
  Session session(first);
  const Tokenizer& tok = session.tokenizer();
  std::vector<int32_t> ids;
  if (o.chat) {
    std::vector<ChatMessage> messages;
    if (!o.system.empty()) messages.push_back({"system", o.system});
    messages.push_back({"user", text});
    ids = encode_chat(tok, session.chat_template().render(messages, true), true);
  } else {
    ids = tok.encode(text, tok.add_bos_default());
  }
  if (ids.empty()) throw std::runtime_error("the prompt is empty (-p or -f)");
  if (int(ids.size()) > session.ctx_size())
    throw std::runtime_error("the prompt is " + std::to_string(ids.size()) +
                             " tokens, longer than the context size of " +
                             std::to_string(session.ctx_size()) + " (--ctx-size)");
  if (o.show_kept >= session.file().config().n_layers)
    throw std::invalid_argument("--show-kept " + std::to_string(o.show_kept) + ": the model has " +
                                std::to_string(session.file().config().n_layers) + " layers (0.." +
                                std::to_string(session.file().config().n_layers - 1) + ")");

  const SamplingHints& hints = session.file().config().sampling;
  const SamplingParams sampling = with_model_hints(o.sampling, hints, o.sampling_given);
  if (const std::string used = hints_used(hints, o.sampling_given); !used.empty() && !rt.quiet)
    std::fprintf(stderr, "kvlm: sampling %s (%s)\n", describe(sampling).c_str(), used.c_str());

  std::vector<KeptPanel> panels;
  nlohmann::json runs = nlohmann::json::array(), kept_positions = nlohmann::json::array();
  for (size_t i = 0; i < specs.size(); i++) {
    if (i > 0) session.set_strategy(specs[i]);
    if (specs.size() > 1) std::printf("%s--- %s\n", i ? "\n" : "", specs[i].text().c_str());
    auto after_prefill = [&] {
      if (o.show_kept >= 0) {
        const bool color = isatty(STDERR_FILENO) && !std::getenv("NO_COLOR");
        const std::string kept = render_kept(tok, ids, session.cache(), o.show_kept, color);
        std::fwrite(kept.data(), 1, kept.size(), stderr);
      }
      if (!o.kept_svg.empty())
        panels.push_back(capture_kept(specs[i].text(), session.cache(), session.strategy(),
                                      int(ids.size())));
      if (!o.dump_kept.empty()) {
        const KVCache& cache = session.cache();
        nlohmann::json layers = nlohmann::json::array(), notes = nlohmann::json::array();
        for (int l = 0; l < cache.n_layers(); l++) {
          nlohmann::json heads = nlohmann::json::array();
          for (int h = 0; h < cache.n_kv_heads(); h++) heads.push_back(cache.positions(l, h));
          layers.push_back(heads);
          notes.push_back(session.strategy().layer_note(l));
        }
        kept_positions.push_back({{"spec", specs[i].text()}, {"method", session.strategy().name()},
                                  {"layer_notes", notes}, {"kept", layers}});
      }
    };
    Sampler sampler(sampling);
    GenerationStats st = session.generate(ids, o.n_predict, sampler, [](const std::string& piece) {
      // A terminal gets control characters shown, not obeyed; a pipe or file the exact text.
      const std::string shown = isatty(STDOUT_FILENO) ? visible_controls(piece) : piece;
      std::fwrite(shown.data(), 1, shown.size(), stdout);
      std::fflush(stdout);
    }, after_prefill);
    std::fputs("\n", stdout);
    std::fflush(stdout);
    if (st.context_full)  // said even without --stats: the answer was cut, not finished
      std::fprintf(stderr, "kvlm: stopped after %d tokens: the context of %d tokens is full "
                   "(-c/--ctx-size raises it)\n", st.generated_tokens, session.ctx_size());
    KVStats kv = session.cache().stats();
    if (o.stats) {
      std::fprintf(stderr, "prompt %d tokens in %.2f s (%.1f tok/s); generated %d tokens in %.2f s (%.2f tok/s)\n",
                   st.prompt_tokens, st.prefill_seconds, st.prefill_tokens_per_second(),
                   st.generated_tokens, st.decode_seconds, st.decode_tokens_per_second());
      std::fputs(kv_stats_text(session.cache(), session.strategy()).c_str(), stderr);
    }
    runs.push_back({{"prompt_tokens", st.prompt_tokens},
                    {"generated_tokens", st.generated_tokens},
                    {"prefill_seconds", st.prefill_seconds},
                    {"decode_seconds", st.decode_seconds},
                    {"stopped_at_end_token", st.hit_end},
                    {"stopped_at_full_context", st.context_full},
                    {"kv_method", session.strategy().name()},
                    {"kv_report", session.strategy().report()},
                    {"kv_bytes_held", kv.bytes_held},
                    {"kv_bytes_full", kv.bytes_full},
                    {"kv_lengths", kv.lengths}});
  }
  // One method: its object, as always; several: {"runs": [one object per method]}.
  if (!o.json_path.empty())
    write_output(o.json_path, (specs.size() == 1 ? runs[0] : nlohmann::json{{"runs", runs}}).dump(2) + "\n",
                 "--json");
  if (!o.dump_kept.empty()) {
    // [method].kept[layer][KV head]: the original positions kept after prefill.
    nlohmann::json doc = {{"model", session.file().path()}, {"prompt_tokens", ids.size()},
                          {"methods", kept_positions}};
    if (rt.verbose) doc["tokens"] = token_texts(tok, ids);
    write_output(o.dump_kept, doc.dump(1) + "\n", "--dump-kept");
  }
  if (!o.kept_svg.empty())
    write_output(o.kept_svg,
                 kept_map_svg("What each method kept of a " + std::to_string(ids.size()) +
                                  "-token prompt (" + session.file().path() + ")",
                              token_texts(tok, ids), panels, KeptMarks{}),
                 "--kept-svg");
  return 0;
}

int info_command(const RuntimeOptions& rt) {
  ModelFile f(model_path(rt.model_path));
  const ModelConfig& c = f.config();
  std::printf("file        %s (%s, %s)\n", f.path().c_str(), f.format().c_str(),
              format_bytes(f.file_bytes()).c_str());
  std::printf("loader      %s\n", f.loader_reason().c_str());
  std::printf("model       %s, llama architecture, %s parameters (%llu)\n", c.name.c_str(),
              format_count(double(f.parameter_count())).c_str(),
              static_cast<unsigned long long>(f.parameter_count()));
  std::printf("layers      %d\nhidden      %d\nheads       %d query, %d kv (GQA group %d), head dim %d\n",
              c.n_layers, c.dim, c.n_heads, c.n_kv_heads, c.group(), c.head_dim);
  std::printf("ffn         %d (SwiGLU)\nvocab       %d\ncontext     %d tokens (trained)\n",
              c.ffn_dim, c.vocab_size, c.context_length);
  std::printf("rope        %s\n", rope_text(c).c_str());
  std::printf("norm        RMSNorm, eps %g\nembeddings  %s\n", c.rms_eps,
              c.tied_embeddings ? "tied (the output reuses the token embedding)" : "untied");
  if (f.is_directory()) {
    const std::string eos = join(c.eos_ids, ", ", [](int32_t id) { return std::to_string(id); });
    std::printf("config ids  bos %d, eos [%s] (config.json, generation_config.json)\n", c.bos_id,
                eos.c_str());
  }
  std::printf("tokenizer   %s\n", f.tokenizer().describe().c_str());
  const ChatTemplate tmpl = ChatTemplate::choose(f.chat_template(), rt.chat_template, f.tokenizer());
  std::printf("template    %s (%s)\n", tmpl.name().c_str(), tmpl.reason().c_str());
  if (!f.chat_template().empty())
    std::printf("            template text from %s\n", f.chat_template_source().c_str());
  if (!tmpl.default_system().empty())
    std::printf("            default system prompt: \"%s\"\n", tmpl.default_system().c_str());
  // What run and chat sample with when no sampling flag is given.
  const std::string hinted = hints_used(c.sampling, {});
  std::printf("sampling    %s (%s)\n", describe(with_model_hints({}, c.sampling, {})).c_str(),
              hinted.empty() ? "kvlm's defaults: the model recommends none" : (hinted + "; flags override").c_str());

  struct TypeCount {
    int tensors = 0;
    uint64_t elements = 0, bytes = 0;
  };
  std::map<std::string, TypeCount> by_type;
  for (const TensorView& t : f.tensors()) {
    TypeCount& n = by_type[gguf::type_name(t.type)];
    const WeightTypeInfo info = weight_type_info(gguf::weight_type(t.type));
    n.tensors++;
    n.elements += t.n_elements;
    n.bytes += t.n_elements / info.block_elems * info.block_bytes;
  }
  std::printf("tensors     %zu:\n", f.tensors().size());
  for (const auto& [type, n] : by_type)
    std::printf("            %-5s %4d tensors %8.1fM weights %10s  %.2f bits/weight\n", type.c_str(),
                n.tensors, n.elements / 1e6, format_bytes(double(n.bytes)).c_str(),
                n.elements ? 8.0 * n.bytes / n.elements : 0.0);
  const int ctx = rt.ctx_size > 0 ? rt.ctx_size : c.context_length;
  const MemoryPlan plan = plan_memory(f, ctx, rt.device);
  std::printf("memory      plan on %s at ctx %d (KV cache %s, activations f32):\n%s",
              device_name(rt.device.device), ctx, dtype_name(rt.device.kv), plan.text().c_str());
  if (rt.device.device == Device::Cuda) {
    size_t free_bytes = 0, total_bytes = 0;
    if (gpu_memory(free_bytes, total_bytes))
      std::printf("            GPU %s: %s free of %s; the plan %s\n", gpu_name().c_str(),
                  format_bytes(double(free_bytes)).c_str(), format_bytes(double(total_bytes)).c_str(),
                  plan.total() <= double(free_bytes) ? "fits" : "does NOT fit (lower --ctx-size)");
    else
      std::printf("            no CUDA GPU is visible here: a plan only\n");
  }
  if (rt.verbose) {
    std::printf("\n%-48s %-6s %s\n", "tensor", "type", "shape");
    for (const TensorView& t : f.tensors()) {
      const std::string shape = join(t.shape, " x ", [](uint64_t d) { return std::to_string(d); });
      std::printf("%-48s %-6s %s\n", t.name.c_str(), gguf::type_name(t.type), shape.c_str());
    }
  }
  return 0;
}

int methods_command() {
  for (const MethodInfo& m : known_methods()) {
    std::printf("%-12s %s\n", m.name.c_str(), m.summary.c_str());
    if (!m.params.empty()) {
      const std::string params =
          join(m.params, ", ", [](const auto& param) { return param.first + "=" + param.second; });
      std::printf("%-12s params: %s\n", "", params.c_str());
    }
    if (!m.paper.empty()) std::printf("%-12s paper: %s\n", "", m.paper.c_str());
  }
  return 0;
}

}  // namespace kvlm
