#include "device.h"

#ifndef KVLM_CUDA
#define KVLM_CUDA 0
#endif

#include <algorithm>
#include <stdexcept>

#include "kernels/cpu/cpu_backend.h"
#if KVLM_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

namespace kvlm {

const char* device_name(Device d) { return d == Device::Cuda ? "cuda" : "cpu"; }

bool cuda_built() { return KVLM_CUDA != 0; }

std::string cublas_library() {
#if KVLM_CUDA
  return cublas_library_name();
#else
  return "";
#endif
}

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

namespace {
// The DType named `name` (f32, f16 or bf16) as the value of `flag`.
DType parse_dtype(const std::string& flag, const std::string& name) {
  if (name == "f32") return DType::F32;
  if (name == "f16") return DType::F16;
  if (name == "bf16") return DType::BF16;
  throw std::invalid_argument(flag + " " + name + ": unknown (f32, f16 or bf16)");
}
}  // namespace

DeviceChoice resolve_device(const std::string& device, const std::string& dtype,
                            const std::string& kv_dtype) {
  DeviceChoice c;
  if (device.empty()) c.device = cuda_gpu_count() > 0 ? Device::Cuda : Device::Cpu;
  else if (device == "cpu") c.device = Device::Cpu;
  else if (device == "cuda") c.device = Device::Cuda;
  else throw std::invalid_argument("--device " + device + ": unknown (cpu or cuda)");
  if (!dtype.empty()) c.weights = parse_dtype("--dtype", dtype);
  c.kv = kv_dtype.empty() ? DType::F16 : parse_dtype("--kv-dtype", kv_dtype);
  return c;
}

WeightType planned_weight_type(const DeviceChoice& choice, WeightType stored) {
  if (choice.weights) return weight_type(*choice.weights);
  return choice.device == Device::Cuda && stored == WeightType::F32 ? WeightType::F16 : stored;
}

std::unique_ptr<Backend> make_backend(const DeviceChoice& choice, int threads) {
  std::optional<WeightType> convert_to;
  if (choice.weights) convert_to = weight_type(*choice.weights);
  if (choice.device == Device::Cpu)
    return std::make_unique<CpuBackend>(threads, convert_to, choice.bf16_prefill);
  if (!cuda_built())
    throw std::runtime_error("--device cuda: this build has no CUDA backend (nvcc was not found, "
                             "or it was built with CUDA=0)");
  if (cuda_gpu_count() == 0) throw std::runtime_error("--device cuda: no CUDA GPU is visible");
#if KVLM_CUDA
  return make_cuda_backend(convert_to);
#else
  return nullptr;  // unreachable: cuda_built() is false
#endif
}

size_t backend_scratch_bytes(const DeviceChoice& choice, const ModelConfig& c, int tokens,
                             size_t largest_quantized, bool all_f32) {
  const int widest_input = std::max({c.dim, c.q_dim(), c.ffn_dim});
  if (choice.device == Device::Cpu)
    return CpuBackend::prefill_scratch_bytes(tokens, widest_input, choice.bf16_prefill, all_f32);
#if KVLM_CUDA
  const DType rounded_to = choice.weights.value_or(DType::F16);
  return cuda_scratch_bytes(tokens, widest_input, c.n_heads,
                            c.head_dim, rounded_to, largest_quantized);
#else
  (void)largest_quantized;
  return 0;  // no CUDA backend in this build
#endif
}

std::unique_ptr<Backend> make_backend(const std::string& device, const std::string& dtype,
                                      int threads) {
  return make_backend(resolve_device(device, dtype), threads);
}

}  // namespace kvlm
