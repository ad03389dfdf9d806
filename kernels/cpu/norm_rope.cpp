// RMSNorm and rotary position embedding.
#include <cmath>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm {

void CpuBackend::rmsnorm(float* out, const float* x, const float* weight, int T, int dim,
                         float eps) {
  pool_.parallel_for(T, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) {
      const float* xt = x + size_t(t) * dim;
      float* ot = out + size_t(t) * dim;
      // The sum of squares is accumulated in double: a 4096-wide row of large activations
      // loses digits in float, and this is one pass per row.
      double sum_sq = 0;
      for (int i = 0; i < dim; i++) sum_sq += double(xt[i]) * xt[i];
      float scale = 1.0f / std::sqrt(float(sum_sq / dim) + eps);
      for (int i = 0; i < dim; i++) ot[i] = xt[i] * scale * weight[i];
    }
  });
}

void CpuBackend::rope(float* x, const int32_t* positions, const float* inv_freq, int T,
                      int n_heads, int head_dim, int rope_dim) {
  int half = rope_dim / 2;
  pool_.parallel_for(T, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) {
      for (int i = 0; i < half; i++) {
        // The angle in double: positions reach 10^5 and float would lose the fraction.
        double angle = double(positions[t]) * inv_freq[i];
        float c = float(std::cos(angle)), s = float(std::sin(angle));
        for (int h = 0; h < n_heads; h++) {
          float* head = x + (size_t(t) * n_heads + h) * head_dim;
          float a = head[i], b = head[i + half];
          head[i] = a * c - b * s;
          head[i + half] = a * s + b * c;
        }
      }
    }
  });
}

}  // namespace kvlm
