#include "kv/observer.h"

#include <algorithm>
#include <chrono>
#include <stdexcept>

namespace kvlm {

namespace {

// Adds the time from construction to destruction to a counter.
class Stopwatch {
 public:
  explicit Stopwatch(double& total) : total_(total), start_(std::chrono::steady_clock::now()) {}
  ~Stopwatch() {
    total_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  }

 private:
  double& total_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

KVObserver::KVObserver(Backend& backend, KVStrategy& strategy, int n_heads, int head_dim)
    : backend_(backend), strategy_(strategy), n_heads_(n_heads), head_dim_(head_dim) {}

KVObserver::~KVObserver() {
  for (DeviceBuffer* b : {&scores_, &newest_norms_})
    if (b->data) backend_.release(b->data);
}

float* KVObserver::grow(DeviceBuffer& buffer, size_t n_floats) {
  if (n_floats > buffer.floats) {
    if (buffer.data) backend_.release(buffer.data);
    buffer.data = nullptr;  // not left dangling should the alloc below throw
    buffer.floats = std::max(n_floats, 2 * buffer.floats);
    buffer.data = backend_.alloc(buffer.floats);
  }
  host_.resize(std::max(host_.size(), n_floats));
  return buffer.data;
}

void KVObserver::begin_call(KVCache& cache, int n_new) {
  n_new_ = n_new;
  decode_ = {};
  if (cache.tokens_seen() == 0) strategy_.begin_sequence(cache, n_new);
  needs_ = strategy_.needs();  // read per call: a strategy may stop asking
  if (n_new == 1 && needs_.decode_key_norms)
    grow(newest_norms_, size_t(cache.n_layers()) * cache.n_kv_heads());
}

void KVObserver::after_attention(KVCache& cache, int layer, const float* q,
                                 const std::vector<KVHeadView>& view) {
  if (layer_done_) layer_done_(layer);
  if (n_new_ == 1) {
    if (!needs_.decode_attention && !needs_.decode_key_norms) return;
    Stopwatch timed(seconds_);
    if (needs_.decode_attention) decode_.attention.push_back(attention_rows(view, q, 0, 1, false));
    if (needs_.decode_key_norms)
      backend_.newest_key_norms(newest_norms_.data + size_t(layer) * view.size(), view, head_dim_);
    return;
  }
  Observation obs;
  {
    Stopwatch timed(seconds_);
    obs = observe(cache, layer, q, view, needs_);
    recorded_.resize(recording_.size());
    for (size_t i = 0; i < recording_.size(); i++)
      recorded_[i].push_back(observe(cache, layer, q, view, recording_[i]));
  }
  strategy_.on_prefill_layer(cache, obs);
}

Observation KVObserver::observe(const KVCache& cache, int layer, const float* q,
                                const std::vector<KVHeadView>& view, const Needs& needs) {
  Observation obs;
  obs.layer = layer;
  obs.n_new = n_new_;
  obs.n_tokens = cache.tokens_seen() + n_new_;  // the cache advances after the last layer
  obs.window = std::min(needs.window, n_new_);
  if (obs.window > 0 && needs.window_rows)
    for (int i = 0; i < obs.window; i++)
      obs.window_rows.push_back(attention_rows(view, q, n_new_ - obs.window + i, 1, false));
  else if (obs.window > 0)
    obs.window_attention = attention_rows(view, q, n_new_ - obs.window, obs.window, true);
  if (needs.all_queries) obs.query_attention_sum = attention_rows(view, q, 0, n_new_, false);
  if (needs.key_norms) obs.key_norms = key_norms(view);
  return obs;
}

void KVObserver::replay_prefill(KVCache& cache, const KVCache& source,
                                const std::vector<Needs>& needs,
                                const std::vector<std::vector<Observation>>& recorded) {
  const int n = source.tokens_seen();
  begin_call(cache, n);
  const auto entry = std::find(needs.begin(), needs.end(), needs_.prefill_part());
  if (entry == needs.end())
    throw std::logic_error("shared prefill: nothing was recorded for " + strategy_.name());
  const std::vector<Observation>& layers = recorded[entry - needs.begin()];
  for (int l = 0; l < cache.n_layers(); l++) {
    cache.append_layer_from(source, l);
    strategy_.on_prefill_layer(cache, layers[l]);
  }
  cache.advance(n);
  end_call(cache);
}

void KVObserver::end_call(KVCache& cache) {
  if (n_new_ > 1) return strategy_.after_prefill(cache);
  if (needs_.decode_key_norms) {
    Stopwatch timed(seconds_);
    const int n_kv = cache.n_kv_heads();
    backend_.download(host_.data(), newest_norms_.data, size_t(cache.n_layers()) * n_kv);
    for (int l = 0; l < cache.n_layers(); l++)
      decode_.key_norms.emplace_back(host_.begin() + size_t(l) * n_kv, host_.begin() + size_t(l + 1) * n_kv);
  }
  strategy_.on_decode_step(cache, decode_);
}

std::vector<std::vector<float>> KVObserver::attention_rows(const std::vector<KVHeadView>& view,
                                                           const float* q, int first_row,
                                                           int n_rows, bool average) {
  const int group = n_heads_ / int(view.size());
  int stride = 0;
  for (const KVHeadView& h : view) stride = std::max(stride, h.len);
  float* out = grow(scores_, size_t(n_heads_) * stride);
  backend_.attention_scores(out, stride, q, view, n_new_, first_row, n_rows, n_heads_, head_dim_,
                            average);
  backend_.download(host_.data(), out, size_t(n_heads_) * stride);
  std::vector<std::vector<float>> rows(n_heads_);
  for (int h = 0; h < n_heads_; h++) {
    const float* row = host_.data() + size_t(h) * stride;
    rows[h].assign(row, row + view[h / group].len);
  }
  return rows;
}

std::vector<std::vector<float>> KVObserver::key_norms(const std::vector<KVHeadView>& view) {
  size_t total = 0;
  for (const KVHeadView& h : view) total += h.len;
  float* out = grow(scores_, total);
  size_t offset = 0;
  for (const KVHeadView& h : view) {
    backend_.key_norms(out + offset, h, head_dim_);
    offset += h.len;
  }
  backend_.download(host_.data(), out, total);
  std::vector<std::vector<float>> norms;
  offset = 0;
  for (const KVHeadView& h : view) {
    norms.emplace_back(host_.begin() + offset, host_.begin() + offset + h.len);
    offset += h.len;
  }
  return norms;
}

}  // namespace kvlm
