// The Llama forward pass: embedding, then per layer RMSNorm -> GQA attention with RoPE ->
// residual -> RMSNorm -> SwiGLU FFN -> residual, then a final norm and the output projection.
#pragma once
#include <memory>
#include <vector>

#include "backend.h"
#include "kv/kv_cache.h"
#include "kv/strategy.h"
#include "model/config.h"

namespace kvlm {

// Backend buffers of one block, PyTorch layout ([out][in]); Q/K rows in rotate-half order.
// Norm weights are float32 buffers; matrices are in the backend's weight dtype.
struct LayerWeights {
  float* attn_norm = nullptr;  // [dim]
  WeightMatrix wq;             // [n_heads * head_dim][dim]
  WeightMatrix wk;             // [n_kv_heads * head_dim][dim]
  WeightMatrix wv;             // [n_kv_heads * head_dim][dim]
  WeightMatrix wo;             // [dim][n_heads * head_dim]
  float* ffn_norm = nullptr;   // [dim]
  WeightMatrix w_gate;         // [ffn_dim][dim]
  WeightMatrix w_up;           // [ffn_dim][dim]
  WeightMatrix w_down;         // [dim][ffn_dim]
};

struct Weights {
  WeightMatrix token_embedding;  // [vocab][dim]
  std::vector<LayerWeights> layers;
  float* output_norm = nullptr;  // [dim]
  WeightMatrix output;           // [vocab][dim]; the same storage as token_embedding when tied

  // Returns every buffer held so far to the backend (a partly loaded set too).
  void release(Backend& backend);
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
  std::unique_ptr<KVCache> make_cache(int max_tokens);

  // Runs `tokens` (T >= 1) after everything already in `cache`: prefill when T > 1, one
  // decode step when T == 1. Returns the logits of the last token.
  std::vector<float> forward(const std::vector<int32_t>& tokens, KVCache& cache,
                             KVStrategy& strategy);

  // Seconds spent computing strategy observations (scores, norms) since construction.
  double scoring_seconds() const { return scoring_seconds_; }

 private:
  struct Scratch;
  Scratch& scratch(int T);
  // Per query head rows of attention_scores over layer's cache, copied to the host.
  std::vector<std::vector<float>> attention_scores(const KVCache& cache, int layer,
                                                   const float* q, int T, int first_row,
                                                   int n_rows, bool average);
  // Dynamic NTK RoPE: frequencies for a call whose positions end at seq_len - 1.
  void update_rope_frequencies(int seq_len);
  Observation observe_prefill(const KVCache& cache, int layer, const float* q, int T,
                              const Needs& needs);

  Backend& backend_;
  ModelConfig config_;
  Weights w_;
  float* inv_freq_ = nullptr;  // backend copy of rope_inv_frequencies(config_, rope_seq_len_)
  int rope_seq_len_ = -1;      // what inv_freq_ was computed for (Dynamic scaling only)
  std::unique_ptr<Scratch> scratch_;
  double scoring_seconds_ = 0;
};

}  // namespace kvlm
