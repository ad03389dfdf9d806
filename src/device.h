// Choosing where a model runs: --device cpu|cuda and the weight dtype (--dtype).
#pragma once
#include <cstddef>
#include <memory>
#include <string>

#include "backend.h"

namespace kvlm {

// True when this build compiled the CUDA backend (nvcc found, CUDA != 0).
bool cuda_built();
// CUDA GPUs visible to this process: 0 without a CUDA build, a driver or a device.
int cuda_gpu_count();
// "cuda" when a GPU is visible (and built for), else "cpu".
std::string default_device();

// device: "cpu", "cuda" or "" (default_device()). dtype: "f32", "f16", "bf16" or "" (the
// device's default: f32 on the cpu, f16 on cuda). Throws std::invalid_argument for a
// dtype the device cannot store, std::runtime_error when cuda is asked for and missing.
std::unique_ptr<Backend> make_backend(const std::string& device, const std::string& dtype,
                                      int threads);
// Free and total bytes of GPU 0; false when there is none (or no CUDA build).
bool gpu_memory(size_t& free_bytes, size_t& total_bytes);
// "NVIDIA H100 80GB HBM3, 132 SMs"; "" when no GPU is visible.
std::string gpu_name();

// The weight dtype make_backend() would use.
DType weight_dtype(const std::string& device, const std::string& dtype);

}  // namespace kvlm
