// CudaBackend: the Backend ops as CUDA kernels, one file per op family beside its CPU twin.
//
// Everything runs in order on one stream, so a buffer freed or reused by a later op is
// never touched by an earlier one still running. Activations and norm weights are float32
// device buffers (the Backend contract: float* with row arithmetic); weight matrices and
// KV cache rows are float16 or bfloat16 (or float32), read with float32 accumulation;
// quantised weight matrices keep ggml's blocks (kernels/cuda/quant.h). Every CUDA and cuBLAS call is checked: a failure throws std::runtime_error
// naming the op and CUDA's message. With KVLM_CUDA_SYNC=1 in the environment each kernel
// is waited for, so an asynchronous fault is reported by the op that caused it.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <optional>
#include <string>

#include "backend.h"
#include "merge_backend.h"
#include "kernels/cuda/cuda_backend.h"

namespace kvlm {

void cuda_check(cudaError_t e, const char* op);
void cublas_check(cublasStatus_t s, const char* op);

// The cuBLAS calls kvlm makes, from the library opened on first use (cublas_library.cu).
struct CublasLibrary {
  cublasStatus_t (*create)(cublasHandle_t*);
  cublasStatus_t (*destroy)(cublasHandle_t);
  cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t);
  cublasStatus_t (*set_workspace)(cublasHandle_t, void*, size_t);
  cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int,
                            const void*, const void*, cudaDataType, int, const void*, cudaDataType,
                            int, const void*, void*, cudaDataType, int, cublasComputeType_t,
                            cublasGemmAlgo_t);
  const char* (*status_string)(cublasStatus_t);
};
// Throws std::runtime_error naming the library when it cannot be opened.
const CublasLibrary& cublas();

class CudaBackend final : public Backend, public MergeBackend {
 public:
  // Weight matrices keep their file's type (f32 files become f16), or are all converted
  // to `convert_to` (f32, f16 or bf16).
  explicit CudaBackend(std::optional<WeightType> convert_to);
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;
  std::string name() const override;
  const DeviceOpCounts& op_counts() const { return counts_; }

  float* alloc(size_t n_floats) override;
  void release(float* p) override;
  void upload(float* dst, const float* host_src, size_t n) override;
  void download(float* host_dst, const float* src, size_t n) override;
  WeightType weight_type_for(WeightType stored) const override;
  WeightMatrix upload_weights(const std::vector<WeightRows>& parts, int cols,
                              bool host_outlives) override;
  void release_matrix(const WeightMatrix& w) override;

  void embedding(float* out, const WeightMatrix& table, const int32_t* ids, int T) override;
  void rmsnorm(float* out, const float* x, const float* weight, int T, int dim,
               float eps) override;
  void matmul(float* out, const float* x, const WeightMatrix& w, int T) override;
  void add_rmsnorm(float* out, float* x, const float* y, const float* weight, int T, int dim,
                   float eps) override;
  void rope_qk(float* q_out, float* qkv, int first_position, const float* inv_freq, int T,
               int n_heads, int n_kv_heads, int head_dim, int rope_dim,
               bool adjacent_pairs) override;
  void swiglu(float* out, const float* gate_up, int T, int ffn_dim) override;
  void attention(float* out, const float* q, const std::vector<KVHeadView>& kv, int T,
                 int n_heads, int head_dim) override;
  void attention_scores(float* out, int stride, const float* q, const std::vector<KVHeadView>& kv,
                        int T, int first_row, int n_rows, int n_heads, int head_dim,
                        bool average) override;
  void key_norms(float* out, const KVHeadView& head, int head_dim) override;
  void newest_key_norms(float* out, const std::vector<KVHeadView>& kv, int head_dim) override;
  void pair_angles(float* out, DType dtype, const void* a, const int32_t* a_rows, const void* b,
                   const int32_t* b_rows, int n, int head_dim) override;
  void merge_pair(void* dir, float* mag_a, float* mag_b, DType dtype, const void* a,
                  const int32_t* a_rows, const void* b, const int32_t* b_rows, int n, int head_dim,
                  float t) override;
  void restore_rows(void* out, const int32_t* out_rows, DType dtype, const void* dir,
                    const float* mag, int n, int head_dim) override;
  void append_kv(const std::vector<KVAppendTarget>& dst, DType dtype, const float* keys,
                 const float* values, int row_stride, int head_dim, int T) override;
  void copy_rows(void* dst, size_t dst_stride, const void* src, size_t src_stride, int rows,
                 size_t row_bytes) override;
  void compact_rows(void* buf, const int32_t* keep, int n, size_t row_bytes) override;
  void rotate_keys(void* keys, DType dtype, const int32_t* shifts, int n, int head_dim,
                   const float* inv_freq, int rope_dim, bool adjacent_pairs) override;
  double read_bandwidth(size_t bytes) override;

 private:
  // A device buffer reused from call to call, grown when a call needs more.
  struct Scratch {
    void* ptr = nullptr;
    size_t bytes = 0;
  };
  // Small host arrays (token ids, positions, row lists, cache views) reach the device
  // through a ring of pinned host slots, each with a device twin. A slot is refilled only
  // once the copy out of it has finished; the ring's depth makes that wait rare, so ops
  // queue up without waiting for the GPU.
  struct StagingSlot {
    void* host = nullptr;
    void* device = nullptr;
    size_t bytes = 0;
    cudaEvent_t copied = nullptr;
    bool in_use = false;
  };
  static constexpr int kStagingSlots = 64;

  void* device_alloc(size_t bytes, const char* what);
  void device_free(void* p);
  void* scratch(Scratch& s, size_t bytes, const char* what);
  const void* stage_bytes(const void* host, size_t bytes);
  template <class T>
  const T* stage(const T* host, size_t n) {
    return static_cast<const T*>(stage_bytes(host, n * sizeof(T)));
  }
  // Checks a kernel launch (and, with KVLM_CUDA_SYNC=1, its completion).
  void launched(const char* op);
  // Blocks for a grid-stride loop over n elements.
  int blocks_for(size_t n, int threads) const;
  // dst (n values of dtype) = src rounded to dtype.
  void round_floats(void* dst, DType dtype, const float* src, size_t n, const char* op);

  // out [T][out_stride] columns [0, part.rows) = x . part^T (matmul, one part of a matrix).
  void matmul_part(float* out, int out_stride, const float* x, const WeightRows& part, int n_in,
                   int T);

  void decode_attention(float* out, const float* q, const KVHeadView* kv, DType dtype, int n_kv,
                        int max_len, long long total_len, int n_heads, int head_dim);
  void prefill_attention(float* out, const float* q, const KVHeadView* kv, DType dtype, int n_kv,
                         int T, int n_heads, int head_dim);

  std::optional<WeightType> convert_to_;
  int device_ = 0;
  std::string device_name_;
  int multiprocessors_ = 1;
  bool sync_each_op_ = false;
  DeviceOpCounts counts_;
  cudaStream_t stream_ = nullptr;
  cudaMemPool_t pool_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  StagingSlot staging_[kStagingSlots];
  int next_slot_ = 0;
  Scratch half_x_;          // matmul: activations rounded to the weight dtype
  Scratch dequantized_;     // matmul (prefill): a quantised part as f16 for cuBLAS
  Scratch quantized_rows_;  // embedding: a quantised table's rows of this call's tokens
  Scratch upload_;          // upload_weights: float32 chunk on its way to the weight dtype
  Scratch gather_;          // compact_rows: kept rows before they move back
  Scratch partials_;        // decode attention: per-split partial outputs
  Scratch row_lse_;         // attention_scores: log-sum-exp of every query row
};

// ---- shared device helpers -------------------------------------------------------------

constexpr float kLog2e = 1.4426950408889634f;
// Decode attention cuts a head's keys into chunks of at least this many; its per-chunk
// partials are scratch that cuda_scratch_bytes plans for.
constexpr int kDecodeMinChunk = 64;

template <class T>
__device__ inline T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ inline float warp_max(float v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// The sum over a block (blockDim.x a multiple of 32), returned to every thread.
// `shared` holds one value per warp.
template <class T>
__device__ inline T block_sum(T v, T* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();  // an earlier call may still be reading `shared`
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  return warp_sum(lane < n_warps ? shared[lane] : T(0));
}

__device__ inline float to_float(float v) { return v; }
__device__ inline float to_float(__half v) { return __half2float(v); }
__device__ inline float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <class T>
__device__ inline T from_float(float v);
template <>
__device__ inline float from_float<float>(float v) { return v; }
template <>
__device__ inline __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ inline __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Calls f(Tag<T>{}) with T the C++ type that stores `dtype` (weights or KV rows).
template <class T>
struct Tag {
  using type = T;
};
template <class F>
void with_storage_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::F32: f(Tag<float>{}); break;
    case DType::F16: f(Tag<__half>{}); break;
    case DType::BF16: f(Tag<__nv_bfloat16>{}); break;
  }
}

}  // namespace kvlm
