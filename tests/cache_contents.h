// Everything a KVCache shows from outside, copied to the host, so that two states can be
// compared whole (a rollback must give back exactly the cache it started from).
#pragma once
#include <cstdint>
#include <vector>

#include "kernels/cpu/simd.h"
#include "kv/kv_cache.h"

namespace kvlm::test {

// The rows of a float32 cache view on the CPU backend (host memory).
inline const float* f32_rows(const void* rows) { return static_cast<const float*>(rows); }

// n values of a CPU view's rows stored in `dtype`, widened to float32.
inline std::vector<float> host_floats(const void* rows, DType dtype, size_t n) {
  std::vector<float> out(n);
  simd::with_storage_type(dtype, [&](auto type) {
    const auto* values = static_cast<const decltype(type)*>(rows);
    for (size_t i = 0; i < n; i++) out[i] = simd::to_float(values[i]);
  });
  return out;
}

struct CacheContents {
  int tokens_seen = 0;
  size_t bytes_held = 0, bytes_allocated = 0;
  // [layer][head]
  std::vector<std::vector<std::vector<int32_t>>> positions;
  std::vector<std::vector<int>> shared;
  std::vector<std::vector<std::vector<float>>> keys, values;  // every slot, as view() shows it
  bool operator==(const CacheContents&) const = default;
};

// The cache must live on the CPU backend (its views are host memory).
inline CacheContents contents(const KVCache& cache) {
  CacheContents c;
  const KVStats st = cache.stats();
  c.tokens_seen = st.tokens_seen;
  c.bytes_held = st.bytes_held;
  c.bytes_allocated = st.bytes_allocated;
  for (int l = 0; l < cache.n_layers(); l++) {
    c.positions.emplace_back();
    c.shared.emplace_back();
    c.keys.emplace_back();
    c.values.emplace_back();
    const std::vector<KVHeadView> view = cache.view(l);
    for (int h = 0; h < cache.n_kv_heads(); h++) {
      c.positions[l].push_back(cache.positions(l, h));
      c.shared[l].push_back(cache.shared_length(l, h));
      const size_t n = size_t(view[h].len) * cache.head_dim();
      c.keys[l].push_back(host_floats(view[h].keys, view[h].dtype, n));
      c.values[l].push_back(host_floats(view[h].values, view[h].dtype, n));
    }
  }
  return c;
}

}  // namespace kvlm::test
