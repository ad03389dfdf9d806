// Cross-layer merging (MiniCache): angles between a token's states in two layers, the
// split of a pair into one shared direction plus two magnitudes, and the restore.
// One token per loop iteration: every token is independent of the others. Rows are read
// in the cache's dtype and widened; a direction is built in float32, then rounded once.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/kv_rows.h"

namespace kvlm {

namespace {

// Below this sin(angle) the slerp weights are 0/0-prone; normalised lerp differs from
// slerp by O(angle^2) there, far below float noise.
constexpr float kMinSin = 1e-3f;

// Fewer tokens than this are merged before another thread could start on them.
constexpr int64_t kRowsPerTask = 256;

struct PairDots {
  float norm_a, norm_b, dot;
};

PairDots pair_dots(const float* x, const float* y, int d) {
  float xx = 0, yy = 0, xy = 0;
#pragma omp simd reduction(+ : xx, yy, xy)
  for (int c = 0; c < d; c++) {
    xx += x[c] * x[c];
    yy += y[c] * y[c];
    xy += x[c] * y[c];
  }
  return {std::sqrt(xx), std::sqrt(yy), xy};
}

float angle(const PairDots& p) {
  return std::acos(std::clamp(p.dot / (p.norm_a * p.norm_b), -1.0f, 1.0f));
}

// e = wx * x + wy * y
void combine(float* e, float wx, const float* x, float wy, const float* y, int d) {
#pragma omp simd
  for (int c = 0; c < d; c++) e[c] = wx * x[c] + wy * y[c];
}

// e = w * x (e may be x)
void scale(float* e, float w, const float* x, int d) {
#pragma omp simd
  for (int c = 0; c < d; c++) e[c] = w * x[c];
}

// The shared unit direction of one pair of non-zero rows.
void slerp_direction(float* e, const float* x, const float* y, const PairDots& p, int d, float t) {
  const float omega = angle(p);
  const float s = std::sin(omega);
  if (s >= kMinSin) {
    combine(e, std::sin((1 - t) * omega) / s / p.norm_a, x, std::sin(t * omega) / s / p.norm_b, y,
            d);
    return;
  }
  combine(e, (1 - t) / p.norm_a, x, t / p.norm_b, y, d);
  float ee = 0;
#pragma omp simd reduction(+ : ee)
  for (int c = 0; c < d; c++) ee += e[c] * e[c];
  // Exactly opposite rows at t = 0.5 cancel: no direction between them is better than
  // another, so take b's.
  if (ee < 1e-12f) scale(e, 1 / p.norm_b, y, d);
  else scale(e, 1 / std::sqrt(ee), e, d);
}

// Row `row` of a [rows][head_dim] buffer in `dtype`.
const void* row_at(const void* base, int64_t row, int head_dim, DType dtype) {
  return static_cast<const char*>(base) + size_t(row) * head_dim * dtype_bytes(dtype);
}
void* row_at(void* base, int64_t row, int head_dim, DType dtype) {
  return static_cast<char*>(base) + size_t(row) * head_dim * dtype_bytes(dtype);
}

}  // namespace

void CpuBackend::pair_angles(float* out, DType dtype, const void* a, const int32_t* a_rows,
                             const void* b, const int32_t* b_rows, int n, int head_dim) {
  pool_.parallel_for(n, kRowsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<float> x(head_dim), y(head_dim);
    for (int64_t i = begin; i < end; i++) {
      kv_rows::widen(dtype, row_at(a, a_rows[i], head_dim, dtype), x.data(), head_dim);
      kv_rows::widen(dtype, row_at(b, b_rows[i], head_dim, dtype), y.data(), head_dim);
      const PairDots p = pair_dots(x.data(), y.data(), head_dim);
      out[i] = p.norm_a == 0 || p.norm_b == 0 ? -1.0f : angle(p);
    }
  });
}

void CpuBackend::merge_pair(void* dir, float* mag_a, float* mag_b, DType dtype, const void* a,
                            const int32_t* a_rows, const void* b, const int32_t* b_rows, int n,
                            int head_dim, float t) {
  pool_.parallel_for(n, kRowsPerTask, [&](int64_t begin, int64_t end) {
    std::vector<float> x(head_dim), y(head_dim), e(head_dim);
    for (int64_t i = begin; i < end; i++) {
      kv_rows::widen(dtype, row_at(a, a_rows[i], head_dim, dtype), x.data(), head_dim);
      kv_rows::widen(dtype, row_at(b, b_rows[i], head_dim, dtype), y.data(), head_dim);
      const PairDots p = pair_dots(x.data(), y.data(), head_dim);
      mag_a[i] = p.norm_a;
      mag_b[i] = p.norm_b;
      if (p.norm_a > 0 && p.norm_b > 0) slerp_direction(e.data(), x.data(), y.data(), p, head_dim, t);
      else if (p.norm_a > 0) scale(e.data(), 1 / p.norm_a, x.data(), head_dim);
      else if (p.norm_b > 0) scale(e.data(), 1 / p.norm_b, y.data(), head_dim);
      else std::fill(e.begin(), e.end(), 0.0f);
      kv_rows::narrow(dtype, e.data(), row_at(dir, i, head_dim, dtype), head_dim);
    }
  });
}

void CpuBackend::restore_rows(void* out, const int32_t* out_rows, DType dtype, const void* dir,
                              const float* mag, int n, int head_dim) {
  pool_.parallel_for(n, 65536 / head_dim, [&](int64_t begin, int64_t end) {
    std::vector<float> row(head_dim);
    for (int64_t i = begin; i < end; i++) {
      kv_rows::widen(dtype, row_at(dir, i, head_dim, dtype), row.data(), head_dim);
      if (mag) scale(row.data(), mag[i], row.data(), head_dim);
      kv_rows::narrow(dtype, row.data(), row_at(out, out_rows ? out_rows[i] : i, head_dim, dtype),
                      head_dim);
    }
  });
}

}  // namespace kvlm
