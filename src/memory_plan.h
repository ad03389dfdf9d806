// How much memory a model needs on a device at a given context: what `kvlm info` prints
// and what a session checks against the GPU's free memory before loading.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "backend.h"
#include "model/config.h"

namespace kvlm {

// Fixed device buffers of the CUDA backend, here so that the plan and the backend agree.
constexpr size_t kCudaCublasWorkspace = size_t(32) << 20;  // NVIDIA's suggestion for Hopper
constexpr size_t kCudaUploadChunk = size_t(64) << 20;      // float32 bytes per upload step

struct MemoryPlan {
  struct Item {
    std::string what;
    double bytes;
    std::string detail;
  };
  std::vector<Item> items;
  double total() const;
  std::string text() const;  // one aligned line per item, then the total
};

// Weights in weight_dtype (norms float32), a float32 KV cache of ctx tokens, the
// activations of a ctx-token prompt run in one call (the largest a session makes), and
// on cuda the backend's scratch.
MemoryPlan plan_memory(const ModelConfig& c, int ctx, const std::string& device,
                       DType weight_dtype);

}  // namespace kvlm
