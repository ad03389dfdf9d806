#include "kernels/cpu/strips.h"

#include <algorithm>
#include <cstddef>

#include "kernels/cpu/simd.h"

namespace kvlm::strips {

using simd::kLanes;
using simd::load;
using simd::Vec;
static_assert(kPanelColumns == 2 * kLanes);

KVLM_SIMD_CLONES void multiply(float* out, int out_stride, int rows, int columns, Strip strip,
                               Panel panel, int n_k, bool accumulate) {
  static_assert(kLanes == 8);
  // A plain array, fully unrolled: GCC keeps it in registers (indexed through a pointer
  // array or a runtime count, it moved to the stack on every step).
  Vec acc[kStripRows][2] = {};
  for (int k = 0; k < n_k; k++) {
    const float* p = panel.data + size_t(k) * panel.k_stride;
    const Vec p0 = load(p), p1 = load(p + kLanes);
#pragma GCC unroll 8
    for (int t = 0; t < kStripRows; t++) {
      // Braced here, from memory: one vbroadcastss load. (simd::broadcast shuffles a
      // register, on a pipe one of the FMA units shares; the same braces inside a helper
      // function became eight inserts.)
      const float v = strip.data[size_t(t) * strip.row_stride + size_t(k) * strip.k_stride];
      const Vec s = {v, v, v, v, v, v, v, v};
      acc[t][0] += s * p0;
      acc[t][1] += s * p1;
    }
  }
  for (int t = 0; t < rows; t++) {
    float* o = out + size_t(t) * out_stride;
    if (columns == kPanelColumns) {
      if (accumulate) {
        acc[t][0] += load(o);
        acc[t][1] += load(o + kLanes);
      }
      simd::store(o, acc[t][0]);
      simd::store(o + kLanes, acc[t][1]);
    } else {
      for (int r = 0; r < columns; r++) o[r] = (accumulate ? o[r] : 0.0f) + acc[t][r / kLanes][r % kLanes];
    }
  }
}

void interleave(const float* rows, int n, int n_k, int row_stride, int width, float* out) {
  for (int b0 = 0; b0 < n; b0 += width) {
    float* block = out + size_t(b0) * n_k;
    const float* first = rows + size_t(b0) * row_stride;
    const int in_block = std::min(width, n - b0);
    // Written in order (reads go across the rows): 16 or 64 rows read at once stay in cache.
    for (int k = 0; k < n_k; k++) {
      float* dst = block + size_t(k) * width;
      for (int i = 0; i < in_block; i++) dst[i] = first[size_t(i) * row_stride + k];
      for (int i = in_block; i < width; i++) dst[i] = 0.0f;
    }
  }
}

}  // namespace kvlm::strips
