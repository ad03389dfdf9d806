// The elementwise parts of a block: SwiGLU activation and the residual add.
#include <cmath>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm {

// Below this many elements a vector is done before another thread could start on it.
constexpr int64_t kElementsPerTask = 4096;

void CpuBackend::swiglu(float* out, const float* gate, const float* up, size_t n) {
  pool_.parallel_for(int64_t(n), kElementsPerTask, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; i++) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  });
}

void CpuBackend::add(float* x, const float* y, size_t n) {
  pool_.parallel_for(int64_t(n), kElementsPerTask, [&](int64_t begin, int64_t end) {
#pragma omp simd
    for (int64_t i = begin; i < end; i++) x[i] += y[i];
  });
}

}  // namespace kvlm
