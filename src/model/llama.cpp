#include "model/llama.h"

#include <algorithm>

#include "util/interrupt.h"

namespace kvlm {

// Activations for T tokens, grown when a longer call comes in. layout() is the one list of
// buffers: scratch() allocates it and activation_bytes() adds it up.
struct Model::Scratch {
  Backend& b;
  int capacity = 0;
  float *x = nullptr, *xn = nullptr, *qkv = nullptr, *q = nullptr, *att = nullptr,
        *gate_up = nullptr, *ffn = nullptr, *logits = nullptr;

  struct Buffer {
    float* Scratch::*member;
    size_t per_token, fixed;  // floats: per_token * T + fixed
  };
  static std::vector<Buffer> layout(const ModelConfig& c) {
    return {{&Scratch::x, size_t(c.dim), 0},
            {&Scratch::xn, size_t(c.dim), 0},
            {&Scratch::qkv, size_t(c.q_dim() + 2 * c.kv_dim()), 0},
            {&Scratch::q, size_t(c.q_dim()), 0},
            {&Scratch::att, size_t(c.q_dim()), 0},
            {&Scratch::gate_up, 2 * size_t(c.ffn_dim), 0},
            {&Scratch::ffn, size_t(c.ffn_dim), 0},
            {&Scratch::logits, 0, size_t(c.vocab_size)}};  // the last token's only
  }

  explicit Scratch(Backend& backend) : b(backend) {}
  ~Scratch() {
    for (float* p : {x, xn, qkv, q, att, gate_up, ffn, logits})
      if (p) b.release(p);
  }
};

size_t Model::activation_bytes(const ModelConfig& c, int T) {
  size_t floats = 0;
  for (const Scratch::Buffer& buf : Scratch::layout(c)) floats += buf.per_token * T + buf.fixed;
  return floats * sizeof(float);
}

Model::Scratch& Model::scratch(int T) {
  if (!scratch_ || scratch_->capacity < T) {
    scratch_.reset();  // free the old buffers before taking bigger ones
    auto fresh = std::make_unique<Scratch>(backend_);
    fresh->capacity = T;
    try {
      for (const Scratch::Buffer& buf : Scratch::layout(config_))
        (*fresh).*buf.member = backend_.alloc(buf.per_token * T + buf.fixed);
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
    for (const WeightMatrix* m : {&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down})
      b.release_matrix(*m);
  }
  layers.clear();
  if (!tied()) b.release_matrix(output);
  b.release_matrix(token_embedding);
  if (output_norm) b.release(output_norm);
  *this = Weights{};
}

size_t Weights::bytes() const {
  size_t total = token_embedding.bytes() + (tied() ? 0 : output.bytes());
  for (const LayerWeights& l : layers)
    for (const WeightMatrix* m : {&l.wqkv, &l.wo, &l.w_gate_up, &l.w_down})
      total += m->bytes();
  if (!layers.empty()) total += (2 * layers.size() + 1) * size_t(token_embedding.cols) * sizeof(float);
  return total;
}

size_t Model::weight_bytes_read_per_token() const {
  if (w_.tied()) return w_.bytes();  // the table is read whole, as the output
  const WeightMatrix& e = w_.token_embedding;
  return w_.bytes() - e.bytes() + e.bytes() / std::max(e.rows, 1);
}

size_t Weights::planned_bytes(const ModelConfig& c, WeightType matrices) {
  const size_t per_layer = 2 * size_t(c.dim) * c.q_dim() + 2 * size_t(c.dim) * c.kv_dim() +
                           3 * size_t(c.dim) * c.ffn_dim;
  const size_t embeddings = size_t(c.vocab_size) * c.dim * (c.tied_embeddings ? 1 : 2);
  const size_t norms = (2 * size_t(c.n_layers) + 1) * c.dim;
  const WeightTypeInfo t = weight_type_info(matrices);
  return (c.n_layers * per_layer + embeddings) / t.block_elems * t.block_bytes +
         norms * sizeof(float);
}

Model::~Model() {
  scratch_.reset();
  w_.release(backend_);
  backend_.release(inv_freq_);
}

std::unique_ptr<KVCache> Model::make_cache(int max_tokens, DType kv_dtype) {
  return std::make_unique<KVCache>(
      backend_, config_.n_layers, config_.n_kv_heads, config_.head_dim, max_tokens, kv_dtype,
      KeyRotation{inv_freq_, config_.rope_dim, config_.rope_adjacent_pairs});
}

std::vector<float> Model::forward(const std::vector<int32_t>& tokens, KVCache& cache,
                                  KVObserver* kv) {
  const ModelConfig& c = config_;
  const int T = int(tokens.size());
  Backend& b = backend_;
  Scratch& s = scratch(T);
  const int first_position = cache.tokens_seen();  // in the sequence, whatever the cache keeps
  const int qkv_dim = c.q_dim() + 2 * c.kv_dim();
  if (c.rope_scaling == RopeScaling::Dynamic) update_rope_frequencies(cache.next_position() + T);
  if (kv) kv->begin_call(cache, T);

  // s.x is the residual stream; s.xn its normed copy, which every sub-block reads and
  // whose output the next add_rmsnorm adds back into s.x.
  b.embedding(s.x, w_.token_embedding, tokens.data(), T);
  b.rmsnorm(s.xn, s.x, w_.layers[0].attn_norm, T, c.dim, c.rms_eps);
  for (int l = 0; l < c.n_layers; l++) {
    throw_if_interrupted();  // Ctrl-C stops a long prefill here; the caller undoes the cache
    const LayerWeights& lw = w_.layers[l];
    // Attention: the new tokens join the cache first, then attend to it (causally).
    b.matmul(s.qkv, s.xn, lw.wqkv, T);
    // RoPE turns by the sequence position, or the slot with positions in the cache.
    b.rope_qk(s.q, s.qkv, cache.next_position(l), inv_freq_, T, c.n_heads, c.n_kv_heads,
              c.head_dim, c.rope_dim, c.rope_adjacent_pairs);
    cache.append(l, s.qkv + c.q_dim(), s.qkv + c.q_dim() + c.kv_dim(), qkv_dim, first_position, T);
    const std::vector<KVHeadView> view = cache.view(l);
    b.attention(s.att, s.q, view, T, c.n_heads, c.head_dim);
    if (kv) kv->after_attention(cache, l, s.q, view);  // may evict from this layer
    b.matmul(s.xn, s.att, lw.wo, T);
    b.add_rmsnorm(s.xn, s.x, s.xn, lw.ffn_norm, T, c.dim, c.rms_eps);  // residual, FFN norm

    // Feed-forward: down(silu(gate(x)) * up(x)).
    b.matmul(s.gate_up, s.xn, lw.w_gate_up, T);
    b.swiglu(s.ffn, s.gate_up, T, c.ffn_dim);
    b.matmul(s.xn, s.ffn, lw.w_down, T);
    if (l + 1 < c.n_layers)  // residual, and the next layer's attention norm
      b.add_rmsnorm(s.xn, s.x, s.xn, w_.layers[l + 1].attn_norm, T, c.dim, c.rms_eps);
  }
  cache.advance(T);
  if (kv) kv->end_call(cache);

  // Only the last token's logits are needed to choose the next token, so only its row
  // takes the last residual add and the final norm.
  const size_t last = size_t(T - 1) * c.dim;
  b.add_rmsnorm(s.xn, s.x + last, s.xn + last, w_.output_norm, 1, c.dim, c.rms_eps);
  b.matmul(s.logits, s.xn, w_.output, 1);
  std::vector<float> logits(c.vocab_size);
  b.download(logits.data(), s.logits, logits.size());
  return logits;
}

}  // namespace kvlm
