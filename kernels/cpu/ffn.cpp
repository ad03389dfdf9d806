// The SwiGLU activation of the fused gate/up projection.
#include <algorithm>
#include <cmath>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm {

// Below this many elements a row range is done before another thread could start on it.
constexpr int64_t kElementsPerTask = 4096;

void CpuBackend::swiglu(float* out, const float* gate_up, int T, int ffn_dim) {
  // Split over all T * ffn_dim outputs, so one decode row still spreads across threads.
  pool_.parallel_for(int64_t(T) * ffn_dim, kElementsPerTask, [&](int64_t begin, int64_t end) {
    while (begin < end) {
      const int64_t t = begin / ffn_dim, first = begin % ffn_dim;
      const int64_t last = std::min<int64_t>(ffn_dim, first + (end - begin));
      const float* gate = gate_up + size_t(t) * 2 * ffn_dim;
      const float* up = gate + ffn_dim;
      float* o = out + size_t(t) * ffn_dim;
#pragma omp simd
      for (int64_t i = first; i < last; i++) o[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
      begin += last - first;
    }
  });
}

}  // namespace kvlm
