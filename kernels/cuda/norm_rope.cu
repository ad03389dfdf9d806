// RMSNorm (alone, and after the residual add it follows), rotary position embedding, and
// the re-rotation of cached keys whose positions change.
#include "kernels/cuda/cuda_backend.cuh"

namespace kvlm {

namespace {

constexpr int kNormThreads = 256;

// One block per row; with `y`, x += y first (each thread adds the elements it then reads).
// The sum of squares is taken in double and the scale as 1 / sqrt, as the CPU twin does, so
// the two differ only by the order of the additions.
__global__ void rmsnorm_kernel(float* out, float* x, const float* y, const float* weight, int dim,
                               float eps) {
  __shared__ double partial[kNormThreads / 32];
  float* xt = x + size_t(blockIdx.x) * dim;
  float* ot = out + size_t(blockIdx.x) * dim;
  double sum_sq = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) {
    if (y) xt[i] += y[size_t(blockIdx.x) * dim + i];
    sum_sq += double(xt[i]) * xt[i];
  }
  const float scale = 1.0f / sqrtf(float(block_sum(sum_sq, partial) / dim) + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ot[i] = xt[i] * scale * weight[i];
}

// One thread per (token, query or key head, rotated pair): (i, i + half), or (2i, 2i + 1)
// when adjacent_pairs. The angle is computed in double
// (positions reach 10^5 and float would lose its fraction). Query heads are written to
// q_out, with their unrotated tail (dimensions past rope_dim) copied along.
__global__ void rope_qk_kernel(float* q_out, float* qkv, int first_position,
                               const float* inv_freq, int T, int n_heads, int n_kv_heads,
                               int head_dim, int half, bool adjacent_pairs) {
  const int heads = n_heads + n_kv_heads;
  const size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (idx >= size_t(T) * heads * half) return;
  const int i = int(idx % half), h = int(idx / half % heads), t = int(idx / half / heads);
  const size_t qkv_dim = size_t(heads + n_kv_heads) * head_dim;
  const float* in = qkv + t * qkv_dim + size_t(h) * head_dim;
  float* out = h < n_heads ? q_out + (size_t(t) * n_heads + h) * head_dim
                           : qkv + t * qkv_dim + size_t(h) * head_dim;
  double s, c;
  sincos(double(first_position + t) * inv_freq[i], &s, &c);
  const int ia = adjacent_pairs ? 2 * i : i, ib = adjacent_pairs ? 2 * i + 1 : i + half;
  const float cf = float(c), sf = float(s), a = in[ia], b = in[ib];
  out[ia] = a * cf - b * sf;
  out[ib] = a * sf + b * cf;
  if (h < n_heads)
    for (int j = 2 * half + i; j < head_dim; j += half) out[j] = in[j];
}

// One thread per (row, rotated pair) of a head's cached keys: the pair turns by
// shifts[row] positions, in float32, and is rounded back to the storage type.
template <class K>
__global__ void rotate_keys_kernel(K* keys, const int32_t* shifts, int n, int head_dim, int half,
                                   const float* inv_freq, bool adjacent_pairs) {
  const size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (idx >= size_t(n) * half) return;
  const int i = int(idx % half), r = int(idx / half);
  if (shifts[r] == 0) return;
  double s, c;
  sincos(double(shifts[r]) * inv_freq[i], &s, &c);
  K* k = keys + size_t(r) * head_dim;
  const int ia = adjacent_pairs ? 2 * i : i, ib = adjacent_pairs ? 2 * i + 1 : i + half;
  const float cf = float(c), sf = float(s), a = to_float(k[ia]), b = to_float(k[ib]);
  k[ia] = from_float<K>(a * cf - b * sf);
  k[ib] = from_float<K>(a * sf + b * cf);
}

}  // namespace

void CudaBackend::rmsnorm(float* out, const float* x, const float* weight, int T, int dim,
                          float eps) {
  if (T == 0) return;
  // x is only written when a y is added.
  rmsnorm_kernel<<<T, kNormThreads, 0, stream_>>>(out, const_cast<float*>(x), nullptr, weight,
                                                  dim, eps);
  launched("rmsnorm");
}

void CudaBackend::add_rmsnorm(float* out, float* x, const float* y, const float* weight, int T,
                              int dim, float eps) {
  if (T == 0) return;
  rmsnorm_kernel<<<T, kNormThreads, 0, stream_>>>(out, x, y, weight, dim, eps);
  launched("add_rmsnorm");
}

void CudaBackend::rope_qk(float* q_out, float* qkv, int first_position, const float* inv_freq,
                          int T, int n_heads, int n_kv_heads, int head_dim, int rope_dim,
                          bool adjacent_pairs) {
  const int half = rope_dim / 2;
  const size_t n = size_t(T) * (n_heads + n_kv_heads) * half;
  if (n == 0) return;
  rope_qk_kernel<<<int((n + 255) / 256), 256, 0, stream_>>>(
      q_out, qkv, first_position, inv_freq, T, n_heads, n_kv_heads, head_dim, half, adjacent_pairs);
  launched("rope_qk");
}

void CudaBackend::rotate_keys(void* keys, DType dtype, const int32_t* shifts, int n, int head_dim,
                              const float* inv_freq, int rope_dim, bool adjacent_pairs) {
  const int half = rope_dim / 2;
  if (n == 0 || half == 0) return;
  const int32_t* device_shifts = stage(shifts, n);
  with_storage_type(dtype, [&](auto tag) {
    using K = typename decltype(tag)::type;
    rotate_keys_kernel<K><<<int((size_t(n) * half + 255) / 256), 256, 0, stream_>>>(
        static_cast<K*>(keys), device_shifts, n, head_dim, half, inv_freq, adjacent_pairs);
  });
  launched("rotate_keys");
}

}  // namespace kvlm
