#include "model/llama.h"

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
    scratch_ = std::make_unique<Scratch>(backend_);
    Scratch& s = *scratch_;
    s.capacity = T;
    s.x = backend_.alloc(size_t(T) * c.dim);
    s.xn = backend_.alloc(size_t(T) * c.dim);
    s.q = backend_.alloc(size_t(T) * c.q_dim());
    s.att = backend_.alloc(size_t(T) * c.q_dim());
    s.k = backend_.alloc(size_t(T) * c.kv_dim());
    s.v = backend_.alloc(size_t(T) * c.kv_dim());
    s.gate = backend_.alloc(size_t(T) * c.ffn_dim);
    s.up = backend_.alloc(size_t(T) * c.ffn_dim);
    s.logits = backend_.alloc(size_t(c.vocab_size));
  }
  return *scratch_;
}

Model::Model(Backend& backend, const ModelConfig& config, Weights weights)
    : backend_(backend), config_(config), w_(std::move(weights)) {
  std::vector<float> inv_freq = rope_inv_frequencies(config_);
  inv_freq_ = backend_.alloc(inv_freq.size());
  backend_.upload(inv_freq_, inv_freq.data(), inv_freq.size());
}

Model::~Model() {
  scratch_.reset();
  for (const LayerWeights& l : w_.layers)
    for (float* p : {l.attn_norm, l.wq, l.wk, l.wv, l.wo, l.ffn_norm, l.w_gate, l.w_up, l.w_down})
      backend_.release(p);
  if (w_.output != w_.token_embedding) backend_.release(w_.output);
  backend_.release(w_.token_embedding);
  backend_.release(w_.output_norm);
  backend_.release(inv_freq_);
}

std::unique_ptr<KVCache> Model::make_cache(int max_tokens) {
  return std::make_unique<KVCache>(backend_, config_.n_layers, config_.n_kv_heads,
                                   config_.head_dim, max_tokens);
}

std::vector<float> Model::forward(const std::vector<int32_t>& tokens, KVCache& cache,
                                  KVStrategy& strategy) {
  const ModelConfig& c = config_;
  const int T = int(tokens.size());
  const bool prefill = T > 1;
  Backend& b = backend_;
  Scratch& s = scratch(T);
  std::vector<int32_t> positions(T);
  std::iota(positions.begin(), positions.end(), cache.tokens_seen());

  b.embedding(s.x, w_.token_embedding, tokens.data(), T, c.dim);
  for (int l = 0; l < c.n_layers; l++) {
    const LayerWeights& lw = w_.layers[l];
    // Attention: the new tokens join the cache first, then attend to it (causally).
    b.rmsnorm(s.xn, s.x, lw.attn_norm, T, c.dim, c.rms_eps);
    b.matmul(s.q, s.xn, lw.wq, T, c.dim, c.q_dim());
    b.matmul(s.k, s.xn, lw.wk, T, c.dim, c.kv_dim());
    b.matmul(s.v, s.xn, lw.wv, T, c.dim, c.kv_dim());
    b.rope(s.q, positions.data(), inv_freq_, T, c.n_heads, c.head_dim, c.rope_dim);
    b.rope(s.k, positions.data(), inv_freq_, T, c.n_kv_heads, c.head_dim, c.rope_dim);
    cache.append(l, s.k, s.v, positions.data(), T);
    b.attention(s.att, s.q, cache.view(l), T, c.n_heads, c.head_dim);
    b.matmul(s.xn, s.att, lw.wo, T, c.q_dim(), c.dim);
    b.add(s.x, s.xn, size_t(T) * c.dim);
    if (prefill) strategy.on_prefill_layer(cache, l, Observation{T, 0, {}, {}});

    // Feed-forward: down(silu(gate(x)) * up(x)).
    b.rmsnorm(s.xn, s.x, lw.ffn_norm, T, c.dim, c.rms_eps);
    b.matmul(s.gate, s.xn, lw.w_gate, T, c.dim, c.ffn_dim);
    b.matmul(s.up, s.xn, lw.w_up, T, c.dim, c.ffn_dim);
    b.swiglu(s.gate, s.gate, s.up, size_t(T) * c.ffn_dim);
    b.matmul(s.xn, s.gate, lw.w_down, T, c.ffn_dim, c.dim);
    b.add(s.x, s.xn, size_t(T) * c.dim);
  }
  cache.advance(T);
  if (prefill) strategy.after_prefill(cache);
  else strategy.on_decode_step(cache, DecodeObservation{});

  // Only the last token's logits are needed to choose the next token.
  b.rmsnorm(s.xn, s.x + size_t(T - 1) * c.dim, w_.output_norm, 1, c.dim, c.rms_eps);
  b.matmul(s.logits, s.xn, w_.output, 1, c.dim, c.vocab_size);
  std::vector<float> logits(c.vocab_size);
  b.download(logits.data(), s.logits, logits.size());
  return logits;
}

}  // namespace kvlm
