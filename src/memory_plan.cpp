#include "memory_plan.h"

#include <algorithm>
#include <cstdio>

#include "session.h"

namespace kvlm {

double MemoryPlan::total() const {
  double sum = 0;
  for (const Item& i : items) sum += i.bytes;
  return sum;
}

std::string MemoryPlan::text() const {
  std::string out;
  char line[256];
  for (const Item& i : items) {
    std::snprintf(line, sizeof line, "  %-12s %10s  %s\n", i.what.c_str(),
                  format_bytes(i.bytes).c_str(), i.detail.c_str());
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-12s %10s\n", "total", format_bytes(total()).c_str());
  return out + line;
}

MemoryPlan plan_memory(const ModelConfig& c, int ctx, const std::string& device,
                       DType weight_dtype) {
  const double f32 = sizeof(float), w = double(dtype_bytes(weight_dtype));
  const double layer_matrices = 2.0 * c.dim * c.q_dim() + 2.0 * c.dim * c.kv_dim() +
                                3.0 * c.dim * c.ffn_dim;
  const double embeddings = double(c.vocab_size) * c.dim * (c.tied_embeddings ? 1 : 2);
  const double norms = (2.0 * c.n_layers + 1) * c.dim;
  const double kv_per_token = 2.0 * c.n_layers * c.kv_dim() * f32;
  const double T = ctx;
  const double activations =
      T * (2.0 * c.dim + 2.0 * c.q_dim() + 2.0 * c.kv_dim() + 2.0 * c.ffn_dim) * f32 +
      double(c.vocab_size) * f32;

  MemoryPlan plan;
  plan.items.push_back({"weights", (c.n_layers * layer_matrices + embeddings) * w + norms * f32,
                        std::string("matrices ") + dtype_name(weight_dtype) + ", norms f32"});
  plan.items.push_back({"KV cache", kv_per_token * ctx,
                        "f32, " + format_bytes(kv_per_token) + " per token x " +
                            std::to_string(ctx) + " tokens (full; compression holds less)"});
  plan.items.push_back({"activations", activations,
                        "f32, a prompt of " + std::to_string(ctx) + " tokens in one call"});
  if (device == "cuda") {
    const double widest_input = std::max({c.dim, c.q_dim(), c.ffn_dim});
    const double scratch = double(kCudaCublasWorkspace) + double(kCudaUploadChunk) +
                           T * widest_input * w                    // rounded matmul inputs
                           + T * c.head_dim * f32                  // compaction of one head
                           + double(c.n_heads) * T * f32 * 2;      // observations, partials
    plan.items.push_back({"scratch", scratch, "cuBLAS workspace, upload, rounding, observations"});
  }
  return plan;
}

}  // namespace kvlm
