// Decode attention speed of the CPU backend (kernels/cpu/attention.cpp): one new token's 9
// query heads against 3 KV heads of f16 keys and values (SmolLM2-135M's shapes), N keys
// each. Two cases: one layer's cache attended again and again (it stays in L2/L3: the
// kernel's arithmetic), and 30 layers' caches in turn, as a decode step reads them (past
// any L3 from ~1K keys on). Prints microseconds per layer and GB/s of keys and values
// read, the best of several passes, on all cores or the threads asked for. Built by name:
//
//   make build/release/decode_attention && build/release/decode_attention [N=2048] [threads]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "model/dequant.h"

using namespace kvlm;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const int n_keys = argc > 1 ? std::atoi(argv[1]) : 2048;
  constexpr int kLayers = 30, kKVHeads = 3, kHeads = 9, kHeadDim = 64;
  CpuBackend backend(argc > 2 ? std::atoi(argv[2]) : 0);
  std::mt19937 rng(1);
  std::normal_distribution<float> gauss(0, 1);
  // Per layer and head, keys then values: n_keys rows of kHeadDim f16 numbers each.
  const size_t head_elems = size_t(n_keys) * kHeadDim;
  std::vector<uint16_t> rows(size_t(kLayers) * kKVHeads * 2 * head_elems);
  for (uint16_t& v : rows) v = f32_to_f16(gauss(rng));
  std::vector<std::vector<KVHeadView>> layers(kLayers);
  for (int l = 0; l < kLayers; l++)
    for (int h = 0; h < kKVHeads; h++) {
      const uint16_t* keys = rows.data() + (size_t(l) * kKVHeads + h) * 2 * head_elems;
      layers[l].push_back(KVHeadView{keys, keys + head_elems, n_keys, DType::F16});
    }
  std::vector<float> q(kHeads * kHeadDim), out(q.size());
  for (float& v : q) v = gauss(rng) * 0.125f;
  const double bytes_per_layer = 2.0 * kKVHeads * head_elems * 2;

  for (int n_layers : {1, kLayers}) {
    double best = 1e30;
    for (int pass = 0; pass < 50; pass++) {
      const auto start = Clock::now();
      for (int l = 0; l < kLayers; l++)
        backend.attention(out.data(), q.data(), layers[l % n_layers], 1, kHeads, kHeadDim);
      best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count() / kLayers);
    }
    std::printf("%d keys, %-22s %7.1f us a layer, %5.1f GB/s of keys and values\n", n_keys,
                n_layers == 1 ? "one layer (in cache):" : "30 layers (memory):", best * 1e6,
                bytes_per_layer / best / 1e9);
  }
}
