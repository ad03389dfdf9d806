#include "model/llama.h"

#include <algorithm>
#include <chrono>
#include <numeric>

namespace kvlm {

// Activations for T tokens, grown when a longer call comes in.
struct Model::Scratch {
  Backend& b;
  int capacity = 0;
  float *x = nullptr, *xn = nullptr, *q = nullptr, *k = nullptr, *v = nullptr, *att = nullptr,
        *gate = nullptr, *up = nullptr, *logits = nullptr;
  explicit Scratch(Backend& backend) : b(backend) {}
  ~Scratch() {
    for (float* p : {x, xn, q, k, v, att, gate, up, logits})
      if (p) b.release(p);
  }
};

Model::Scratch& Model::scratch(int T) {
  if (!scratch_ || scratch_->capacity < T) {
    const ModelConfig& c = config_;
    scratch_.reset();  // free the old buffers before taking bigger ones
    auto fresh = std::make_unique<Scratch>(backend_);
    Scratch& s = *fresh;
    s.capacity = T;
    try {
      s.x = backend_.alloc(size_t(T) * c.dim);
      s.xn = backend_.alloc(size_t(T) * c.dim);
      s.q = backend_.alloc(size_t(T) * c.q_dim());
      s.att = backend_.alloc(size_t(T) * c.q_dim());
      s.k = backend_.alloc(size_t(T) * c.kv_dim());
      s.v = backend_.alloc(size_t(T) * c.kv_dim());
      s.gate = backend_.alloc(size_t(T) * c.ffn_dim);
      s.up = backend_.alloc(size_t(T) * c.ffn_dim);
      s.logits = backend_.alloc(size_t(c.vocab_size));
    } catch (const OutOfMemory& e) {
      throw OutOfMemory("the activations of " + std::to_string(T) +
                        " tokens in one call do not fit: " + e.what());
    }
    scratch_ = std::move(fresh);
  }
  return *scratch_;
}

Model::Model(Backend& backend, const ModelConfig& config, Weights weights)
    : backend_(backend), config_(config), w_(std::move(weights)) {
  inv_freq_ = backend_.alloc(config_.rope_dim / 2);
  update_rope_frequencies(0);
}

void Model::update_rope_frequencies(int seq_len) {
  // Up to the original context every length gives the same frequencies.
  seq_len = std::max(seq_len, config_.rope_original_context);
  if (seq_len == rope_seq_len_) return;
  std::vector<float> inv_freq = rope_inv_frequencies(config_, seq_len);
  backend_.upload(inv_freq_, inv_freq.data(), inv_freq.size());
  rope_seq_len_ = seq_len;
}

void Weights::release(Backend& b) {
  for (LayerWeights& l : layers) {
    for (float* p : {l.attn_norm, l.ffn_norm})
      if (p) b.release(p);
    for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
      if (m->data) b.release_matrix(*m);
  }
  layers.clear();
  if (output.data && output.data != token_embedding.data) b.release_matrix(output);
  if (token_embedding.data) b.release_matrix(token_embedding);
  if (output_norm) b.release(output_norm);
  *this = Weights{};
}

Model::~Model() {
  scratch_.reset();
  w_.release(backend_);
  backend_.release(inv_freq_);
}

std::unique_ptr<KVCache> Model::make_cache(int max_tokens) {
  return std::make_unique<KVCache>(backend_, config_.n_layers, config_.n_kv_heads,
                                   config_.head_dim, max_tokens);
}

std::vector<std::vector<float>> Model::attention_scores(const KVCache& cache, int layer,
                                                        const float* q, int T, int first_row,
                                                        int n_rows, bool average) {
  const ModelConfig& c = config_;
  std::vector<KVHeadView> view = cache.view(layer);
  int stride = 0;
  for (const KVHeadView& h : view) stride = std::max(stride, h.len);
  float* out = backend_.alloc(size_t(c.n_heads) * stride);
  backend_.attention_scores(out, stride, q, view, T, first_row, n_rows, c.n_heads, c.head_dim,
                            average);
  std::vector<std::vector<float>> rows(c.n_heads);
  for (int h = 0; h < c.n_heads; h++) {
    rows[h].resize(view[h / c.group()].len);
    backend_.download(rows[h].data(), out + size_t(h) * stride, rows[h].size());
  }
  backend_.release(out);
  return rows;
}

Observation Model::observe_prefill(const KVCache& cache, int layer, const float* q, int T,
                                   const Needs& needs) {
  auto start = std::chrono::steady_clock::now();
  Observation obs;
  obs.layer = layer;
  obs.n_new = T;
  obs.n_tokens = cache.tokens_seen() + T;  // the cache advances after the last layer
  obs.window = std::min(needs.window, T);
  if (obs.window > 0)
    obs.window_attention = attention_scores(cache, layer, q, T, T - obs.window, obs.window, true);
  if (needs.all_queries) obs.query_attention_sum = attention_scores(cache, layer, q, T, 0, T, false);
  if (needs.key_norms) {
    std::vector<KVHeadView> view = cache.view(layer);
    for (const KVHeadView& h : view) {
      float* norms = backend_.alloc(std::max(h.len, 1));
      backend_.key_norms(norms, h.keys, h.len, config_.head_dim);
      obs.key_norms.emplace_back(h.len);
      backend_.download(obs.key_norms.back().data(), norms, h.len);
      backend_.release(norms);
    }
  }
  scoring_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return obs;
}

std::vector<float> Model::forward(const std::vector<int32_t>& tokens, KVCache& cache,
                                  KVStrategy& strategy) {
  const ModelConfig& c = config_;
  const int T = int(tokens.size());
  const bool prefill = T > 1;
  const Needs needs = strategy.needs();
  DecodeObservation decode_obs;
  Backend& b = backend_;
  Scratch& s = scratch(T);
  std::vector<int32_t> positions(T);
  std::iota(positions.begin(), positions.end(), cache.tokens_seen());

  if (c.rope_scaling == RopeScaling::Dynamic) update_rope_frequencies(positions.back() + 1);

  b.embedding(s.x, w_.token_embedding, tokens.data(), T);
  for (int l = 0; l < c.n_layers; l++) {
    const LayerWeights& lw = w_.layers[l];
    // Attention: the new tokens join the cache first, then attend to it (causally).
    b.rmsnorm(s.xn, s.x, lw.attn_norm, T, c.dim, c.rms_eps);
    b.matmul(s.q, s.xn, lw.wq, T);
    b.matmul(s.k, s.xn, lw.wk, T);
    b.matmul(s.v, s.xn, lw.wv, T);
    b.rope(s.q, positions.data(), inv_freq_, T, c.n_heads, c.head_dim, c.rope_dim);
    b.rope(s.k, positions.data(), inv_freq_, T, c.n_kv_heads, c.head_dim, c.rope_dim);
    cache.append(l, s.k, s.v, positions.data(), T);
    b.attention(s.att, s.q, cache.view(l), T, c.n_heads, c.head_dim);
    if (prefill) {
      strategy.on_prefill_layer(cache, observe_prefill(cache, l, s.q, T, needs));
    } else if (needs.decode_attention) {
      auto start = std::chrono::steady_clock::now();
      decode_obs.attention.push_back(attention_scores(cache, l, s.q, 1, 0, 1, false));
      scoring_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    }
    b.matmul(s.xn, s.att, lw.wo, T);
    b.add(s.x, s.xn, size_t(T) * c.dim);

    // Feed-forward: down(silu(gate(x)) * up(x)).
    b.rmsnorm(s.xn, s.x, lw.ffn_norm, T, c.dim, c.rms_eps);
    b.matmul(s.gate, s.xn, lw.w_gate, T);
    b.matmul(s.up, s.xn, lw.w_up, T);
    b.swiglu(s.gate, s.gate, s.up, size_t(T) * c.ffn_dim);
    b.matmul(s.xn, s.gate, lw.w_down, T);
    b.add(s.x, s.xn, size_t(T) * c.dim);
  }
  cache.advance(T);
  if (prefill) strategy.after_prefill(cache);
  else strategy.on_decode_step(cache, decode_obs);

  // Only the last token's logits are needed to choose the next token.
  b.rmsnorm(s.xn, s.x + size_t(T - 1) * c.dim, w_.output_norm, 1, c.dim, c.rms_eps);
  b.matmul(s.logits, s.xn, w_.output, 1);
  std::vector<float> logits(c.vocab_size);
  b.download(logits.data(), s.logits, logits.size());
  return logits;
}

}  // namespace kvlm
