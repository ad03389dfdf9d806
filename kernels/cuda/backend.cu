// CudaBackend: device setup, memory (stream-ordered pool), host <-> device copies, weight
// upload in the weight dtype. The ops live in the files beside this one.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cpu/quant.h"

namespace kvlm {

namespace {

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", bytes / double(1 << 30));
  return buf;
}

// What a pool may keep of freed memory between synchronisations: small churn (per-step
// observation buffers) stays cheap, while a compressed KV cache still gives its bytes back.
constexpr uint64_t kPoolKeepBytes = uint64_t(1) << 30;
constexpr size_t kCublasWorkspace = size_t(32) << 20;  // NVIDIA's suggestion for Hopper
constexpr size_t kUploadChunk = size_t(64) << 20;      // float32 bytes per upload step

}  // namespace

void cuda_check(cudaError_t e, const char* op) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("cuda: ") + op + ": " + cudaGetErrorString(e));
}

void cublas_check(cublasStatus_t s, const char* op) {
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("cublas: ") + op + ": " + cublas().status_string(s));
}

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // no driver or no device: not an error worth keeping
    return 0;
  }
  return n;
}

CudaDeviceInfo cuda_device_info() {
  if (cuda_device_count() == 0) throw std::runtime_error("cuda: no CUDA GPU is visible");
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  CudaDeviceInfo info;
  info.name = prop.name;
  info.multiprocessors = prop.multiProcessorCount;
  cuda_check(cudaSetDevice(0), "cudaSetDevice");
  cuda_check(cudaMemGetInfo(&info.free_bytes, &info.total_bytes), "cudaMemGetInfo");
  return info;
}

size_t cuda_scratch_bytes(int tokens, int widest_input, int n_heads, int head_dim,
                          DType rounded_to, size_t dequantized) {
  const size_t T = size_t(tokens);
  const size_t decode_splits = (T + kDecodeMinChunk - 1) / kDecodeMinChunk;
  return kCublasWorkspace + kUploadChunk        // fixed
         + dequantized * sizeof(__half)             // dequantized_: a quantised part as f16
         + T * widest_input * dtype_bytes(rounded_to)  // half_x_: matmul inputs rounded
         + T * widest_input * 2                     // quantized_rows_: token rows (< 2 B a weight)
         + T * head_dim * sizeof(float)             // gather_: compaction of one head
         + size_t(n_heads) * T * sizeof(float)      // row_lse_
         + size_t(n_heads) * decode_splits * (head_dim + 2) * sizeof(float);  // partials_
}

DeviceOpCounts cuda_op_counts(const Backend& backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
  if (!cuda) throw std::invalid_argument("cuda_op_counts: " + backend.name() + " is not a CUDA backend");
  return cuda->op_counts();
}

std::unique_ptr<Backend> make_cuda_backend(std::optional<WeightType> convert_to) {
  return std::make_unique<CudaBackend>(convert_to);
}

CudaBackend::CudaBackend(std::optional<WeightType> convert_to) : convert_to_(convert_to) {
  if (convert_to && is_quantized(*convert_to))
    throw std::invalid_argument(std::string("cuda: weights convert to f32, f16 or bf16, not ") +
                                weight_type_name(*convert_to));
  if (cuda_device_count() == 0) throw std::runtime_error("cuda: no CUDA GPU is visible");
  const char* sync = std::getenv("KVLM_CUDA_SYNC");
  sync_each_op_ = sync && std::strcmp(sync, "0") != 0;
  cuda_check(cudaSetDevice(device_), "cudaSetDevice");
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, device_), "cudaGetDeviceProperties");
  device_name_ = prop.name;
  multiprocessors_ = prop.multiProcessorCount;
  cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  cuda_check(cudaDeviceGetDefaultMemPool(&pool_, device_), "cudaDeviceGetDefaultMemPool");
  uint64_t keep = kPoolKeepBytes;
  cuda_check(cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep),
             "cudaMemPoolSetAttribute");
  cublas_check(cublas().create(&cublas_), "cublasCreate");
  cublas_check(cublas().set_stream(cublas_, stream_), "cublasSetStream");
  cublas_workspace_ = device_alloc(kCublasWorkspace, "the cuBLAS workspace");
  cublas_check(cublas().set_workspace(cublas_, cublas_workspace_, kCublasWorkspace),
               "cublasSetWorkspace");
}

CudaBackend::~CudaBackend() {
  // Errors are ignored here: a destructor must not throw, and the process is
  // giving the device back anyway.
  cudaStreamSynchronize(stream_);
  for (Scratch* s : {&half_x_, &dequantized_, &quantized_rows_, &upload_, &gather_, &partials_,
                     &row_lse_})
    if (s->ptr) cudaFreeAsync(s->ptr, stream_);
  for (StagingSlot& slot : staging_) {
    if (slot.host) cudaFreeHost(slot.host);
    if (slot.device) cudaFreeAsync(slot.device, stream_);
    if (slot.copied) cudaEventDestroy(slot.copied);
  }
  if (cublas_) cublas().destroy(cublas_);
  if (cublas_workspace_) cudaFreeAsync(cublas_workspace_, stream_);
  cudaStreamSynchronize(stream_);
  cudaStreamDestroy(stream_);
  cudaGetLastError();
}

std::string CudaBackend::name() const {
  return "cuda (" + device_name_ + ", " + std::to_string(multiprocessors_) + " SMs, weights " +
         (convert_to_ ? weight_type_name(*convert_to_) : "as stored") + ")";
}

void* CudaBackend::device_alloc(size_t bytes, const char* what) {
  bytes = std::max<size_t>(bytes, 256);  // a valid, distinct pointer even for empty buffers
  counts_.allocations++;
  void* p = nullptr;
  cudaError_t e = cudaMallocAsync(&p, bytes, stream_);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    // The pool may still hold freed memory it has not returned: return it and try again.
    counts_.syncs++;
    cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    cuda_check(cudaMemPoolTrimTo(pool_, 0), "cudaMemPoolTrimTo");
    e = cudaMallocAsync(&p, bytes, stream_);
  }
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    size_t free_bytes = 0, total_bytes = 0;
    cudaMemGetInfo(&free_bytes, &total_bytes);
    throw OutOfMemory("cuda: out of memory allocating " + std::string(what) + " (" + gib(bytes) +
                      "; " + gib(free_bytes) + " free of " + gib(total_bytes) + ")");
  }
  cuda_check(e, "cudaMallocAsync");
  return p;
}

// Frees run in destructors (buffers, models, caches), so they must not throw. A fault left
// by an earlier kernel is sticky and the next checked call reports it; what else can fail
// here (the runtime already shutting down at exit) is not worth a crash.
void CudaBackend::device_free(void* p) {
  if (!p) return;
  counts_.frees++;
  if (cudaFreeAsync(p, stream_) != cudaSuccess) cudaGetLastError();
}

void* CudaBackend::scratch(Scratch& s, size_t bytes, const char* what) {
  if (s.bytes < bytes) {
    device_free(s.ptr);
    s.ptr = nullptr;
    s.bytes = 0;
    s.ptr = device_alloc(bytes, what);
    s.bytes = bytes;
  }
  return s.ptr;
}

const void* CudaBackend::stage_bytes(const void* host, size_t bytes) {
  if (bytes == 0) return nullptr;
  StagingSlot& slot = staging_[next_slot_];
  next_slot_ = (next_slot_ + 1) % kStagingSlots;
  counts_.stagings++;
  if (slot.in_use) {  // the host slot is free again once its last copy has run
    const cudaError_t copied = cudaEventQuery(slot.copied);
    if (copied == cudaErrorNotReady) {
      counts_.syncs++;
      cuda_check(cudaEventSynchronize(slot.copied), "staging a host array");
    } else {
      cuda_check(copied, "staging a host array");
    }
  }
  if (slot.bytes < bytes) {
    const size_t grown = std::max({bytes, 2 * slot.bytes, size_t(4096)});
    if (slot.host) cuda_check(cudaFreeHost(slot.host), "cudaFreeHost");
    device_free(slot.device);
    slot.host = slot.device = nullptr;
    slot.bytes = 0;
    counts_.allocations++;
    cuda_check(cudaMallocHost(&slot.host, grown), "cudaMallocHost (staging)");
    slot.device = device_alloc(grown, "a staging buffer");
    slot.bytes = grown;
    if (!slot.copied)
      cuda_check(cudaEventCreateWithFlags(&slot.copied, cudaEventDisableTiming), "cudaEventCreate");
  }
  std::memcpy(slot.host, host, bytes);
  cuda_check(cudaMemcpyAsync(slot.device, slot.host, bytes, cudaMemcpyHostToDevice, stream_),
             "staging a host array");
  cuda_check(cudaEventRecord(slot.copied, stream_), "cudaEventRecord");
  slot.in_use = true;
  return slot.device;
}

void CudaBackend::launched(const char* op) {
  counts_.launches++;
  cuda_check(cudaGetLastError(), op);
  if (sync_each_op_) {
    counts_.syncs++;
    cuda_check(cudaStreamSynchronize(stream_), op);
  }
}

int CudaBackend::blocks_for(size_t n, int threads) const {
  const size_t needed = (n + threads - 1) / threads;
  return int(std::max<size_t>(1, std::min<size_t>(needed, size_t(multiprocessors_) * 32)));
}

float* CudaBackend::alloc(size_t n_floats) {
  return static_cast<float*>(device_alloc(n_floats * sizeof(float), "a buffer"));
}

void CudaBackend::release(float* p) { device_free(p); }

void CudaBackend::upload(float* dst, const float* host_src, size_t n) {
  // From pageable memory the copy returns once the source has been read, so the caller
  // may free host_src right away.
  counts_.uploads++;
  cuda_check(cudaMemcpyAsync(dst, host_src, n * sizeof(float), cudaMemcpyHostToDevice, stream_),
             "upload");
}

void CudaBackend::download(float* host_dst, const float* src, size_t n) {
  counts_.downloads++;
  counts_.syncs++;
  cuda_check(cudaMemcpyAsync(host_dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, stream_),
             "download");
  cuda_check(cudaStreamSynchronize(stream_),
             sync_each_op_ ? "download"
                           : "download (an earlier kernel may have failed; KVLM_CUDA_SYNC=1 names it)");
}

WeightType CudaBackend::weight_type_for(WeightType stored) const {
  if (convert_to_) return *convert_to_;
  return stored == WeightType::F32 ? WeightType::F16 : stored;  // tensor cores read 16 bits
}

// All parts go into one allocation, back to back, and neighbours of one type become one
// part: a fused projection of a file that stores its pieces alike is one kernel, as if it
// had been one tensor. Parts of other types start on 256 bytes (cuBLAS and 16-byte loads).
WeightMatrix CudaBackend::upload_weights(const std::vector<WeightRows>& parts, int cols,
                                         bool /*host_outlives: the device copies anyway*/) {
  auto part_bytes = [&](const WeightRows& p) {
    return size_t(p.rows) * weight_row_bytes(weight_type_for(p.type), cols);
  };
  size_t total = 0;
  for (size_t i = 0; i < parts.size(); i++) {
    const bool joins = i > 0 && weight_type_for(parts[i].type) == weight_type_for(parts[i - 1].type);
    if (!joins) total = (total + 255) / 256 * 256;
    total += part_bytes(parts[i]);
  }
  WeightMatrix m;
  m.cols = cols;
  m.storage = device_alloc(total, "a weight matrix");
  size_t offset = 0;
  for (size_t i = 0; i < parts.size(); i++) {
    const WeightRows& p = parts[i];
    const WeightType type = weight_type_for(p.type);
    m.rows += p.rows;
    if (!m.parts.empty() && m.parts.back().type == type) {
      m.parts.back().rows += p.rows;
    } else {
      offset = (offset + 255) / 256 * 256;
      m.parts.push_back({static_cast<char*>(m.storage) + offset, type, 0});
      m.parts.back().rows = p.rows;
    }
    char* dst = static_cast<char*>(m.storage) + offset;
    offset += part_bytes(p);
    if (p.rows == 0) continue;
    if (type == p.type) {
      counts_.uploads++;
      cuda_check(cudaMemcpyAsync(dst, p.data, part_bytes(p), cudaMemcpyHostToDevice, stream_),
                 "upload_weights");
      continue;
    }
    // A conversion: whole rows at a time through a float32 chunk on the device, rounded
    // there to the stored type (the stream orders each chunk's copy after the last rounding).
    const size_t src_row = weight_row_bytes(p.type, cols), dst_row = weight_row_bytes(type, cols);
    const int chunk_rows = int(std::max<size_t>(1, kUploadChunk / sizeof(float) / cols));
    std::vector<float> host(size_t(std::min(chunk_rows, p.rows)) * cols);
    float* staged = static_cast<float*>(scratch(upload_, host.size() * sizeof(float), "the upload buffer"));
    for (int r0 = 0; r0 < p.rows; r0 += chunk_rows) {
      const int n = std::min(chunk_rows, p.rows - r0);
      for (int r = 0; r < n; r++)
        quant::dequantize_row(p.type, static_cast<const char*>(p.data) + size_t(r0 + r) * src_row,
                              host.data() + size_t(r) * cols, cols);
      upload(staged, host.data(), size_t(n) * cols);
      round_floats(dst + size_t(r0) * dst_row, float_dtype(type), staged, size_t(n) * cols,
                   "upload_weights");
    }
  }
  return m;
}

void CudaBackend::release_matrix(const WeightMatrix& w) { device_free(w.storage); }

}  // namespace kvlm
