// Dequantisation of ggml tensor data into float32 (the CPU compute dtype).
#pragma once
#include <cstddef>
#include <cstdint>

#include "model/gguf.h"

namespace kvlm {

float f16_to_f32(uint16_t h);
float bf16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);   // round to nearest even; used by tests and writers
uint16_t f32_to_bf16(float f);  // round to nearest even

// Converts n elements (a whole number of blocks for quantised types) from src to dst.
void dequantize(gguf::TensorType type, const uint8_t* src, float* dst, size_t n);

}  // namespace kvlm
