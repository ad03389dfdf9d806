// How a weight matrix's numbers are stored: float types, or ggml's block formats, where a
// block of 32 (or a super-block of 256) weights shares scales and each weight keeps a few
// bits. Weights stay in the format of the file they came from, so a 4-bit model reads 4.5
// bits per weight in every decode step instead of 32. The block layouts are in
// kernels/quant_blocks.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kvlm {

enum class WeightType : uint8_t {
  F32, F16, BF16,                 // one value per element
  Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,   // blocks of 32
  Q2_K, Q3_K, Q4_K, Q5_K, Q6_K,   // super-blocks of 256 (the k-quants)
};
constexpr int kWeightTypes = 13;

struct WeightTypeInfo {
  const char* name;
  int block_elems;  // weights per block (1 for the float types)
  int block_bytes;  // bytes per block
};

constexpr WeightTypeInfo weight_type_info(WeightType t) {
  constexpr WeightTypeInfo table[kWeightTypes] = {
      {"f32", 1, 4},     {"f16", 1, 2},     {"bf16", 1, 2},    {"q4_0", 32, 18},
      {"q4_1", 32, 20},  {"q5_0", 32, 22},  {"q5_1", 32, 24},  {"q8_0", 32, 34},
      {"q2_k", 256, 84}, {"q3_k", 256, 110}, {"q4_k", 256, 144}, {"q5_k", 256, 176},
      {"q6_k", 256, 210},
  };
  return table[static_cast<int>(t)];
}
inline const char* weight_type_name(WeightType t) { return weight_type_info(t).name; }
constexpr bool is_quantized(WeightType t) { return weight_type_info(t).block_elems > 1; }
// The alignment the kernels read a type's rows at: f32 values 4, the rest 2 (16-bit values,
// and the float16 scales every block starts with or holds at an even offset).
constexpr size_t weight_alignment(WeightType t) { return t == WeightType::F32 ? 4 : 2; }
// Bytes of one row of `cols` weights; cols must be a whole number of blocks.
constexpr size_t weight_row_bytes(WeightType t, int cols) {
  const WeightTypeInfo info = weight_type_info(t);
  return size_t(cols / info.block_elems) * info.block_bytes;
}

}  // namespace kvlm
