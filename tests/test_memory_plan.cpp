// The memory plan adds up what each owner reports, so the plan made before loading must
// agree with what the loaded model, its activations and the cache really hold.
#include <gtest/gtest.h>

#include <numeric>

#include "device.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/strips.h"
#include "memory_plan.h"
#include "model/load.h"

namespace kvlm {
namespace {

TEST(MemoryPlan, PlannedWeightsAreTheLoadedWeights) {
  CpuBackend backend(2);
  ModelFile file("random:smollm2-135m");
  auto model = file.load(backend);
  const ModelConfig& c = file.config();
  EXPECT_EQ(Weights::planned_bytes(c, WeightType::F32), model->weight_bytes());
  // 134,515,008 parameters (the model card), all float32 on the cpu.
  EXPECT_EQ(model->weight_bytes(), size_t(134515008) * 4);
  // A tied embedding is read as the output matrix: every byte once per token.
  EXPECT_EQ(model->weight_bytes_read_per_token(), model->weight_bytes());
  EXPECT_EQ(Weights::planned_bytes(c, WeightType::F16),
            size_t(134515008 - (2 * 30 + 1) * 576) * 2 + size_t(2 * 30 + 1) * 576 * 4);
  // Q4_0: 18 bytes per 32 weights.
  EXPECT_EQ(Weights::planned_bytes(c, WeightType::Q4_0),
            size_t(134515008 - (2 * 30 + 1) * 576) / 32 * 18 + size_t(2 * 30 + 1) * 576 * 4);
}

// A GGUF file's matrices are planned (and held) in the types the file stores them in.
TEST(MemoryPlan, PlannedWeightsOfAFileAreItsTensorsBytes) {
  CpuBackend backend(1);
  ModelFile file("tests/data/hf/llama3-gqa.gguf");
  auto model = file.load(backend);
  const MemoryPlan plan = plan_memory(file, 64, resolve_device("cpu", ""));
  EXPECT_EQ(plan.items[0].bytes, double(model->weight_bytes())) << plan.items[0].detail;
  // Nothing was copied: the matrices are the file's bytes where the mapping has them.
  const Weights& w = model->weights();
  EXPECT_EQ(w.token_embedding.parts.at(0).data, file.find_tensor("token_embd.weight")->data);
  ASSERT_EQ(w.layers.at(1).wqkv.parts.size(), 3u);
  EXPECT_EQ(w.layers[1].wqkv.parts[1].data, file.find_tensor("blk.1.attn_k.weight")->data);
  EXPECT_EQ(w.layers[1].w_down.parts.at(0).data, file.find_tensor("blk.1.ffn_down.weight")->data);
  for (const WeightMatrix* m : {&w.layers[0].wqkv, &w.layers[0].wo, &w.layers[0].w_gate_up})
    EXPECT_EQ(m->storage, nullptr) << "the cpu allocated a copy";
  const MemoryPlan f32 = plan_memory(file, 64, resolve_device("cpu", "f32"));
  CpuBackend widening(1, WeightType::F32);
  EXPECT_EQ(f32.items[0].bytes, double(file.load(widening)->weight_bytes())) << f32.items[0].detail;
}

// An untied embedding table is read one row per token; the output matrix whole.
TEST(MemoryPlan, UntiedEmbeddingsAreReadOneRowPerToken) {
  CpuBackend backend(1);
  ModelFile file("tests/data/hf/untied-linear");
  auto model = file.load(backend);
  const ModelConfig& c = file.config();
  ASSERT_FALSE(c.tied_embeddings);
  EXPECT_EQ(model->weight_bytes(), Weights::planned_bytes(c, WeightType::F32));
  const size_t table = size_t(c.vocab_size) * c.dim * sizeof(float);
  EXPECT_EQ(model->weight_bytes_read_per_token(),
            model->weight_bytes() - table + size_t(c.dim) * sizeof(float));
}

// In every KV dtype: 2 (keys, values) x 3 layers x 2 heads x 8 dims x 4 or 2 bytes.
TEST(MemoryPlan, KVBytesPerTokenIsWhatAFullCacheHolds) {
  CpuBackend backend(1);
  const int layers = 3, heads = 2, head_dim = 8, T = 5;
  for (auto [dtype, per_token] : {std::pair{DType::F32, 384}, {DType::F16, 192}, {DType::BF16, 192}}) {
    KVCache cache(backend, layers, heads, head_dim, 16, dtype);
    std::vector<float> rows(size_t(T) * heads * head_dim, 1.0f);
    for (int l = 0; l < layers; l++) cache.append(l, rows.data(), rows.data(), heads * head_dim, 0, T);
    cache.advance(T);
    EXPECT_EQ(KVCache::bytes_per_token(layers, heads, head_dim, dtype), size_t(per_token));
    EXPECT_EQ(cache.stats().bytes_held, T * size_t(per_token)) << dtype_name(dtype);
    EXPECT_EQ(cache.stats().bytes_full, cache.stats().bytes_held);
  }
}

TEST(MemoryPlan, LinesAreTheOwnersNumbersAndAddUp) {
  const ModelFile file("random:smollm2-135m");
  const ModelConfig& c = file.config();
  const int ctx = 1000;
  const MemoryPlan cpu = plan_memory(file, ctx, resolve_device("cpu", ""));
  ASSERT_EQ(cpu.items.size(), 3u) << "f32 weights: no bf16 copy of prefill's input";
  EXPECT_EQ(cpu.items[0].bytes, double(Weights::planned_bytes(c, WeightType::F32)));
  EXPECT_EQ(cpu.items[1].bytes,
            double(ctx * KVCache::bytes_per_token(c.n_layers, c.n_kv_heads, c.head_dim, DType::F16)));
  const MemoryPlan cpu_f32 = plan_memory(file, ctx, resolve_device("cpu", "", "f32"));
  EXPECT_EQ(cpu_f32.items[1].bytes, 2 * cpu.items[1].bytes) << "f32 rows take twice the bytes";
  EXPECT_NE(cpu.items[1].detail.find("f16"), std::string::npos) << cpu.items[1].detail;
  EXPECT_EQ(cpu.items[2].bytes, double(Model::activation_bytes(c, ctx)));
  // x, xn, qkv (q + k + v), q, att, gate_up, its swiglu per token, plus the last token's
  // logits.
  EXPECT_EQ(Model::activation_bytes(c, 1),
            (2 * 576 + (576 + 2 * 192) + 2 * 576 + 2 * 1536 + 1536 + 49152) * sizeof(float));
  EXPECT_DOUBLE_EQ(cpu.total(), cpu.items[0].bytes + cpu.items[1].bytes + cpu.items[2].bytes);

  // bf16 weights: prefill multiplies in bf16 pairs where the CPU can, and keeps its input
  // rounded to bf16, ctx rows of the widest matmul input (ffn_dim 1536).
  DeviceChoice pairs = resolve_device("cpu", "bf16");
  const MemoryPlan cpu_bf16 = plan_memory(file, ctx, pairs);
  if (strips::cpu_has_bf16_products()) {
    ASSERT_EQ(cpu_bf16.items.size(), 4u);
    EXPECT_EQ(cpu_bf16.items[3].bytes, double(ctx * 1536 * 2));
    EXPECT_NE(cpu_bf16.items[3].detail.find("bf16"), std::string::npos);
  } else {
    EXPECT_EQ(cpu_bf16.items.size(), 3u) << "no bf16 products on this CPU";
  }
  pairs.bf16_prefill = false;  // --f32-prefill
  EXPECT_EQ(plan_memory(file, ctx, pairs).items.size(), 3u);

  const MemoryPlan cuda = plan_memory(file, ctx, resolve_device("cuda", ""));
  EXPECT_EQ(cuda.items[0].bytes, double(Weights::planned_bytes(c, WeightType::F16)));
  EXPECT_EQ(cuda.items.size(), cuda_built() ? 4u : 3u) << "a CUDA build plans its scratch";
}

}  // namespace
}  // namespace kvlm
