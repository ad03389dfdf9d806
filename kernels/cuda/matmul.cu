// matmul: out[T][n_out] = x[T][n_in] . w[n_out][n_in]^T, the projection of every layer.
//
// Decode (T = 1) reads every weight once and is bound by memory bandwidth: a warp per
// output row streams the row in 16-byte loads (8 halves or 4 floats per lane), several in
// flight, and sums in float32. Prefill (T > 1) is bound by arithmetic: the activations are
// rounded to the weight dtype and cuBLAS multiplies on tensor cores with float32
// accumulation and float32 output. Quantised parts have kernels of their own for decode
// (kernels/cuda/quant.cu) and are expanded to f16 for prefill.
#include <cstdint>

#include "kernels/cuda/cuda_backend.cuh"
#include "kernels/cuda/quant.h"

namespace kvlm {

namespace {

constexpr int kGemvThreads = 256;  // 8 warps, 8 rows per block

// 16 bytes of weights as floats.
__device__ inline void unpack(const uint4& p, float* f, float) {
  f[0] = __uint_as_float(p.x), f[1] = __uint_as_float(p.y);
  f[2] = __uint_as_float(p.z), f[3] = __uint_as_float(p.w);
}
__device__ inline void unpack(const uint4& p, float* f, __half) {
  const uint32_t words[4] = {p.x, p.y, p.z, p.w};
  for (int k = 0; k < 4; k++) {
    f[2 * k] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[k] & 0xffffu)));
    f[2 * k + 1] = __half2float(__ushort_as_half(static_cast<unsigned short>(words[k] >> 16)));
  }
}
__device__ inline void unpack(const uint4& p, float* f, __nv_bfloat16) {
  const uint32_t words[4] = {p.x, p.y, p.z, p.w};
  for (int k = 0; k < 4; k++) {  // a bfloat16 is the top half of a float32
    f[2 * k] = __uint_as_float(words[k] << 16);
    f[2 * k + 1] = __uint_as_float(words[k] & 0xffff0000u);
  }
}

// One warp per output row. `vectorised`: rows and x are 16-byte aligned and n_in is a
// multiple of the elements per 16 bytes; otherwise one element per lane at a time.
template <class W>
__global__ void __launch_bounds__(kGemvThreads)
    gemv_kernel(float* out, const float* x, const W* w, int n_in, int n_out, bool vectorised) {
  const int row = blockIdx.x * (kGemvThreads / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x & 31;
  if (row >= n_out) return;
  const W* wr = w + size_t(row) * n_in;
  float acc = 0;
  if (vectorised) {
    constexpr int kPer = 16 / sizeof(W);
    const int n_vec = n_in / kPer;
    const uint4* wv = reinterpret_cast<const uint4*>(wr);
#pragma unroll 4
    for (int v = lane; v < n_vec; v += 32) {
      float wf[kPer];
      unpack(__ldg(wv + v), wf, W{});
      const float4* xv = reinterpret_cast<const float4*>(x + size_t(v) * kPer);
#pragma unroll
      for (int k = 0; k < kPer / 4; k++) {
        const float4 xs = xv[k];
        acc += wf[4 * k] * xs.x + wf[4 * k + 1] * xs.y + wf[4 * k + 2] * xs.z + wf[4 * k + 3] * xs.w;
      }
    }
  } else {
    for (int i = lane; i < n_in; i += 32) acc += to_float(wr[i]) * x[i];
  }
  acc = warp_sum(acc);
  if (lane == 0) out[row] = acc;
}

// dst = src rounded to W (to nearest, ties to even).
template <class W>
__global__ void round_kernel(W* dst, const float* src, size_t n) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    dst[i] = from_float<W>(src[i]);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

cudaDataType cuda_type(DType t) {
  return t == DType::F32 ? CUDA_R_32F : t == DType::F16 ? CUDA_R_16F : CUDA_R_16BF;
}

}  // namespace

void CudaBackend::round_floats(void* dst, DType dtype, const float* src, size_t n, const char* op) {
  if (n == 0) return;
  with_storage_type(dtype, [&](auto tag) {
    using W = typename decltype(tag)::type;
    round_kernel<W><<<blocks_for(n, 256), 256, 0, stream_>>>(static_cast<W*>(dst), src, n);
  });
  launched(op);
}

void CudaBackend::matmul(float* out, const float* x, const WeightMatrix& w, int T) {
  int first_row = 0;
  for (const WeightRows& part : w.parts) {
    matmul_part(out + first_row, w.rows, x, part, w.cols, T);
    first_row += part.rows;
  }
}

void CudaBackend::matmul_part(float* out, int out_stride, const float* x, const WeightRows& part,
                              int n_in, int T) {
  const int n_out = part.rows;
  if (T == 0 || n_out == 0) return;
  if (T == 1 && is_quantized(part.type)) {
    cuda_quant::matvec(part.type, part.data, n_out, n_in, x, out, stream_);
    launched("matmul (quantised gemv)");
    return;
  }
  if (T == 1) {
    const DType dtype = float_dtype(part.type);
    const int per16 = int(16 / dtype_bytes(dtype));
    const bool vectorised = n_in % per16 == 0 && aligned16(x) && aligned16(part.data);
    const int blocks = (n_out + kGemvThreads / 32 - 1) / (kGemvThreads / 32);
    with_storage_type(dtype, [&](auto tag) {
      using W = typename decltype(tag)::type;
      gemv_kernel<W><<<blocks, kGemvThreads, 0, stream_>>>(out, x, static_cast<const W*>(part.data),
                                                           n_in, n_out, vectorised);
    });
    launched("matmul (gemv)");
    return;
  }
  // Prefill: a quantised part is expanded to f16 first, then tensor cores multiply.
  const void* weights = part.data;
  DType dtype = float_dtype(part.type);
  if (is_quantized(part.type)) {
    const size_t n = size_t(n_out) * n_in;
    weights = scratch(dequantized_, n * sizeof(__half), "matmul (dequantised weights)");
    cuda_quant::dequantize(part.type, part.data, n, const_cast<void*>(weights), DType::F16,
                           stream_);
    launched("matmul (dequantise)");
    dtype = DType::F16;
  }
  const void* xin = x;
  if (dtype != DType::F32) {
    const size_t n = size_t(T) * n_in;
    void* rounded = scratch(half_x_, n * dtype_bytes(dtype), "matmul activations");
    round_floats(rounded, dtype, x, n, "matmul (rounding activations)");
    xin = rounded;
  }
  // Column-major view: out^T [n_out x T] = (w viewed as [n_in x n_out])^T . x^T [n_in x T];
  // out's rows are out_stride apart (this part's columns of the whole matrix's output).
  const float alpha = 1.0f, beta = 0.0f;
  cublas_check(cublas().gemm_ex(cublas_, CUBLAS_OP_T, CUBLAS_OP_N, n_out, T, n_in, &alpha, weights,
                            cuda_type(dtype), n_in, xin, cuda_type(dtype), n_in, &beta, out,
                            CUDA_R_32F, out_stride, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "matmul (cublasGemmEx)");
  launched("matmul (cublasGemmEx)");
}

}  // namespace kvlm
