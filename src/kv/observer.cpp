#include "kv/observer.h"

#include <algorithm>
#include <chrono>

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

void KVObserver::begin_call(KVCache& cache, int n_new) {
  n_new_ = n_new;
  decode_ = {};
  if (cache.tokens_seen() == 0) strategy_.begin_sequence(cache, n_new);
  needs_ = strategy_.needs();  // read per call: a strategy may stop asking
}

void KVObserver::after_attention(KVCache& cache, int layer, const float* q,
                                 const std::vector<KVHeadView>& view) {
  if (layer_done_) layer_done_(layer);
  if (n_new_ == 1) {
    if (!needs_.decode_attention) return;
    Stopwatch timed(seconds_);
    decode_.attention.push_back(attention_rows(view, q, 0, 1, false));
    return;
  }
  Observation obs;
  {
    Stopwatch timed(seconds_);
    obs.layer = layer;
    obs.n_new = n_new_;
    obs.n_tokens = cache.tokens_seen() + n_new_;  // the cache advances after the last layer
    obs.window = std::min(needs_.window, n_new_);
    if (obs.window > 0)
      obs.window_attention = attention_rows(view, q, n_new_ - obs.window, obs.window, true);
    if (needs_.all_queries) obs.query_attention_sum = attention_rows(view, q, 0, n_new_, false);
    if (needs_.key_norms) obs.key_norms = key_norms(view);
  }
  strategy_.on_prefill_layer(cache, obs);
}

void KVObserver::end_call(KVCache& cache) {
  if (n_new_ > 1) strategy_.after_prefill(cache);
  else strategy_.on_decode_step(cache, decode_);
}

std::vector<std::vector<float>> KVObserver::attention_rows(const std::vector<KVHeadView>& view,
                                                           const float* q, int first_row,
                                                           int n_rows, bool average) {
  const int group = n_heads_ / int(view.size());
  int stride = 0;
  for (const KVHeadView& h : view) stride = std::max(stride, h.len);
  float* out = backend_.alloc(size_t(n_heads_) * stride);
  backend_.attention_scores(out, stride, q, view, n_new_, first_row, n_rows, n_heads_, head_dim_,
                            average);
  std::vector<std::vector<float>> rows(n_heads_);
  for (int h = 0; h < n_heads_; h++) {
    rows[h].resize(view[h / group].len);
    backend_.download(rows[h].data(), out + size_t(h) * stride, rows[h].size());
  }
  backend_.release(out);
  return rows;
}

std::vector<std::vector<float>> KVObserver::key_norms(const std::vector<KVHeadView>& view) {
  std::vector<std::vector<float>> norms;
  for (const KVHeadView& h : view) {
    float* out = backend_.alloc(std::max(h.len, 1));
    backend_.key_norms(out, h, head_dim_);
    norms.emplace_back(h.len);
    backend_.download(norms.back().data(), out, h.len);
    backend_.release(out);
  }
  return norms;
}

}  // namespace kvlm
