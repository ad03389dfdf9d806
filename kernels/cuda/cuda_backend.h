// The CUDA backend as seen from code compiled without nvcc: a factory and device queries.
// The class itself (kernels/cuda/cuda_backend.cuh) stays inside the .cu files. Present only
// in builds with KVLM_CUDA (nvcc found and CUDA != 0).
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "backend.h"

namespace kvlm {

// GPUs this process can use; 0 when there is none or no usable driver.
int cuda_device_count();

struct CudaDeviceInfo {
  std::string name;
  int multiprocessors = 0;
  size_t free_bytes = 0, total_bytes = 0;
};
// Device 0; throws std::runtime_error when no GPU is visible.
CudaDeviceInfo cuda_device_info();

// Device memory the backend keeps beside weights, KV and activations when its largest call
// has `tokens` tokens: the cuBLAS workspace, the upload chunk and the per-call scratch.
size_t cuda_scratch_bytes(int tokens, int widest_input, int n_heads, int head_dim,
                          DType weights);

// A backend on device 0 storing weight matrices as `weights`. Throws std::runtime_error
// naming the CUDA error when the device cannot be set up.
std::unique_ptr<Backend> make_cuda_backend(DType weights);

}  // namespace kvlm
