#include "memory_plan.h"

#include <cstdio>

#include "kv/kv_cache.h"
#include "model/llama.h"
#include "util/text_format.h"

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

MemoryPlan plan_memory(const ModelConfig& c, int ctx, const DeviceChoice& device) {
  const double kv_per_token =
      double(KVCache::bytes_per_token(c.n_layers, c.n_kv_heads, c.head_dim, device.kv));
  MemoryPlan plan;
  plan.items.push_back({"weights", double(Weights::planned_bytes(c, device.weights)),
                        std::string("matrices ") + dtype_name(device.weights) + ", norms f32"});
  plan.items.push_back({"KV cache", kv_per_token * ctx,
                        dtype_name(device.kv) + (", " + format_bytes(kv_per_token)) + " per token x " +
                            std::to_string(ctx) + " tokens (full; compression holds less)"});
  plan.items.push_back({"activations", double(Model::activation_bytes(c, ctx)),
                        "f32, a prompt of " + std::to_string(ctx) + " tokens in one call"});
  if (const size_t scratch = backend_scratch_bytes(device, c, ctx))
    plan.items.push_back({"scratch", double(scratch), "cuBLAS workspace, upload, rounding, observations"});
  return plan;
}

}  // namespace kvlm
