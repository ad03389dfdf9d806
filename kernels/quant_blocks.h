// ggml's block formats, byte for byte as they lie in a GGUF file (src/weight_type.h lists
// the types). Shared by the CPU kernels and their CUDA twins. Scales are IEEE float16 bits.
//
// 32-weight blocks: weight i = d * q_i (Q4_0: q in [-8, 7], Q5_0: [-16, 15], Q8_0: int8),
// or d * q_i + m (Q4_1: q in [0, 15], Q5_1: [0, 31]). The 4-bit fields of qs hold weights
// i (low nibble) and i + 16 (high nibble); the 5th bits are bit i of qh.
//
// k-quants: a super-block of 256 weights is 16 sub-blocks of 16 (Q2_K, Q3_K, Q6_K) or 8 of
// 32 (Q4_K, Q5_K), each with its own small integer scale (and minimum) that the
// super-block's d (and dmin) multiply.
#pragma once
#include <cstdint>

namespace kvlm::quant {

constexpr int kBlock = 32;        // weights per block of Q4_0 .. Q8_0
constexpr int kSuperBlock = 256;  // weights per super-block of the k-quants

struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };

// 16 sub-blocks of 16: scales[j] = 4-bit scale | 4-bit min << 4; 2-bit weights.
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
// 16 sub-blocks of 16: 6-bit signed scales packed in 12 bytes; 2 low bits in qs, the 3rd
// bit in hmask (set means +0, clear means -4).
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
// 8 sub-blocks of 32: 6-bit scales and mins packed in 12 bytes; 4-bit weights.
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
// As Q4_K with a 5th bit per weight in qh.
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
// 16 sub-blocks of 16 with int8 scales; 6-bit weights (4 low bits in ql, 2 high in qh), minus 32.
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };

static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210);

// Activations, quantised once per matmul so that the dot products run in integers:
// x_i ~= d * qs_i with d = max|x| / 127 over the block. `sum` is d * sum(qs), which the
// types with an offset or a minimum (Q4_0, Q4_1, ...) need once per block.
struct BlockQ8_32 { float d, sum; int8_t qs[32]; };
// For the k-quants: one d per 256, and the sums of qs per 16 (the minimum terms).
struct BlockQ8_256 { float d; int16_t bsums[16]; int8_t qs[256]; };

}  // namespace kvlm::quant
