// Weight matrices kept in their file's format on the GPU (src/weight_type.h lists the
// types, kernels/quant_blocks.h the block layouts): the CUDA twins of kernels/cpu/quant.h.
//
// Decode reads every weight once per token, so the matrix-vector product reads the
// quantised bytes, rebuilds the weights in registers and multiplies them by the float32
// activations directly (no quantised activations, unlike the CPU). Prefill multiplies
// many tokens at once, so it rebuilds the matrix as half (or bfloat16) and hands it to
// cuBLAS. Both rebuild every weight bit for bit as kvlm::quant::dequantize_row does.
//
// Pointers are device pointers; `stream` is a cudaStream_t (nullptr: the default stream).
// Calls only queue work. Bad arguments throw std::invalid_argument, CUDA errors
// std::runtime_error. Present only in builds with KVLM_CUDA.
#pragma once
#include <cstdint>

#include "backend.h"
#include "weight_type.h"

namespace kvlm::cuda_quant {

// y[r] = sum over c of W[r][c] * x[c] for r < rows, in float32. W is `rows` rows of
// weight_row_bytes(type, cols) bytes each, back to back; cols is a whole number of blocks.
// For the block types W must be 4-byte and x 16-byte aligned (cudaMalloc's pointers are);
// the float types need only their elements' alignment, and take any cols. One kernel launch.
void matvec(WeightType type, const void* w, int rows, int cols, const float* x, float* y,
            void* stream);

// The first n weights of `w` (a whole number of blocks) rebuilt into `out` as n values of
// `out_dtype`: float32 exactly as the CPU's dequantize_row, or that value rounded once to
// half or bfloat16. For the block types w must be 4-byte and out 16-byte aligned. One
// kernel launch.
void dequantize(WeightType type, const void* w, int64_t n, void* out, DType out_dtype,
                void* stream);

}  // namespace kvlm::cuda_quant
