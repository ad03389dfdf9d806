#include "session.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unistd.h>
#include <algorithm>
#include <stdexcept>

#include "device.h"
#include "memory_plan.h"
#include "util/status_line.h"
#include "util/text_format.h"

namespace kvlm {

namespace {
// Work shorter than this shows no status line; prompts shorter than kProgressTokens are
// prefilled without one.
constexpr double kStatusDelaySeconds = 0.5;
constexpr int kProgressTokens = 256;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}
}  // namespace

std::string model_path(const std::string& model_flag) {
  if (!model_flag.empty()) return model_flag;
  if (const char* env = std::getenv("KVLM_MODEL")) return env;
  // The fetched default model sits in the repository's weights/, beside ./kvlm: found from
  // the working directory or, when kvlm runs from elsewhere, from the executable's own.
  const std::filesystem::path fetched = "weights/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (std::filesystem::exists(fetched)) return fetched;
  std::error_code error;
  const auto beside_executable =
      std::filesystem::read_symlink("/proc/self/exe", error).parent_path() / fetched;
  if (!error && std::filesystem::exists(beside_executable)) return beside_executable;
  throw std::runtime_error(fetched.string() +
                           ": the default model is not here; fetch it with `make model` "
                           "(or weights/get-default.sh), or pass --model PATH");
}

std::string kv_stats_text(const KVCache& cache, const KVStrategy& strategy) {
  const KVStats st = cache.stats();
  char line[256];
  std::snprintf(line, sizeof line,
                "kv %s: %d tokens seen, %s held / %s full (%.2fx smaller, %s saved), %s allocated\n",
                strategy.name().c_str(), st.tokens_seen, format_bytes(st.bytes_held).c_str(),
                format_bytes(st.bytes_full).c_str(), st.compression(),
                format_bytes(double(st.bytes_full) - double(st.bytes_held)).c_str(),
                format_bytes(st.bytes_allocated).c_str());
  std::string text = line;
  if (st.bytes_scratch) {  // merged layers are restored into this one-layer buffer
    std::snprintf(line, sizeof line, "  + %s of scratch to restore merged layers for attention\n",
                  format_bytes(st.bytes_scratch).c_str());
    text += line;
  }
  // One line per run of layers that keep alike: most methods keep the same everywhere.
  auto kept_text = [&](size_t l) {
    int lo = st.lengths[l][0], hi = lo;
    double sum = 0;
    for (int len : st.lengths[l]) lo = std::min(lo, len), hi = std::max(hi, len), sum += len;
    std::snprintf(line, sizeof line, "kept min %d / mean %.1f / max %d\n", lo,
                  sum / st.lengths[l].size(), hi);
    return std::string(line);
  };
  for (size_t first = 0, end; first < st.lengths.size(); first = end) {
    const std::string kept = kept_text(first);
    for (end = first + 1; end < st.lengths.size() && kept_text(end) == kept;) end++;
    if (end - first == 1)
      std::snprintf(line, sizeof line, "  layer  %2zu: ", first);
    else
      std::snprintf(line, sizeof line, "  layers %2zu-%zu: ", first, end - 1);
    text += line + kept;
  }
  return text + strategy.report();
}

size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  size_t pages_total = 0, pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return pages_resident * size_t(sysconf(_SC_PAGESIZE));
}

size_t huge_page_bytes(std::istream& smaps_rollup) {
  size_t total = 0;
  std::string line, field;
  while (std::getline(smaps_rollup, line)) {
    std::istringstream words(line);
    size_t kib = 0;
    if (words >> field >> kib &&
        (field == "AnonHugePages:" || field == "FilePmdMapped:" || field == "ShmemPmdMapped:"))
      total += kib << 10;
  }
  return total;
}

size_t huge_page_bytes() {
  std::ifstream rollup("/proc/self/smaps_rollup");
  return huge_page_bytes(rollup);
}

Session::Session(const RuntimeOptions& options)
    : progress_(options.progress), template_name_(options.chat_template) {
  const std::string path = model_path(options.model_path);
  const KVSpec kv = KVSpec::parse(options.kv);
  make_strategy(kv);  // a bad spec fails before the model loads
  auto start = std::chrono::steady_clock::now();
  file_ = std::make_unique<ModelFile>(path);
  backend_ = make_backend(options.device, options.threads);
  const ModelConfig& c = file_->config();
  int ctx = options.ctx_size > 0 ? options.ctx_size : c.context_length;
  const MemoryPlan plan = plan_memory(*file_, ctx, options.device);
  try {
    StatusLine loading(progress_, kStatusDelaySeconds);
    model_ = file_->load(*backend_, [&](double done) {
      loading.update("loading " + path + ": " + std::to_string(int(100 * done)) + "%");
    });
  } catch (const OutOfMemory& e) {
    throw OutOfMemory("the weights (" + format_bytes(plan.items[0].bytes) + ") do not fit: " +
                      e.what());
  }
  size_t free_bytes = 0, total_bytes = 0;
  if (options.device.device == Device::Cuda && gpu_memory(free_bytes, total_bytes) &&
      plan.total() - plan.items[0].bytes > double(free_bytes))
    std::fprintf(stderr, "warning: at ctx %d the KV cache, activations and scratch may need %s, "
                 "but %s of GPU memory is free; a long prompt may not fit (see `kvlm info -c %d "
                 "--device cuda`)\n", ctx, format_bytes(plan.total() - plan.items[0].bytes).c_str(),
                 format_bytes(double(free_bytes)).c_str(), ctx);
  if (options.ctx_size > c.context_length)
    std::fprintf(stderr, "warning: --ctx-size %d exceeds the trained context of %d tokens\n",
                 options.ctx_size, c.context_length);
  cache_ = model_->make_cache(ctx, options.device.kv);
  set_strategy(kv);
  if (!options.quiet)
    std::fprintf(stderr, "kvlm: %s (%s, %s params, %d layers) on %s, ctx %d, kv %s, loaded in %.1f s\n",
                 path.c_str(), file_->format().c_str(),
                 format_count(double(file_->parameter_count())).c_str(), c.n_layers,
                 backend_->name().c_str(), ctx, strategy_->name().c_str(), seconds_since(start));
}

Session::~Session() = default;

ChatTemplate Session::chat_template() const {
  return ChatTemplate::choose(file_->chat_template(), template_name_, tokenizer());
}

void Session::set_strategy(const KVSpec& spec) {
  std::unique_ptr<KVStrategy> strategy = make_strategy(spec);
  strategy->set_model(file_->config());
  use_strategy(std::move(strategy));
  reset();
  cache_->set_position_mode(strategy_->position_mode());
}

void Session::use_strategy(std::unique_ptr<KVStrategy> strategy) {
  const ModelConfig& c = file_->config();
  observer_ = std::make_unique<KVObserver>(*backend_, *strategy, c.n_heads, c.head_dim);
  strategy_ = std::move(strategy);
}

void Session::reset() {
  commit();
  cache_->clear();
  history_.clear();
}

void Session::checkpoint() {
  cache_->checkpoint();
  marked_strategy_ = strategy_->clone();
  marked_history_ = history_.size();
}

void Session::rollback() {
  if (!marked_strategy_) return;
  cache_->rollback();
  use_strategy(std::move(marked_strategy_));
  history_.resize(marked_history_);
}

void Session::commit() {
  cache_->commit();
  marked_strategy_.reset();
}

std::vector<float> Session::feed(const std::vector<int32_t>& ids) {
  if (!progress_ || int(ids.size()) < kProgressTokens) return feed_with(ids, observer_.get());
  // A long prefill says how far it is: layers done, speed, time left.
  StatusLine line(true, kStatusDelaySeconds);
  const int layers = file_->config().n_layers;
  observer_->on_layer_done([&](int layer) {
    const double done = double(layer + 1) / layers, seconds = line.elapsed();
    char text[160];
    std::snprintf(text, sizeof text, "prefill %zu tokens: layer %d/%d, %.0f tok/s, about %.0f s left",
                  ids.size(), layer + 1, layers, done * ids.size() / seconds,
                  seconds / done - seconds);
    line.update(text);
  });
  struct StopReporting {
    KVObserver& observer;
    ~StopReporting() { observer.on_layer_done({}); }
  } stop{*observer_};
  return feed_with(ids, observer_.get());
}

std::vector<float> Session::feed_uncompressed(const std::vector<int32_t>& ids) {
  return feed_with(ids, nullptr);
}

std::vector<float> Session::feed_with(const std::vector<int32_t>& ids, KVObserver* observer) {
  if (cache_->next_position() + int(ids.size()) > ctx_size())
    throw std::runtime_error("context full: " + std::to_string(cache_->next_position()) + " + " +
                             std::to_string(ids.size()) + " tokens exceed the context size of " +
                             std::to_string(ctx_size()) + " (--ctx-size, or /reset in chat)");
  for (int32_t id : ids)
    if (id < 0 || id >= file_->config().vocab_size)
      throw std::runtime_error("token id " + std::to_string(id) + " is outside the vocabulary");
  history_.insert(history_.end(), ids.begin(), ids.end());
  return model_->forward(ids, *cache_, observer);
}

Needs Session::prefill_needs(const KVSpec& spec, int n_tokens) const {
  std::unique_ptr<KVStrategy> strategy = make_strategy(spec);
  strategy->set_model(file_->config());
  const KVCache empty(*backend_, cache_->n_layers(), cache_->n_kv_heads(), cache_->head_dim(),
                      cache_->max_tokens(), cache_->kv_dtype());
  strategy->begin_sequence(empty, n_tokens);
  return strategy->needs().prefill_part();
}

void Session::prefill_shared(const std::vector<int32_t>& ids, const std::vector<Needs>& needs) {
  if (ids.size() < 2) throw std::invalid_argument("prefill_shared: a prefill has 2 tokens or more");
  drop_shared();
  auto shared = std::make_unique<SharedPrefill>();
  shared->ids = ids;
  shared->cache = model_->make_cache(cache_->max_tokens(), cache_->kv_dtype());
  for (const Needs& n : needs)  // one record for methods that ask the same
    if (std::find(shared->needs.begin(), shared->needs.end(), n) == shared->needs.end())
      shared->needs.push_back(n);
  std::unique_ptr<KVStrategy> keep_all = make_strategy("full");
  KVObserver recorder(*backend_, *keep_all, file_->config().n_heads, file_->config().head_dim);
  recorder.record(shared->needs);
  const auto start = std::chrono::steady_clock::now();
  shared->logits = model_->forward(ids, *shared->cache, &recorder);
  shared->seconds = seconds_since(start);
  shared->observations = recorder.take_recorded();
  shared_ = std::move(shared);
}

std::vector<float> Session::replay_shared() {
  if (!shared_) throw std::logic_error("replay_shared: no shared prefill");
  reset();
  history_ = shared_->ids;
  observer_->replay_prefill(*cache_, *shared_->cache, shared_->needs, shared_->observations);
  return shared_->logits;
}

void Session::drop_shared() { shared_.reset(); }

GenerationStats Session::generate(const std::vector<int32_t>& prompt, int n_predict,
                                  Sampler& sampler,
                                  const std::function<void(const std::string&)>& on_text,
                                  const std::function<void()>& after_prefill) {
  GenerationStats st;
  st.prompt_tokens = int(prompt.size());
  auto start = std::chrono::steady_clock::now();
  std::vector<float> logits = feed(prompt);
  st.prefill_seconds = seconds_since(start);
  if (after_prefill) after_prefill();

  StreamDecoder text(tokenizer());
  start = std::chrono::steady_clock::now();
  for (int i = 0; i < n_predict; i++) {
    int32_t next = sampler.sample(logits, history_);
    if (tokenizer().is_end_of_generation(next)) {
      st.hit_end = true;
      break;
    }
    if (cache_->next_position() >= ctx_size()) {
      st.context_full = true;
      break;
    }
    // Every shown token is also fed, so the cache always holds the whole conversation.
    if (std::string piece = text.push(next); !piece.empty()) on_text(piece);
    st.generated_tokens++;
    logits = feed({next});
  }
  if (std::string rest = text.flush(); !rest.empty()) on_text(rest);
  st.decode_seconds = seconds_since(start);
  return st;
}

}  // namespace kvlm
