// The kernels of each weight type, for quant.cpp's dispatch (kernels/cpu/quant.h is the
// interface). The 32-block and float types live in quant.cpp, the k-quants in quant_k.cpp.
#pragma once
#include "kernels/cpu/quant.h"

namespace kvlm::quant::detail {

struct TypeKernels {
  void (*dequantize)(const void* src, float* dst, int64_t n);
  DotFn scalar;
  DotFn avx2;  // nullptr when the type has no AVX2 version
  // The rebuild as float32 with AVX2 (bit for bit the scalar one's).
  void (*dequantize_avx2)(const void* src, float* dst, int64_t n);
  DotRowsFn avx2_rows = nullptr;  // kDotRows rows at once with AVX2, where written
  // The float types' dots_function and weighted_sums_function.
  DotsFn dots_scalar = nullptr, dots_avx2 = nullptr, dots_avx512 = nullptr;
  WeightedSumsFn weighted_sums_scalar = nullptr, weighted_sums_avx2 = nullptr,
                 weighted_sums_avx512 = nullptr;
};

// How far ahead of the bytes being read the decode kernels ask for weights: about the
// latency of memory times its bandwidth on one core, with some margin. Decode reads each
// weight once, from memory; the hardware prefetcher alone left a single Q8_0 row at 21-23
// GB/s on two threads where asking 1 KiB ahead reached 24-30, 2 KiB as much
// (tests/bench/quant_dot.cpp).
constexpr size_t kPrefetchBytes = 2048;

// quant_k.cpp
extern const TypeKernels kQ2_K, kQ3_K, kQ4_K, kQ5_K, kQ6_K;

// quant.cpp: one row of n activations as BlockQ8_32 (n a multiple of 32) or BlockQ8_256 (of
// 256), without SIMD. quantize_activations runs the AVX2 versions where it can; they write
// the same bytes.
void quantize_q8_32_scalar(const float* x, void* out, int n);
void quantize_q8_256_scalar(const float* x, void* out, int n);

}  // namespace kvlm::quant::detail
