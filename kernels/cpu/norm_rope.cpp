// RMSNorm (alone, and after the residual add it follows), rotary position embedding, and
// the re-rotation of cached keys whose positions change.
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/kv_rows.h"

namespace kvlm {

namespace {

// out = x / sqrt(mean(x^2) + eps) * weight, over one row.
void rmsnorm_row(float* out, const float* x, const float* weight, int dim, float eps) {
  // The sum of squares is accumulated in double: a 4096-wide row of large activations
  // loses digits in float, and this is one pass per row.
  double sum_sq = 0;
  for (int i = 0; i < dim; i++) sum_sq += double(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(float(sum_sq / dim) + eps);
  for (int i = 0; i < dim; i++) out[i] = x[i] * scale * weight[i];
}

// Turns the pair (head[i], head[j]) of each of n_heads heads by (cos, sin).
void rotate_heads(float* out, const float* in, int n_heads, int head_dim, int i, int j, float c,
                  float s) {
  for (int h = 0; h < n_heads; h++) {
    const float a = in[size_t(h) * head_dim + i], b = in[size_t(h) * head_dim + j];
    out[size_t(h) * head_dim + i] = a * c - b * s;
    out[size_t(h) * head_dim + j] = a * s + b * c;
  }
}

}  // namespace

void CpuBackend::rmsnorm(float* out, const float* x, const float* weight, int T, int dim,
                         float eps) {
  pool_.parallel_for(T, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++)
      rmsnorm_row(out + size_t(t) * dim, x + size_t(t) * dim, weight, dim, eps);
  });
}

void CpuBackend::add_rmsnorm(float* out, float* x, const float* y, const float* weight, int T,
                             int dim, float eps) {
  pool_.parallel_for(T, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) {
      float* xt = x + size_t(t) * dim;
      const float* yt = y + size_t(t) * dim;
#pragma omp simd
      for (int i = 0; i < dim; i++) xt[i] += yt[i];
      rmsnorm_row(out + size_t(t) * dim, xt, weight, dim, eps);
    }
  });
}

void CpuBackend::rope_qk(float* q_out, float* qkv, int first_position, const float* inv_freq,
                         int T, int n_heads, int n_kv_heads, int head_dim, int rope_dim,
                         bool adjacent_pairs) {
  const int half = rope_dim / 2;
  const size_t q_dim = size_t(n_heads) * head_dim, qkv_dim = q_dim + 2 * size_t(n_kv_heads) * head_dim;
  pool_.parallel_for(T, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) {
      const float* q_in = qkv + size_t(t) * qkv_dim;
      float* q = q_out + size_t(t) * q_dim;
      float* k = qkv + size_t(t) * qkv_dim + q_dim;
      // Dimensions past rope_dim are not rotated, but the queries still move to q_out.
      for (int h = 0; h < n_heads; h++)
        for (int i = rope_dim; i < head_dim; i++)
          q[size_t(h) * head_dim + i] = q_in[size_t(h) * head_dim + i];
      for (int i = 0; i < half; i++) {
        // The angle in double: positions reach 10^5 and float would lose the fraction.
        const double angle = double(first_position + t) * inv_freq[i];
        const float c = float(std::cos(angle)), s = float(std::sin(angle));
        const int a = adjacent_pairs ? 2 * i : i, b = adjacent_pairs ? 2 * i + 1 : i + half;
        rotate_heads(q, q_in, n_heads, head_dim, a, b, c, s);
        rotate_heads(k, k, n_kv_heads, head_dim, a, b, c, s);
      }
    }
  });
}

// Consecutive rows usually share a shift (a window sliding by one moves every row by -1),
// so the angles are computed once per run of equal shifts. Each row is widened, turned in
// float32 and rounded back once; the rows are split among the threads.
void CpuBackend::rotate_keys(void* keys, DType dtype, const int32_t* shifts, int n, int head_dim,
                             const float* inv_freq, int rope_dim, bool adjacent_pairs) {
  const int half = rope_dim / 2;
  const size_t row_bytes = size_t(head_dim) * dtype_bytes(dtype);
  // Chunks of at least 128 rows: each chunk computes its angles again.
  pool_.parallel_for(n, 128, [&](int64_t begin, int64_t end) {
    std::vector<float> cos_angle(half), sin_angle(half), row(head_dim);
    int32_t angles_for = 0;
    for (int64_t r = begin; r < end; r++) {
      if (shifts[r] == 0) continue;
      if (shifts[r] != angles_for) {
        for (int i = 0; i < half; i++) {
          const double angle = double(shifts[r]) * inv_freq[i];
          cos_angle[i] = float(std::cos(angle)), sin_angle[i] = float(std::sin(angle));
        }
        angles_for = shifts[r];
      }
      void* key = static_cast<char*>(keys) + r * row_bytes;
      kv_rows::widen(dtype, key, row.data(), head_dim);
      float* x = row.data();
      if (adjacent_pairs) {
        for (int i = 0; i < half; i++) {
          const float a = x[2 * i], b = x[2 * i + 1];
          x[2 * i] = a * cos_angle[i] - b * sin_angle[i];
          x[2 * i + 1] = a * sin_angle[i] + b * cos_angle[i];
        }
      } else {
        for (int i = 0; i < half; i++) {
          const float a = x[i], b = x[i + half];
          x[i] = a * cos_angle[i] - b * sin_angle[i];
          x[i + half] = a * sin_angle[i] + b * cos_angle[i];
        }
      }
      kv_rows::narrow(dtype, x, key, head_dim);
    }
  });
}

}  // namespace kvlm
