// RMSNorm and rotary position embedding.
#include "kernels/cuda/cuda_backend.cuh"

namespace kvlm {

namespace {

constexpr int kNormThreads = 256;

// One block per row.
__global__ void rmsnorm_kernel(float* out, const float* x, const float* weight, int dim,
                               float eps) {
  __shared__ float partial[kNormThreads / 32];
  const float* xt = x + size_t(blockIdx.x) * dim;
  float* ot = out + size_t(blockIdx.x) * dim;
  float sum_sq = 0;
  for (int i = threadIdx.x; i < dim; i += blockDim.x) sum_sq += xt[i] * xt[i];
  const float scale = rsqrtf(block_sum(sum_sq, partial) / dim + eps);
  for (int i = threadIdx.x; i < dim; i += blockDim.x) ot[i] = xt[i] * scale * weight[i];
}

// One thread per (token, rotated pair), turning that pair in every head: the angle is
// computed once, in double (positions reach 10^5 and float would lose its fraction).
__global__ void rope_kernel(float* x, const int32_t* positions, const float* inv_freq, int T,
                            int n_heads, int head_dim, int half) {
  const size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x;
  if (idx >= size_t(T) * half) return;
  const int t = int(idx / half), i = int(idx % half);
  double s, c;
  sincos(double(positions[t]) * inv_freq[i], &s, &c);
  const float cf = float(c), sf = float(s);
  for (int h = 0; h < n_heads; h++) {
    float* head = x + (size_t(t) * n_heads + h) * head_dim;
    const float a = head[i], b = head[i + half];
    head[i] = a * cf - b * sf;
    head[i + half] = a * sf + b * cf;
  }
}

}  // namespace

void CudaBackend::rmsnorm(float* out, const float* x, const float* weight, int T, int dim,
                          float eps) {
  if (T == 0) return;
  rmsnorm_kernel<<<T, kNormThreads, 0, stream_>>>(out, x, weight, dim, eps);
  launched("rmsnorm");
}

void CudaBackend::rope(float* x, const int32_t* positions, const float* inv_freq, int T,
                       int n_heads, int head_dim, int rope_dim) {
  const int half = rope_dim / 2;
  const size_t n = size_t(T) * half;
  if (n == 0) return;
  const int32_t* device_positions = stage(positions, T);
  rope_kernel<<<int((n + 255) / 256), 256, 0, stream_>>>(x, device_positions, inv_freq, T,
                                                         n_heads, head_dim, half);
  launched("rope");
}

}  // namespace kvlm
