// The elementwise parts of a block: SwiGLU activation and the residual add.
#include <cmath>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm {

void CpuBackend::swiglu(float* out, const float* gate, const float* up, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 4096)
  for (size_t i = 0; i < n; i++) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void CpuBackend::add(float* x, const float* y, size_t n) {
#pragma omp parallel for simd schedule(static) if (n > 4096)
  for (size_t i = 0; i < n; i++) x[i] += y[i];
}

}  // namespace kvlm
