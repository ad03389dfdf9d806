#include "device.h"

#ifndef KVLM_CUDA
#define KVLM_CUDA 0
#endif

#include <stdexcept>

#include "kernels/cpu/cpu_backend.h"
#if KVLM_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace kvlm {

bool cuda_built() { return KVLM_CUDA != 0; }

int cuda_gpu_count() {
#if KVLM_CUDA
  return cuda_device_count();
#else
  return 0;
#endif
}

bool gpu_memory(size_t& free_bytes, size_t& total_bytes) {
#if KVLM_CUDA
  if (cuda_device_count() == 0) return false;
  const CudaDeviceInfo info = cuda_device_info();
  free_bytes = info.free_bytes;
  total_bytes = info.total_bytes;
  return true;
#else
  (void)free_bytes, (void)total_bytes;
  return false;
#endif
}

std::string gpu_name() {
#if KVLM_CUDA
  if (cuda_device_count() == 0) return "";
  const CudaDeviceInfo info = cuda_device_info();
  return info.name + ", " + std::to_string(info.multiprocessors) + " SMs";
#else
  return "";
#endif
}

std::string default_device() { return cuda_gpu_count() > 0 ? "cuda" : "cpu"; }

DType weight_dtype(const std::string& device, const std::string& dtype) {
  const std::string d = device.empty() ? default_device() : device;
  if (dtype.empty()) return d == "cuda" ? DType::F16 : DType::F32;
  DType t;
  if (dtype == "f32") t = DType::F32;
  else if (dtype == "f16") t = DType::F16;
  else if (dtype == "bf16") t = DType::BF16;
  else throw std::invalid_argument("--dtype " + dtype + ": unknown (f32, f16 or bf16)");
  if (d == "cpu" && t != DType::F32)
    throw std::invalid_argument("--dtype " + dtype + ": the cpu backend keeps weights in f32");
  return t;
}

std::unique_ptr<Backend> make_backend(const std::string& device, const std::string& dtype,
                                      int threads) {
  const std::string d = device.empty() ? default_device() : device;
  const DType t = weight_dtype(d, dtype);  // checks --dtype against the device too
  if (d == "cpu") return std::make_unique<CpuBackend>(threads);
  if (d != "cuda") throw std::invalid_argument("--device " + d + ": unknown (cpu or cuda)");
  if (!cuda_built())
    throw std::runtime_error("--device cuda: this build has no CUDA backend (nvcc was not found, "
                             "or it was built with CUDA=0)");
  if (cuda_gpu_count() == 0) throw std::runtime_error("--device cuda: no CUDA GPU is visible");
#if KVLM_CUDA
  return make_cuda_backend(t);
#else
  (void)t;
  return nullptr;  // unreachable: cuda_built() is false
#endif
}

}  // namespace kvlm
