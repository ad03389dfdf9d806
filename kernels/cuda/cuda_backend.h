// The CUDA backend as seen from code compiled without nvcc: a factory and device queries.
// The class itself (kernels/cuda/cuda_backend.cuh) stays inside the .cu files. Present only
// in builds with KVLM_CUDA (nvcc found and CUDA != 0).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "backend.h"

namespace kvlm {

// The cuBLAS library a CUDA backend opens when it is made (e.g. "libcublas.so.13"), and
// opening it without a GPU (a CUDA backend's constructor does it too): throws
// std::runtime_error naming the library or the missing symbol.
const char* cublas_library_name();
void open_cublas_library();

// GPUs this process can use; 0 when there is none or no usable driver.
int cuda_device_count();

struct CudaDeviceInfo {
  std::string name;
  int multiprocessors = 0;
  size_t free_bytes = 0, total_bytes = 0;
};
// Device 0; throws std::runtime_error when no GPU is visible.
CudaDeviceInfo cuda_device_info();

// Device memory the backend keeps beside weights, KV and activations for a context of
// `tokens` tokens, which bounds both its largest call and its cache (compaction and decode
// attention take scratch that grows with the cache): the cuBLAS workspace, the upload
// chunk and the per-call scratch.
// `rounded_to`: the dtype prefill rounds matmul inputs to; `dequantized`: the weights of the
// largest quantised matrix part (prefill dequantises it to f16), 0 when none.
size_t cuda_scratch_bytes(int tokens, int widest_input, int n_heads, int head_dim,
                          DType rounded_to, size_t dequantized);

// What a CUDA backend has issued since it was made, counted where it happens: how many
// operations a forward pass costs, for tests that bound them and for speed work.
struct DeviceOpCounts {
  uint64_t launches = 0;     // kernels, cuBLAS calls and device-to-device copies on the stream
  uint64_t stagings = 0;     // small host arrays copied through the pinned staging ring
  uint64_t uploads = 0;      // upload(): host floats to a device buffer
  uint64_t downloads = 0;    // download(): device floats to the host (each waits for the stream)
  uint64_t syncs = 0;        // host waits on the GPU: every download, a reused staging slot, ...
  uint64_t allocations = 0;  // device (and pinned host) allocations
  uint64_t frees = 0;
};
// The counts of `backend`; throws std::invalid_argument when it is not a CUDA backend.
DeviceOpCounts cuda_op_counts(const Backend& backend);

// A backend on device 0 (convert_to: as CudaBackend's constructor says). Throws
// std::runtime_error naming the CUDA error when the device cannot be set up.
std::unique_ptr<Backend> make_cuda_backend(std::optional<WeightType> convert_to);

}  // namespace kvlm
