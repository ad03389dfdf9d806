// The SwiGLU activation of the fused gate/up projection.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/simd.h"

namespace kvlm {
namespace {

// Below this many elements a row range is done before another thread could start on it.
constexpr int64_t kElementsPerTask = 4096;

// out[i] = silu(gate[i]) * up[i] for i in [first, last). The vector exp (kernels/cpu/simd.h)
// replaces libm's scalar expf, which took ~5% of a 2K-token prefill.
KVLM_SIMD_CLONES void swiglu_range(float* out, const float* gate, const float* up, int64_t first,
                                   int64_t last) {
  using simd::kLanes;
  int64_t i = first;
  for (; i + kLanes <= last; i += kLanes) {
    const simd::Vec g = simd::load(gate + i);
    simd::store(out + i, g / (1.0f + simd::exp(-g)) * simd::load(up + i));
  }
  for (; i < last; i++) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

}  // namespace

void CpuBackend::swiglu(float* out, const float* gate_up, int T, int ffn_dim) {
  // Split over all T * ffn_dim outputs, so one decode row still spreads across threads.
  pool_.parallel_for(int64_t(T) * ffn_dim, kElementsPerTask, [&](int64_t begin, int64_t end) {
    while (begin < end) {
      const int64_t t = begin / ffn_dim, first = begin % ffn_dim;
      const int64_t last = std::min<int64_t>(ffn_dim, first + (end - begin));
      const float* gate = gate_up + size_t(t) * 2 * ffn_dim;
      swiglu_range(out + size_t(t) * ffn_dim, gate, gate + ffn_dim, first, last);
      begin += last - first;
    }
  });
}

}  // namespace kvlm
