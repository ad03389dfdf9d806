// ModelConfig: everything the forward pass needs to know about a Llama-family model.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvlm {

// How positions are turned into rotation frequencies.
enum class RopeScaling { None, Linear, Dynamic, Llama3 };

// Sampling a checkpoint recommends: a Hugging Face generation_config.json's temperature,
// top_p and top_k (with do_sample false: greedy), or a GGUF file's general.sampling.temp,
// .top_k, .top_p and .min_p. They replace kvlm's defaults for the flags a user does not
// give (sample.h: with_model_hints).
struct SamplingHints {
  std::optional<float> temperature, top_p, min_p;
  std::optional<int> top_k;
  std::string source;  // where they were read; empty when the checkpoint has none
};

struct ModelConfig {
  std::string name;            // human-readable, from metadata
  int n_layers = 0;
  int dim = 0;                 // hidden size
  int n_heads = 0;             // query heads
  int n_kv_heads = 0;          // key/value heads (GQA when < n_heads)
  int head_dim = 0;            // usually dim / n_heads
  int ffn_dim = 0;             // SwiGLU intermediate size
  int vocab_size = 0;
  int context_length = 0;      // trained context
  float rms_eps = 1e-5f;
  bool tied_embeddings = true; // output projection reuses the token embedding

  float rope_theta = 10000.0f;
  int rope_dim = 0;            // rotated dimensions per head (== head_dim for Llama)
  bool rope_adjacent_pairs = false;  // pairs (2i, 2i+1), as GGUF stores Q/K; else (i, i+d/2)
  RopeScaling rope_scaling = RopeScaling::None;
  float rope_factor = 1.0f;             // Linear, Dynamic and Llama3
  float rope_low_freq_factor = 1.0f;    // Llama3
  float rope_high_freq_factor = 4.0f;   // Llama3
  int rope_original_context = 8192;     // Llama3; Dynamic: max_position_embeddings
  std::vector<float> rope_freq_factors; // per-frequency divisors (GGUF rope_freqs.weight), optional

  // Declared by a Hugging Face config.json / generation_config.json (for `kvlm info`; the
  // tokenizer reads its own). Empty for GGUF, whose tokenizer metadata carries them.
  int32_t bos_id = -1;
  std::vector<int32_t> eos_ids;
  SamplingHints sampling;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  int group() const { return n_heads / n_kv_heads; }
};

// Inverse rotation frequency of each of the rope_dim/2 pairs, scaling applied, for a
// forward call whose largest position is seq_len - 1. Only Dynamic (NTK) scaling depends
// on seq_len: past the original context it raises theta so the slowest pair still spans
// seq_len, recomputed per call as transformers does.
std::vector<float> rope_inv_frequencies(const ModelConfig& c, int seq_len = 0);

const char* rope_scaling_name(RopeScaling s);  // "none", "linear", "dynamic", "llama3"

// Throws std::runtime_error naming the first field that is absent or absurd.
void validate(const ModelConfig& c, const std::string& source);

}  // namespace kvlm
