// The elementwise parts of a block: SwiGLU activation and the residual add.
#include "kernels/cuda/cuda_backend.cuh"

namespace kvlm {

namespace {

__global__ void swiglu_kernel(float* out, const float* gate, const float* up, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_kernel(float* x, const float* y, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    x[i] += y[i];
}

}  // namespace

void CudaBackend::swiglu(float* out, const float* gate, const float* up, size_t n) {
  if (n == 0) return;
  swiglu_kernel<<<blocks_for(n, 256), 256, 0, stream_>>>(out, gate, up, n);
  launched("swiglu");
}

void CudaBackend::add(float* x, const float* y, size_t n) {
  if (n == 0) return;
  add_kernel<<<blocks_for(n, 256), 256, 0, stream_>>>(x, y, n);
  launched("add");
}

}  // namespace kvlm
