// A portable 8-float vector (GCC vector extension): one AVX2 register, two SSE ones (half
// an AVX-512 one); the compiler picks the instructions for each clone's -march.
//
// KV rows may be stored in 16-bit types (backend.h: DType); load() widens 8 of them to a
// Vec (F16C's vcvtph2ps for half, a 16-bit shift for bfloat16) and to_float/from_float
// convert one value, so kernels are written once as templates over the storage type.
#pragma once
#include <immintrin.h>

#include <bit>
#include <cstdint>
#include <cstring>

#include "backend.h"

// The hot loops (matmul, attention) are compiled three times, for AVX-512, AVX2 + FMA and
// the build's own -march (x86-64-v2), and the loader picks one per CPU at start-up (GCC
// function multi-versioning): one binary, built anywhere, runs at full width everywhere.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define KVLM_HAS_SIMD_CLONES 1
#define KVLM_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define KVLM_HAS_SIMD_CLONES 0
#define KVLM_SIMD_CLONES
#endif

namespace kvlm::simd {

// Which clone of the KVLM_SIMD_CLONES functions this CPU runs.
inline const char* dispatch_level() {
#if KVLM_HAS_SIMD_CLONES
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return "x86-64-v4 (AVX-512)";
  if (__builtin_cpu_supports("x86-64-v3")) return "x86-64-v3 (AVX2, FMA)";
#endif
  return "baseline (the build's -march)";
}

// bfloat16: the upper half of a float32's bits.
struct BFloat16 {
  uint16_t bits;
};

// 8 floats: one AVX2 register (half an AVX-512 one). A 16-float vector is two AVX2
// registers, and kernels that keep several of them live (attention's score block, matmul's
// tiles) ran out of AVX2's 16 registers: GCC moved them through the stack.
constexpr int kLanes = 8;
using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec load(const float* p) {  // unaligned
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

#if defined(__F16C__)
inline Vec load(const _Float16* p) {
  const __m256 v = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  Vec out;
  std::memcpy(&out, &v, sizeof(out));
  return out;
}
#else
inline Vec load(const _Float16* p) {
  using HalfVec = _Float16 __attribute__((vector_size(kLanes * sizeof(_Float16))));
  HalfVec h;
  std::memcpy(&h, p, sizeof(h));
  return __builtin_convertvector(h, Vec);
}
#endif

inline Vec load(const BFloat16* p) {
  using HalfBits = uint16_t __attribute__((vector_size(kLanes * sizeof(uint16_t))));
  using Bits = uint32_t __attribute__((vector_size(kLanes * sizeof(uint32_t))));
  HalfBits h;
  std::memcpy(&h, p, sizeof(h));
  const Bits bits = __builtin_convertvector(h, Bits) << 16;
  Vec v;
  std::memcpy(&v, &bits, sizeof(v));
  return v;
}

inline float to_float(float x) { return x; }
inline float to_float(_Float16 x) { return float(x); }
inline float to_float(BFloat16 x) {
  const uint32_t bits = uint32_t(x.bits) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

// Rounds to nearest, ties to even (as the CUDA backend's __float2half_rn/__float2bfloat16_rn).
template <class T>
inline T from_float(float x);
template <>
inline float from_float<float>(float x) { return x; }
template <>
inline _Float16 from_float<_Float16>(float x) { return _Float16(x); }
template <>
inline BFloat16 from_float<BFloat16>(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof(bits));
  if ((bits & 0x7fffffffu) > 0x7f800000u) return {uint16_t((bits >> 16) | 0x40)};  // NaN stays NaN
  return {uint16_t((bits + 0x7fffu + ((bits >> 16) & 1)) >> 16)};
}

// Calls f(T{}) with T the C++ type that stores `dtype`.
template <class F>
void with_storage_type(DType dtype, F&& f) {
  switch (dtype) {
    case DType::F32: f(float{}); break;
    case DType::F16: f(_Float16{}); break;
    case DType::BF16: f(BFloat16{}); break;
  }
}

inline float horizontal_sum(const Vec& v) {
  float s = 0;
  for (int i = 0; i < kLanes; i++) s += v[i];
  return s;
}

inline void store(float* p, const Vec& v) { std::memcpy(p, &v, sizeof(v)); }

// x in every lane. Lane 0 shuffled to all: in GCC's function clones this is one
// vbroadcastss, where a braced {x, x, ...} became 8 scalar inserts and Vec{} + x kept an
// addition (-0 + 0 is +0).
inline Vec broadcast(float x) {
  Vec v{};
  v[0] = x;
#if defined(__clang__)
  return __builtin_shufflevector(v, v, 0, 0, 0, 0, 0, 0, 0, 0);
#else
  using Lanes = int __attribute__((vector_size(kLanes * sizeof(int))));
  return __builtin_shuffle(v, Lanes{});
#endif
}

// e^x for every lane, to ~2 ulp: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6
// polynomial (Cephes' expf coefficients), 2^n built in the exponent bits. n is rounded by
// adding 1.5 * 2^23, which leaves it in the low bits of the sum's mantissa: two operations
// where a float-to-int-to-float floor took six (a small gain: a block's exponentials wait
// on their chain of dependent multiply-adds more than on the count of operations). Lanes
// below -87.3 give ~1e-38, not 0: callers zero masked lanes themselves.
inline Vec exp(Vec x) {
  using IntVec = int __attribute__((vector_size(kLanes * sizeof(int))));
  x = x < broadcast(88.37f) ? x : broadcast(88.37f);
  x = x > broadcast(-87.33f) ? x : broadcast(-87.33f);
  constexpr float kShifter = 0x1.8p23f;
  const Vec shifted = x * 1.44269504f + kShifter;  // 1.5 * 2^23 + round(x / ln2)
  const Vec n = shifted - kShifter;
  Vec r = x - n * 0.693359375f + n * 2.12194440e-4f;
  Vec y = broadcast(1.9875691500e-4f);
  y = y * r + 1.3981999507e-3f;
  y = y * r + 8.3334519073e-3f;
  y = y * r + 4.1665795894e-2f;
  y = y * r + 1.6666665459e-1f;
  y = y * r + 5.0000001201e-1f;
  y = y * r * r + r + 1.0f;
  IntVec bits;
  std::memcpy(&bits, &shifted, sizeof(bits));
  // The sum's bits are kShifter's plus n; 2^n is (n + 127) in the exponent field.
  bits = (bits - (std::bit_cast<int>(kShifter) - 127)) << 23;
  Vec two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return y * two_n;
}

}  // namespace kvlm::simd
