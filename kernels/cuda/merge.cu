// Cross-layer merging (MiniCache): angles between a token's states in two layers, the
// split of a pair into one shared direction plus two magnitudes, and the restore.
// A warp per token pair, lanes across head_dim: every lane ends with the same sums, so
// the per-pair decisions (zero rows, slerp or normalised lerp) are uniform in the warp.
#include "kernels/cuda/cuda_backend.cuh"

namespace kvlm {

namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
// Below this sin(angle) the slerp weights are 0/0-prone; normalised lerp differs from
// slerp by O(angle^2) there, far below float noise (the CPU twin uses the same bound).
constexpr float kMinSin = 1e-3f;

struct PairDots {
  float norm_a, norm_b, dot;
};

__device__ inline PairDots pair_dots(const float* x, const float* y, int d) {
  float xx = 0, yy = 0, xy = 0;
  for (int c = threadIdx.x & 31; c < d; c += 32) {
    xx += x[c] * x[c];
    yy += y[c] * y[c];
    xy += x[c] * y[c];
  }
  return {sqrtf(warp_sum(xx)), sqrtf(warp_sum(yy)), warp_sum(xy)};
}

__device__ inline float angle(const PairDots& p) {
  return acosf(fminf(fmaxf(p.dot / (p.norm_a * p.norm_b), -1.0f), 1.0f));
}

__global__ void pair_angles_kernel(float* out, const float* a, const int32_t* a_rows,
                                   const float* b, const int32_t* b_rows, int n, int head_dim) {
  const int i = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (i >= n) return;
  const PairDots p = pair_dots(a + size_t(a_rows[i]) * head_dim, b + size_t(b_rows[i]) * head_dim,
                               head_dim);
  if ((threadIdx.x & 31) == 0) out[i] = p.norm_a == 0 || p.norm_b == 0 ? -1.0f : angle(p);
}

__global__ void merge_pair_kernel(float* dir, float* mag_a, float* mag_b, const float* a,
                                  const int32_t* a_rows, const float* b, const int32_t* b_rows,
                                  int n, int head_dim, float t) {
  const int i = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (i >= n) return;
  const int lane = threadIdx.x & 31;
  const float* x = a + size_t(a_rows[i]) * head_dim;
  const float* y = b + size_t(b_rows[i]) * head_dim;
  float* e = dir + size_t(i) * head_dim;
  const PairDots p = pair_dots(x, y, head_dim);
  if (lane == 0) mag_a[i] = p.norm_a, mag_b[i] = p.norm_b;

  // e = wx * x + wy * y, then optionally normalised.
  float wx = 0, wy = 0;
  bool normalise = false;
  if (p.norm_a > 0 && p.norm_b > 0) {
    const float omega = angle(p);
    const float s = sinf(omega);
    if (s >= kMinSin) {
      wx = sinf((1 - t) * omega) / s / p.norm_a;
      wy = sinf(t * omega) / s / p.norm_b;
    } else {
      wx = (1 - t) / p.norm_a;
      wy = t / p.norm_b;
      normalise = true;
    }
  } else if (p.norm_a > 0) {
    wx = 1 / p.norm_a;
  } else if (p.norm_b > 0) {
    wy = 1 / p.norm_b;
  }
  if (normalise) {
    float ee = 0;
    for (int c = lane; c < head_dim; c += 32) {
      const float v = wx * x[c] + wy * y[c];
      ee += v * v;
    }
    ee = warp_sum(ee);
    // Exactly opposite rows at t = 0.5 cancel: no direction between them is better than
    // another, so take b's.
    if (ee < 1e-12f) {
      wx = 0;
      wy = 1 / p.norm_b;
    } else {
      const float inv = 1 / sqrtf(ee);
      wx *= inv;
      wy *= inv;
    }
  }
  for (int c = lane; c < head_dim; c += 32) e[c] = wx * x[c] + wy * y[c];
}

__global__ void restore_rows_kernel(float* out, const float* dir, const float* mag, int n,
                                    int head_dim) {
  const size_t total = size_t(n) * head_dim;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x)
    out[i] = dir[i] * mag[i / head_dim];
}

}  // namespace

void CudaBackend::pair_angles(float* out, const float* a, const int32_t* a_rows, const float* b,
                              const int32_t* b_rows, int n, int head_dim) {
  if (n == 0) return;
  const int32_t* da = stage(a_rows, n);
  const int32_t* db = stage(b_rows, n);
  pair_angles_kernel<<<(n + kWarps - 1) / kWarps, kThreads, 0, stream_>>>(out, a, da, b, db, n,
                                                                          head_dim);
  launched("pair_angles");
}

void CudaBackend::merge_pair(float* dir, float* mag_a, float* mag_b, const float* a,
                             const int32_t* a_rows, const float* b, const int32_t* b_rows, int n,
                             int head_dim, float t) {
  if (n == 0) return;
  const int32_t* da = stage(a_rows, n);
  const int32_t* db = stage(b_rows, n);
  merge_pair_kernel<<<(n + kWarps - 1) / kWarps, kThreads, 0, stream_>>>(
      dir, mag_a, mag_b, a, da, b, db, n, head_dim, t);
  launched("merge_pair");
}

void CudaBackend::restore_rows(float* out, const float* dir, const float* mag, int n,
                               int head_dim) {
  const size_t total = size_t(n) * head_dim;
  if (total == 0) return;
  restore_rows_kernel<<<blocks_for(total, 256), 256, 0, stream_>>>(out, dir, mag, n, head_dim);
  launched("restore_rows");
}

}  // namespace kvlm
