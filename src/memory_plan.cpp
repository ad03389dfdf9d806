#include "memory_plan.h"

#include <algorithm>
#include <cstdio>
#include <map>

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

namespace {

// The weights as the device will hold them: each matrix in planned_weight_type() of its
// file type, the norms float32; a random model's matrices are float32 on file.
MemoryPlan::Item weight_item(const Checkpoint& checkpoint, const DeviceChoice& device,
                             size_t& largest_quantized, bool& all_f32) {
  const ModelConfig& c = checkpoint.config();
  largest_quantized = 0;
  all_f32 = true;
  if (checkpoint.is_random()) {
    const WeightType t = planned_weight_type(device, WeightType::F32);
    all_f32 = t == WeightType::F32;
    return {"weights", double(Weights::planned_bytes(c, t)),
            std::string("matrices ") + weight_type_name(t) + ", norms f32"};
  }
  std::map<std::string, int> matrices_by_type;
  double bytes = (2.0 * c.n_layers + 1) * c.dim * sizeof(float);  // the norms
  for (const TensorView& t : checkpoint.tensors()) {
    if (t.shape.size() != 2) continue;
    const WeightType type = planned_weight_type(device, gguf::weight_type(t.type));
    const WeightTypeInfo info = weight_type_info(type);
    bytes += double(t.n_elements / info.block_elems) * info.block_bytes;
    matrices_by_type[weight_type_name(type)]++;
    all_f32 = all_f32 && type == WeightType::F32;
    if (is_quantized(type)) largest_quantized = std::max<size_t>(largest_quantized, t.n_elements);
  }
  std::string detail = "matrices";
  for (const auto& [type, n] : matrices_by_type) {
    char part[48];
    std::snprintf(part, sizeof part, " %d %s", n, type.c_str());
    detail += part;
  }
  return {"weights", bytes, detail + ", norms f32"};
}

}  // namespace

MemoryPlan plan_memory(const Checkpoint& checkpoint, int ctx, const DeviceChoice& device) {
  const ModelConfig& c = checkpoint.config();
  const double kv_per_token =
      double(KVCache::bytes_per_token(c.n_layers, c.n_kv_heads, c.head_dim, device.kv));
  MemoryPlan plan;
  size_t largest_quantized = 0;
  bool all_f32 = true;
  plan.items.push_back(weight_item(checkpoint, device, largest_quantized, all_f32));
  plan.items.push_back({"KV cache", kv_per_token * ctx,
                        dtype_name(device.kv) + (", " + format_bytes(kv_per_token)) + " per token x " +
                            std::to_string(ctx) + " tokens (full; compression holds less)"});
  plan.items.push_back({"activations", double(Model::activation_bytes(c, ctx)),
                        "f32, a prompt of " + std::to_string(ctx) + " tokens in one call"});
  if (const size_t scratch = backend_scratch_bytes(device, c, ctx, largest_quantized, all_f32))
    plan.items.push_back({"scratch", double(scratch),
                          device.device == Device::Cpu
                              ? "prefill's input rounded to bf16 pairs"
                              : "cuBLAS workspace, upload, rounding, observations"});
  return plan;
}

}  // namespace kvlm
