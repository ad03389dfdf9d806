// matmul: out[T][n_out] = x[T][n_in] . w[n_out][n_in]^T, the projection of every layer.
//
// Decode (T = 1) is a matrix-vector product bound by reading w from memory once, so the
// rows of w are split across threads and each row is one vectorised dot product.
// Prefill (T > 1) reuses every loaded row of w for a tile of tokens: a 4-token x 4-row
// tile keeps 16 vector accumulators in registers, so each element of w and x loaded from
// cache feeds 4 multiply-adds instead of 1.
#include <algorithm>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/simd.h"

namespace kvlm {
namespace {

using simd::horizontal_sum;
using simd::kLanes;
using simd::load;
using simd::Vec;

KVLM_SIMD_CLONES float dot(const float* a, const float* b, int n) {
  Vec acc0 = {}, acc1 = {};
  int i = 0;
  for (; i + 2 * kLanes <= n; i += 2 * kLanes) {
    acc0 += load(a + i) * load(b + i);
    acc1 += load(a + i + kLanes) * load(b + i + kLanes);
  }
  for (; i + kLanes <= n; i += kLanes) acc0 += load(a + i) * load(b + i);
  float s = horizontal_sum(acc0 + acc1);
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

// out[t][o] for t in [t0, t0 + nt), o in [o0, o0 + no), nt, no <= 4.
template <int NT, int NO>
KVLM_SIMD_CLONES void tile(float* out, const float* x, const float* w, int t0, int o0, int n_in,
                           int n_out) {
  Vec acc[NT][NO] = {};
  int i = 0;
  for (; i + kLanes <= n_in; i += kLanes) {
    Vec wv[NO];
    for (int o = 0; o < NO; o++) wv[o] = load(w + size_t(o0 + o) * n_in + i);
    for (int t = 0; t < NT; t++) {
      Vec xv = load(x + size_t(t0 + t) * n_in + i);
      for (int o = 0; o < NO; o++) acc[t][o] += xv * wv[o];
    }
  }
  for (int t = 0; t < NT; t++)
    for (int o = 0; o < NO; o++) {
      float s = horizontal_sum(acc[t][o]);
      for (int r = i; r < n_in; r++) s += x[size_t(t0 + t) * n_in + r] * w[size_t(o0 + o) * n_in + r];
      out[size_t(t0 + t) * n_out + o0 + o] = s;
    }
}

// Edge tiles (fewer than 4 tokens or rows left) fall back to single dot products.
void edge(float* out, const float* x, const float* w, int t0, int nt, int o0, int no, int n_in,
          int n_out) {
  for (int t = t0; t < t0 + nt; t++)
    for (int o = o0; o < o0 + no; o++)
      out[size_t(t) * n_out + o] = dot(x + size_t(t) * n_in, w + size_t(o) * n_in, n_in);
}

}  // namespace

void CpuBackend::matmul(float* out, const float* x, const WeightMatrix& weights, int T) {
  const float* w = static_cast<const float*>(weights.data);
  const int n_in = weights.cols, n_out = weights.rows;
  if (T == 1) {
    pool_.parallel_for(n_out, 16, [&](int64_t begin, int64_t end) {
      for (int64_t o = begin; o < end; o++) out[o] = dot(x, w + size_t(o) * n_in, n_in);
    });
    return;
  }
  // Blocks of 32 rows of w stay in L2 while all token tiles stream past them.
  constexpr int kRowBlock = 32;
  int n_blocks = (n_out + kRowBlock - 1) / kRowBlock;
  pool_.run(n_blocks, [&](int b, int) {
    int o_begin = b * kRowBlock, o_end = std::min(n_out, o_begin + kRowBlock);
    for (int t0 = 0; t0 < T; t0 += 4) {
      int nt = std::min(4, T - t0);
      int o0 = o_begin;
      for (; o0 + 4 <= o_end && nt == 4; o0 += 4) tile<4, 4>(out, x, w, t0, o0, n_in, n_out);
      edge(out, x, w, t0, nt, o0, o_end - o0, n_in, n_out);
    }
  });
}

}  // namespace kvlm
