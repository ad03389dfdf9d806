// The SwiGLU activation of the fused gate/up projection.
#include "kernels/cuda/cuda_backend.cuh"

namespace kvlm {

namespace {

__global__ void swiglu_kernel(float* out, const float* gate_up, size_t n, int ffn_dim) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t t = i / ffn_dim, j = i % ffn_dim;
    const float g = gate_up[2 * t * ffn_dim + j], up = gate_up[(2 * t + 1) * ffn_dim + j];
    out[i] = g / (1.0f + expf(-g)) * up;
  }
}

}  // namespace

void CudaBackend::swiglu(float* out, const float* gate_up, int T, int ffn_dim) {
  const size_t n = size_t(T) * ffn_dim;
  if (n == 0) return;
  swiglu_kernel<<<blocks_for(n, 256), 256, 0, stream_>>>(out, gate_up, n, ffn_dim);
  launched("swiglu");
}

}  // namespace kvlm
