// CudaBackend: device setup, memory (stream-ordered pool), host <-> device copies, weight
// upload in the weight dtype. The ops live in the files beside this one.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>

#include "kernels/cuda/cuda_backend.cuh"

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
    throw std::runtime_error(std::string("cublas: ") + op + ": " + cublasGetStatusString(s));
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
                          DType weights) {
  const size_t T = size_t(tokens);
  return kCublasWorkspace + kUploadChunk        // fixed
         + T * widest_input * dtype_bytes(weights)  // half_x_: matmul inputs rounded
         + T * head_dim * sizeof(float)             // gather_: compaction of one head
         + 2 * size_t(n_heads) * T * sizeof(float); // row_lse_ and partials_
}

DeviceOpCounts cuda_op_counts(const Backend& backend) {
  const auto* cuda = dynamic_cast<const CudaBackend*>(&backend);
  if (!cuda) throw std::invalid_argument("cuda_op_counts: " + backend.name() + " is not a CUDA backend");
  return cuda->op_counts();
}

std::unique_ptr<Backend> make_cuda_backend(DType weights) {
  return std::make_unique<CudaBackend>(weights);
}

CudaBackend::CudaBackend(DType weights) : weight_dtype_(weights) {
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
  cublas_check(cublasCreate(&cublas_), "cublasCreate");
  cublas_check(cublasSetStream(cublas_, stream_), "cublasSetStream");
  cublas_workspace_ = device_alloc(kCublasWorkspace, "the cuBLAS workspace");
  cublas_check(cublasSetWorkspace(cublas_, cublas_workspace_, kCublasWorkspace),
               "cublasSetWorkspace");
}

CudaBackend::~CudaBackend() {
  // Errors are ignored here: a destructor must not throw, and the process is
  // giving the device back anyway.
  cudaStreamSynchronize(stream_);
  for (Scratch* s : {&half_x_, &upload_, &gather_, &partials_, &row_lse_})
    if (s->ptr) cudaFreeAsync(s->ptr, stream_);
  for (StagingSlot& slot : staging_) {
    if (slot.host) cudaFreeHost(slot.host);
    if (slot.device) cudaFreeAsync(slot.device, stream_);
    if (slot.copied) cudaEventDestroy(slot.copied);
  }
  if (cublas_) cublasDestroy(cublas_);
  if (cublas_workspace_) cudaFreeAsync(cublas_workspace_, stream_);
  cudaStreamSynchronize(stream_);
  cudaStreamDestroy(stream_);
  cudaGetLastError();
}

std::string CudaBackend::name() const {
  return "cuda (" + device_name_ + ", " + std::to_string(multiprocessors_) + " SMs, weights " +
         dtype_name(weight_dtype_) + ")";
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

WeightMatrix CudaBackend::upload_matrix(const float* host, int rows, int cols) {
  const size_t n = size_t(rows) * cols;
  WeightMatrix w{device_alloc(n * dtype_bytes(weight_dtype_), "a weight matrix"), weight_dtype_,
                 rows, cols};
  if (weight_dtype_ == DType::F32) {
    upload(static_cast<float*>(const_cast<void*>(w.data)), host, n);
    return w;
  }
  // Through a float32 chunk on the device, converted there: no second host copy.
  const size_t chunk = std::min(n, kUploadChunk / sizeof(float));
  float* staged = static_cast<float*>(scratch(upload_, chunk * sizeof(float), "the upload buffer"));
  char* dst = static_cast<char*>(const_cast<void*>(w.data));
  for (size_t off = 0; off < n; off += chunk) {
    const size_t m = std::min(chunk, n - off);
    upload(staged, host + off, m);
    round_floats(dst + off * dtype_bytes(weight_dtype_), weight_dtype_, staged, m, "upload_matrix");
  }
  return w;
}

void CudaBackend::release_matrix(const WeightMatrix& w) { device_free(const_cast<void*>(w.data)); }

}  // namespace kvlm
