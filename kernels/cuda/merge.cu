// Cross-layer merging (MiniCache): angles between a token's states in two layers, the
// split of a pair into one shared direction plus two magnitudes, and the restore.
// A warp per token pair, lanes across head_dim: every lane ends with the same sums, so
// the per-pair decisions (zero rows, slerp or normalised lerp) are uniform in the warp.
// Rows and directions are in the cache's storage type K, widened to float32 as read.
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

template <class K>
__device__ inline PairDots pair_dots(const K* x, const K* y, int d) {
  float xx = 0, yy = 0, xy = 0;
  for (int c = threadIdx.x & 31; c < d; c += 32) {
    const float xc = to_float(x[c]), yc = to_float(y[c]);
    xx += xc * xc;
    yy += yc * yc;
    xy += xc * yc;
  }
  return {sqrtf(warp_sum(xx)), sqrtf(warp_sum(yy)), warp_sum(xy)};
}

__device__ inline float angle(const PairDots& p) {
  return acosf(fminf(fmaxf(p.dot / (p.norm_a * p.norm_b), -1.0f), 1.0f));
}

template <class K>
__global__ void pair_angles_kernel(float* out, const K* a, const int32_t* a_rows, const K* b,
                                   const int32_t* b_rows, int n, int head_dim) {
  const int i = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (i >= n) return;
  const PairDots p = pair_dots(a + size_t(a_rows[i]) * head_dim, b + size_t(b_rows[i]) * head_dim,
                               head_dim);
  if ((threadIdx.x & 31) == 0) out[i] = p.norm_a == 0 || p.norm_b == 0 ? -1.0f : angle(p);
}

template <class K>
__global__ void merge_pair_kernel(K* dir, float* mag_a, float* mag_b, const K* a,
                                  const int32_t* a_rows, const K* b, const int32_t* b_rows, int n,
                                  int head_dim, float t) {
  const int i = blockIdx.x * kWarps + (threadIdx.x >> 5);
  if (i >= n) return;
  const int lane = threadIdx.x & 31;
  const K* x = a + size_t(a_rows[i]) * head_dim;
  const K* y = b + size_t(b_rows[i]) * head_dim;
  K* e = dir + size_t(i) * head_dim;
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
      const float v = wx * to_float(x[c]) + wy * to_float(y[c]);
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
  for (int c = lane; c < head_dim; c += 32)
    e[c] = from_float<K>(wx * to_float(x[c]) + wy * to_float(y[c]));
}

template <class K>
__global__ void restore_rows_kernel(K* out, const int32_t* out_rows, const K* dir, const float* mag,
                                    int n, int head_dim) {
  const size_t total = size_t(n) * head_dim;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t row = i / head_dim, col = i % head_dim;
    const size_t out_row = out_rows ? size_t(out_rows[row]) : row;
    out[out_row * head_dim + col] = from_float<K>(to_float(dir[i]) * (mag ? mag[row] : 1.0f));
  }
}

}  // namespace

void CudaBackend::pair_angles(float* out, DType dtype, const void* a, const int32_t* a_rows,
                              const void* b, const int32_t* b_rows, int n, int head_dim) {
  if (n == 0) return;
  const int32_t* da = stage(a_rows, n);
  const int32_t* db = stage(b_rows, n);
  with_storage_type(dtype, [&](auto tag) {
    using K = typename decltype(tag)::type;
    pair_angles_kernel<K><<<(n + kWarps - 1) / kWarps, kThreads, 0, stream_>>>(
        out, static_cast<const K*>(a), da, static_cast<const K*>(b), db, n, head_dim);
  });
  launched("pair_angles");
}

void CudaBackend::merge_pair(void* dir, float* mag_a, float* mag_b, DType dtype, const void* a,
                             const int32_t* a_rows, const void* b, const int32_t* b_rows, int n,
                             int head_dim, float t) {
  if (n == 0) return;
  const int32_t* da = stage(a_rows, n);
  const int32_t* db = stage(b_rows, n);
  with_storage_type(dtype, [&](auto tag) {
    using K = typename decltype(tag)::type;
    merge_pair_kernel<K><<<(n + kWarps - 1) / kWarps, kThreads, 0, stream_>>>(
        static_cast<K*>(dir), mag_a, mag_b, static_cast<const K*>(a), da,
        static_cast<const K*>(b), db, n, head_dim, t);
  });
  launched("merge_pair");
}

void CudaBackend::restore_rows(void* out, const int32_t* out_rows, DType dtype, const void* dir,
                               const float* mag, int n, int head_dim) {
  const size_t total = size_t(n) * head_dim;
  if (total == 0) return;
  const int32_t* d_rows = out_rows ? stage(out_rows, n) : nullptr;
  with_storage_type(dtype, [&](auto tag) {
    using K = typename decltype(tag)::type;
    restore_rows_kernel<K><<<blocks_for(total, 256), 256, 0, stream_>>>(
        static_cast<K*>(out), d_rows, static_cast<const K*>(dir), mag, n, head_dim);
  });
  launched("restore_rows");
}

}  // namespace kvlm
