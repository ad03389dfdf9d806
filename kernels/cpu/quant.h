// Weight types on the CPU: every type rebuilt as float32 (the reference), activations
// quantised for the integer dot products, and one dot product per weight type.
//
// A matmul over a quantised matrix quantises its input rows once (quantize_activations,
// in the format act_format() names) and then takes, for every weight row, the dot
// product of that row's blocks with the quantised input: integer multiply-adds inside a
// block, one float multiply per block. Float weights (F32, F16, BF16) read float32 input.
//
// Each dot product has a scalar version (the reference the tests hold the others to) and
// versions for wider CPUs; dot_function() picks the widest this CPU runs.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "weight_type.h"

namespace kvlm::quant {

// What a weight type's dot product reads as its second operand.
enum class ActFormat { F32, Q8_32, Q8_256 };
ActFormat act_format(WeightType type);
// Bytes of one row of n activations (n a whole number of the format's blocks).
size_t act_row_bytes(ActFormat format, int n);
// One row of n activations into `format` (for F32 a copy). Deterministic: every CPU level
// produces the same bytes.
void quantize_activations(ActFormat format, const float* x, void* out, int n);

// sum over i < n of w[i] * x[i]: w is one row of weights of the function's type, x one row
// of activations in act_format(type). n is a whole number of blocks.
using DotFn = float (*)(const void* w, const void* x, int n);

// The instruction sets a dot product is written for, narrowest first. Avx2 is AVX2 with FMA
// and F16C; Avx512 adds AVX-512 F, BW, DQ and VL.
enum class SimdLevel { Scalar, Avx2, Avx512 };
const char* simd_level_name(SimdLevel level);
// The levels this CPU can run (always Scalar first).
std::vector<SimdLevel> supported_levels();
// `type`'s dot product at `level`; a level without a version of its own for `type` gives
// the next narrower one.
DotFn dot_function(WeightType type, SimdLevel level);
// The widest version this CPU runs.
DotFn dot_function(WeightType type);

// kDotRows consecutive weight rows (row_bytes apart) against one row of activations:
// out[r] = dot(row r, x). Each block of x is loaded once for all the rows, and the rows'
// sums run side by side (decode's matrix-vector products take rows 4 at a time).
constexpr int kDotRows = 4;
using DotRowsFn = void (*)(const void* w, size_t row_bytes, const void* x, int n, float* out);
// `type`'s version at `level`, or nullptr where none was written (scalar, float types and
// k-quants: their rows go one dot product at a time).
DotRowsFn dot_rows_function(WeightType type, SimdLevel level);
// The widest version this CPU runs (or nullptr).
DotRowsFn dot_rows_function(WeightType type);

// A few float32 rows x against rows of a float type (F32, F16, BF16), all pairs:
// out[i * ld_out + j] = sum over t < n of w_j[t] * x_i[t] for i < n_x, j < n_rows, with x's
// rows n floats apart and w's row_bytes apart. Decode attention's scores: a GQA group's
// query rows against a block of 16-bit keys, each key widened once for up to 4 query rows
// and read where it lies (no float32 copy of the block).
using DotsFn = void (*)(const void* w, size_t row_bytes, int n_rows, const float* x, int n_x,
                        int n, float* out, int ld_out);
// `type`'s version at `level` (std::invalid_argument for a quantised type).
DotsFn dots_function(WeightType type, SimdLevel level);
// The widest version this CPU runs.
DotsFn dots_function(WeightType type);

// The other half of decode attention: rows of a float type added up with a weight per x
// row, acc[i * n + t] += sum over j < n_rows of p[i * ld_p + j] * w_j[t] for i < n_x, t < n
// (a GQA group's outputs += its probabilities times a block of 16-bit values, each value
// widened once in registers for up to 4 rows).
using WeightedSumsFn = void (*)(const void* w, size_t row_bytes, int n_rows, const float* p,
                                int ld_p, int n_x, int n, float* acc);
// `type`'s version at `level` (std::invalid_argument for a quantised type).
WeightedSumsFn weighted_sums_function(WeightType type, SimdLevel level);
// The widest version this CPU runs.
WeightedSumsFn weighted_sums_function(WeightType type);

// Rebuilds n weights (a whole number of blocks) of `type` at src as float32, bit for bit
// the same at every level; the first form at the widest level this CPU runs.
void dequantize_row(WeightType type, const void* src, float* dst, int64_t n);
void dequantize_row(WeightType type, const void* src, float* dst, int64_t n, SimdLevel level);

}  // namespace kvlm::quant
