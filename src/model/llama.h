// The Llama forward pass: embedding, then per layer RMSNorm -> GQA attention with RoPE ->
// residual -> RMSNorm -> SwiGLU FFN -> residual, then a final norm and the output projection.
#pragma once
#include <memory>
#include <vector>

#include "backend.h"
#include "kv/kv_cache.h"
#include "kv/observer.h"
#include "model/config.h"

namespace kvlm {

// Backend buffers of one block, PyTorch layout ([out][in]); Q/K rows in rotate-half order.
// Norm weights are float32 buffers; matrices keep their storage types (backend.h). Projections
// that read the same input are stored as one matrix (their rows stacked), so each is one
// matmul: the loaders concatenate the checkpoint's wq, wk, wv and w_gate, w_up.
struct LayerWeights {
  float* attn_norm = nullptr;  // [dim]
  WeightMatrix wqkv;           // [q_dim + 2 * kv_dim][dim]: the rows of wq, then wk, then wv
  WeightMatrix wo;             // [dim][q_dim]
  float* ffn_norm = nullptr;   // [dim]
  WeightMatrix w_gate_up;      // [2 * ffn_dim][dim]: the rows of w_gate, then w_up
  WeightMatrix w_down;         // [dim][ffn_dim]
};

struct Weights {
  WeightMatrix token_embedding;  // [vocab][dim]
  std::vector<LayerWeights> layers;
  float* output_norm = nullptr;  // [dim]
  WeightMatrix output;           // [vocab][dim]; the same storage as token_embedding when tied
  // What host memory the matrices may point into (a mapped model file), kept alive with them.
  std::shared_ptr<const void> host_storage;

  // The output projection is the token embedding's storage.
  bool tied() const {
    return !output.empty() && !token_embedding.empty() &&
           output.parts[0].data == token_embedding.parts[0].data;
  }
  // Returns every buffer held so far to the backend (a partly loaded set too).
  void release(Backend& backend);
  // Bytes of the weights: each matrix in its own types (tied storage once), norms f32.
  size_t bytes() const;
  // What bytes() will be for `c` with every matrix stored as `matrices` (plans before loading).
  static size_t planned_bytes(const ModelConfig& c, WeightType matrices);
};

class Model {
 public:
  // Takes ownership of the backend buffers in `weights`.
  Model(Backend& backend, const ModelConfig& config, Weights weights);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  Backend& backend() { return backend_; }
  // A cache for this model whose rows are stored in kv_dtype.
  std::unique_ptr<KVCache> make_cache(int max_tokens, DType kv_dtype = DType::F32);

  // Runs `tokens` (T >= 1) after everything already in `cache` and returns the logits of
  // the last token. `kv`, when given, sees every layer right after its attention (the KV
  // strategy's observations and evictions); without it the cache keeps every token.
  // Ctrl-C (util/interrupt.h) throws Interrupted between layers, leaving `cache` with some
  // layers appended and others not: only KVCache::rollback() or clear() make it whole.
  std::vector<float> forward(const std::vector<int32_t>& tokens, KVCache& cache,
                             KVObserver* kv = nullptr);

  const Weights& weights() const { return w_; }
  size_t weight_bytes() const { return w_.bytes(); }
  // What one decode step reads of them: every matrix once, but of an untied token
  // embedding only the token's row.
  size_t weight_bytes_read_per_token() const;
  // Activation buffers of a call of T tokens (the scratch forward() grows to).
  static size_t activation_bytes(const ModelConfig& c, int T);

 private:
  struct Scratch;
  Scratch& scratch(int T);
  // Dynamic NTK RoPE: frequencies for a call whose positions end at seq_len - 1.
  void update_rope_frequencies(int seq_len);

  Backend& backend_;
  ModelConfig config_;
  Weights w_;
  float* inv_freq_ = nullptr;  // backend copy of rope_inv_frequencies(config_, rope_seq_len_)
  int rope_seq_len_ = -1;      // what inv_freq_ was computed for (Dynamic scaling only)
  std::unique_ptr<Scratch> scratch_;
};

}  // namespace kvlm
