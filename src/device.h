// Where a model runs. --device, --dtype and --kv-dtype are resolved once, at the command
// line, into a DeviceChoice; everything below (the backend, the memory plan, info) takes that value.
#pragma once
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "backend.h"
#include "model/config.h"

namespace kvlm {

enum class Device { Cpu, Cuda };
const char* device_name(Device d);  // "cpu", "cuda"

struct DeviceChoice {
  Device device = Device::Cpu;
  // --dtype: every weight matrix converted to this on loading; without it each keeps the
  // file's type (quantised blocks included), except that CUDA stores f32 files as f16.
  std::optional<DType> weights;
  DType kv = DType::F32;       // the dtype the KV cache stores keys and values in
  // CPU: prefill multiplies in bf16 pairs where the CPU can (--f32-prefill turns it off).
  bool bf16_prefill = true;
};

// True when this build compiled the CUDA backend (nvcc found, CUDA != 0).
bool cuda_built();
// The cuBLAS library the CUDA backend opens when one is made; "" without a CUDA build.
std::string cublas_library();
// CUDA GPUs visible to this process: 0 without a CUDA build, a driver or a device.
int cuda_gpu_count();

// device: "cpu", "cuda" or "" (cuda when a GPU is visible and built for, else cpu).
// dtype: "f32", "f16", "bf16" or "" (the device's default: as the file stores them, f32
// files as f16 on cuda).
// kv_dtype: the same names for the KV cache, "" for the device's default (f16 on both:
// README, "KV dtype", says why on the cpu).
// Throws std::invalid_argument for an unknown name or a dtype the device cannot store.
// A cuda choice without a GPU is still a valid choice (info can plan for it).
DeviceChoice resolve_device(const std::string& device, const std::string& dtype,
                            const std::string& kv_dtype = "");

// The type a weight stored in the file as `stored` is kept in on the chosen device: what
// the backend's weight_type_for() answers, for plans made before any backend exists.
WeightType planned_weight_type(const DeviceChoice& choice, WeightType stored);

// Throws std::runtime_error when the choice is cuda and this build or machine has none.
std::unique_ptr<Backend> make_backend(const DeviceChoice& choice, int threads);
// The same from the flags' text (tests and tools that hold strings).
std::unique_ptr<Backend> make_backend(const std::string& device, const std::string& dtype,
                                      int threads);

// Device memory the chosen backend keeps for itself (workspaces, per-call scratch) when
// its largest call runs `tokens` tokens of model `c`, whose largest quantised matrix has
// `largest_quantized` weights (0: none). On the cpu, the bf16 copy of a prefill's input
// where it multiplies in bf16 pairs (not on all-f32 weights), else 0.
size_t backend_scratch_bytes(const DeviceChoice& choice, const ModelConfig& c, int tokens,
                             size_t largest_quantized = 0, bool all_f32 = false);

// Free and total bytes of GPU 0; false when there is none (or no CUDA build).
bool gpu_memory(size_t& free_bytes, size_t& total_bytes);
// "NVIDIA H100 80GB HBM3, 132 SMs"; "" when no GPU is visible.
std::string gpu_name();

}  // namespace kvlm
