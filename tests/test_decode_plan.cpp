// What one decode step issues: the ops per layer, the host <-> backend copies and the
// allocations, counted by a CountingBackend around the CPU backend (the same calls reach
// the CUDA backend, whose own counters a CUDA case checks), for every kind of KV method.
//
// The ops of one decode step (T = 1), which the bounds below are made of:
//   per step:  embedding, rmsnorm (layer 0's attention norm), and after the last layer
//              matmul (output); one download (the logits).
//   per layer: matmul (fused Q/K/V), rope_qk, append_kv (every KV head at once),
//              attention, matmul (wo), add_rmsnorm (residual + FFN norm), matmul (fused
//              gate/up), swiglu, matmul (down), add_rmsnorm (residual + next layer's
//              attention norm, or the final norm): 10 ops;
//              + attention_scores when the method observes this step (H2O; SimLayerKV's
//              decode detection), or newest_key_norms (KNorm): kOpsPerLayer = 11 at most;
//              + the cache's row movement when a method rewrites a head, not bounded here:
//              compact_rows for evictions (2 per KV head evicted from), restore_rows for
//              merged layers. A steady step copies no rows (copy_rows only when storage
//              grows, at most one layer's heads in a step).
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>
#include <numeric>
#include <string>
#include <vector>

#include "backend_fixture.h"
#include "counting_backend.h"
#include "kernels/cpu/cpu_backend.h"
#include "kv/observer.h"
#include "kv/strategy.h"
#include "model/random_model.h"
#ifdef KVLM_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace kvlm {
namespace {

using test::CountingBackend;

constexpr int kOpsPerLayer = 11;  // the list above
constexpr int kOpsPerStep = 3;    // embedding, the first norm, the output matmul
// The ops that move cache rows when a method rewrites a head (see above).
const std::vector<std::string> kCacheMovement = {"copy_rows", "compact_rows", "restore_rows"};

// A random model with the head layout of `shape` (a random_model_shapes() name) and `layers`
// layers, but a tiny width, FFN and vocabulary: the op counts depend on the layout only.
ModelConfig layout_of(const std::string& shape, int layers) {
  ModelConfig c = random_model_config("random:" + shape);
  c.n_layers = layers;
  c.dim = 64;
  c.ffn_dim = 96;
  c.vocab_size = 300;  // the byte tokenizer's 258 and a few more
  return c;
}

struct StepCounts {
  std::map<std::string, int64_t> ops;
  int64_t compute = 0;  // every op that computes, cache movement included
  int64_t count(const std::string& name) const {
    auto it = ops.find(name);
    return it == ops.end() ? 0 : it->second;
  }
  int64_t movement() const {
    int64_t n = 0;
    for (const std::string& name : kCacheMovement) n += count(name);
    return n;
  }
};

// A prompt, then `steps` decode steps under `spec`; the counts of each decode step.
std::vector<StepCounts> count_decode_steps(Model& model, CountingBackend& counter,
                                           const std::string& spec, int prompt, int steps) {
  const ModelConfig& c = model.config();
  auto cache = model.make_cache(256);
  auto strategy = make_strategy(spec);
  KVObserver observer(model.backend(), *strategy, c.n_heads, c.head_dim);
  std::vector<int32_t> tokens(prompt);
  std::iota(tokens.begin(), tokens.end(), 2);
  model.forward(tokens, *cache, &observer);
  std::vector<StepCounts> counted;
  for (int i = 0; i < steps; i++) {
    counter.reset();
    model.forward({int32_t(10 + i)}, *cache, &observer);
    counted.push_back({counter.counts(), counter.compute_ops()});
  }
  return counted;
}

struct Method {
  std::string spec;
  bool observes_at_decode;  // downloads scores once per layer in the steps counted
};

// A prompt of 40 tokens fills 64-row storage chunks that the decode steps below do not
// outgrow (storage growth is the KV rewrite's business). The first decode step may still
// grow a buffer once: the observer's scratch when only decoding observes (SimLayerKV), the
// restore buffer of merged layers (MiniCache); from the second on, nothing is allocated.
TEST(DecodePlan, EachMethodStaysWithinThePerLayerBounds) {
  CpuBackend cpu(2);
  CountingBackend counter(cpu);
  const ModelConfig c = layout_of("llama3-8b", 4);  // 32 query heads over 8 KV heads
  auto model = load_random_model(c, counter);
  const int L = c.n_layers;
  const std::vector<Method> methods = {
      {"full", false},
      {"streaming:budget=24,sinks=4", false},
      {"h2o:budget=24", true},
      {"snapkv:budget=24,window=8", false},
      {"knorm:budget=24,skip_layers=0", false},
      {"minicache", false},
      // Detects on the first decode step, which is the one that observes.
      {"simlayerkv:delta=0.5,sinks=1,recent=8,detect=decode", true},
  };
  for (const Method& m : methods) {
    SCOPED_TRACE(m.spec);
    const std::vector<StepCounts> steps = count_decode_steps(*model, counter, m.spec, 40, 3);
    for (size_t i = 0; i < steps.size(); i++) {
      SCOPED_TRACE("decode step " + std::to_string(i + 1));
      const StepCounts& s = steps[i];
      const bool observed = m.observes_at_decode && (i == 0 || m.spec.starts_with("h2o"));
      const bool norms = m.spec.starts_with("knorm");  // the new keys' norms, every step
      EXPECT_LE(s.compute - s.movement(), kOpsPerStep + L * kOpsPerLayer);
      EXPECT_EQ(s.count("matmul"), 4 * L + 1) << "fused Q/K/V and gate/up";
      EXPECT_EQ(s.count("rope_qk"), L) << "queries and keys in one op";
      EXPECT_EQ(s.count("rmsnorm"), 1) << "the other norms take the residual add along";
      EXPECT_EQ(s.count("add_rmsnorm"), 2 * L) << "after attention and after the FFN";
      EXPECT_EQ(s.count("attention_scores"), observed ? L : 0);
      EXPECT_EQ(s.count("key_norms"), 0);
      EXPECT_EQ(s.count("newest_key_norms"), norms ? L : 0) << "one op per layer, every KV head";
      EXPECT_EQ(s.count("append_kv"), L) << "one append per layer, not per head";
      // No storage grows in these steps; merged layers (MiniCache) copy their own rows next
      // to the restored shared ones each step, which is their view's cost, not the append's.
      if (!m.spec.starts_with("minicache")) {
        EXPECT_EQ(s.count("copy_rows"), 0);
      }
      // Attention observations come down once per layer, the new keys' norms once per step
      // (all layers together), the logits once per step.
      EXPECT_EQ(s.count("download"), 1 + (observed ? L : 0) + (norms ? 1 : 0));
      // Positions go by value and nothing else is copied up.
      EXPECT_EQ(s.count("upload"), 0);
      if (i > 0) {  // the first step may still grow a per-step buffer to its decode size
        EXPECT_EQ(s.count("alloc"), 0);
        EXPECT_EQ(s.count("release"), 0);
      }
    }
  }
}

// The totals for the closing note of the plan: ops per decode token on the CPU counter,
// for real head layouts, and what they cost on the CUDA backend. Ops and their CUDA cost
// (kernels/cuda): embedding 1 launch + 1 staging (the ids); rmsnorm, add_rmsnorm, rope_qk,
// swiglu, key_norms, restore_rows 1 launch each; append_kv 1 launch + 1 staging (the heads'
// destinations); matmul at T = 1 one GEMV launch; attention
// at T = 1 2 launches (split-K partials + merge) + 1 staging (the view); attention_scores 2
// launches + 1 staging; copy_rows 1 cudaMemcpy2DAsync; compact_rows 1 launch + 1 copy + 1
// staging; download 1 stream sync.
TEST(DecodePlan, OpsPerTokenOfRealLayouts) {
  struct Layout {
    const char* shape;
    int layers;
  };
  for (const Layout& layout : {Layout{"smollm2-135m", 30}, Layout{"llama3-8b", 32},
                               Layout{"llama2-7b", 32}}) {
    CpuBackend cpu(2);
    CountingBackend counter(cpu);
    const ModelConfig c = layout_of(layout.shape, layout.layers);
    auto model = load_random_model(c, counter);
    for (const char* spec : {"full", "h2o:budget=24"}) {
      const StepCounts s = count_decode_steps(*model, counter, spec, 40, 1).front();
      const int64_t kernels = s.compute - s.count("copy_rows") + s.count("attention") +
                              s.count("attention_scores");
      const int64_t stagings = 1 + s.count("attention") + s.count("attention_scores") +
                               s.count("append_kv") + s.count("compact_rows");
      std::printf("%-13s %2d layers, %2d/%d heads, %-14s: %4lld ops (%lld copy_rows, %lld "
                  "compact_rows), %lld downloads; cuda: %lld kernel launches + %lld copies, "
                  "%lld stagings, %lld syncs\n",
                  layout.shape, c.n_layers, c.n_heads, c.n_kv_heads, spec,
                  (long long)s.compute, (long long)s.count("copy_rows"),
                  (long long)s.count("compact_rows"), (long long)s.count("download"),
                  (long long)kernels, (long long)s.count("copy_rows"), (long long)stagings,
                  (long long)s.count("download"));
      // Full attention, by the list at the top: 3 + 10 per layer, whatever the heads.
      if (std::string(spec) == "full") {
        EXPECT_EQ(s.compute, kOpsPerStep + c.n_layers * 10);
      }
    }
  }
}

#ifdef KVLM_CUDA
// The same decode step on the GPU, counted by the CUDA backend itself, on Llama-3-8B's head
// layout. Bounds per layer, from the costs listed above: launches <= 11 + 2 (kOpsPerLayer
// ops, attention and attention_scores taking 2 each) + 2 compactions per KV head when H2O
// evicts; stagings: the append's destinations, the attention view, and the scores' view
// when observing, + 1 per compaction (the keep list); host syncs: only the downloads
// (observations once per layer, the logits once per step); no allocation.
TEST(DecodePlan, CudaDecodeStepWithinThePerLayerBounds) {
  KVLM_REQUIRE_CUDA();
  auto backend = make_backend("cuda", "f16", 0);
  const ModelConfig c = layout_of("llama3-8b", 4);
  auto model = load_random_model(c, *backend);
  const uint64_t L = c.n_layers, kv = c.n_kv_heads;
  for (const std::string spec : {"full", "h2o:budget=24"}) {
    SCOPED_TRACE(spec);
    const bool observes = spec != "full";
    auto cache = model->make_cache(256);
    auto strategy = make_strategy(spec);
    KVObserver observer(*backend, *strategy, c.n_heads, c.head_dim);
    std::vector<int32_t> tokens(40);
    std::iota(tokens.begin(), tokens.end(), 2);
    model->forward(tokens, *cache, &observer);
    model->forward({7}, *cache, &observer);  // a first step may still grow scratch buffers
    const DeviceOpCounts before = cuda_op_counts(*backend);
    model->forward({8}, *cache, &observer);
    const DeviceOpCounts after = cuda_op_counts(*backend);
    const uint64_t movement = observes ? 2 * kv : 0;
    EXPECT_LE(after.launches - before.launches, kOpsPerStep + L * (kOpsPerLayer + 2 + movement));
    EXPECT_LE(after.stagings - before.stagings, 1 + L * (2 + (observes ? 1 + 2 * kv : 0)));
    EXPECT_EQ(after.downloads - before.downloads, 1 + (observes ? L : 0));
    EXPECT_EQ(after.syncs - before.syncs, after.downloads - before.downloads)
        << "no host wait but the downloads";
    EXPECT_EQ(after.uploads - before.uploads, 0u);
    EXPECT_EQ(after.allocations - before.allocations, 0u);
    EXPECT_EQ(after.frees - before.frees, 0u);
  }
}
#endif

}  // namespace
}  // namespace kvlm
