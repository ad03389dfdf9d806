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

// 16 floats: one AVX-512 register in the x86-64-v4 clones, two AVX2 ones in the others. For
// loops with few live vectors (exponentials), where a CPU that runs 512-bit operations at
// full width (Zen 5) does twice the work an instruction.
constexpr int kWideLanes = 16;
using WideVec = float __attribute__((vector_size(kWideLanes * sizeof(float))));

// The vector of T of `bytes` bytes (a class member: an alias template with a dependent
// vector_size loses the attribute).
template <class T, size_t bytes>
struct VectorOf {
  typedef T type __attribute__((vector_size(bytes)));
};

template <class V = Vec>
inline V load(const float* p) {  // unaligned
  V v;
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

// Halves added until two lanes are left: log2(lanes) vector additions, where adding lane by
// lane made a chain of dependent additions as long as the vector.
template <class V>
inline float horizontal_sum(const V& v) {
  if constexpr (sizeof(V) == 2 * sizeof(float)) {
    return v[0] + v[1];
  } else {
    using Half = typename VectorOf<float, sizeof(V) / 2>::type;
    Half low, high;
    std::memcpy(&low, &v, sizeof(low));
    std::memcpy(&high, reinterpret_cast<const char*>(&v) + sizeof(low), sizeof(high));
    return horizontal_sum(low + high);
  }
}

template <class V>
inline void store(float* p, const V& v) { std::memcpy(p, &v, sizeof(v)); }

// x in every lane. Lane 0 shuffled to all: in GCC's function clones this is one
// vbroadcastss, where a braced {x, x, ...} became 8 scalar inserts and Vec{} + x kept an
// addition (-0 + 0 is +0).
template <class V = Vec>
inline V broadcast(float x) {
#if defined(__clang__)
  return x - V{};  // x - 0 is x, -0 included
#else
  V v{};
  v[0] = x;
  return __builtin_shuffle(v, typename VectorOf<int, sizeof(V)>::type{});
#endif
}

// e^x for every lane, to ~2 ulp: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6
// polynomial (Cephes' expf coefficients), 2^n built in the exponent bits. n is rounded by
// adding 1.5 * 2^23, which leaves it in the low bits of the sum's mantissa: two operations
// where a float-to-int-to-float floor took six (a small gain: a block's exponentials wait
// on their chain of dependent multiply-adds more than on the count of operations). Lanes
// below -87.3 give ~1e-38, not 0: callers zero masked lanes themselves.
template <class V>
inline V exp(V x) {
  using IntVec = typename VectorOf<int, sizeof(V)>::type;
  x = x < broadcast<V>(88.37f) ? x : broadcast<V>(88.37f);
  x = x > broadcast<V>(-87.33f) ? x : broadcast<V>(-87.33f);
  constexpr float kShifter = 0x1.8p23f;
  const V shifted = x * 1.44269504f + kShifter;  // 1.5 * 2^23 + round(x / ln2)
  const V n = shifted - kShifter;
  V r = x - n * 0.693359375f + n * 2.12194440e-4f;
  V y = broadcast<V>(1.9875691500e-4f);
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
  V two_n;
  std::memcpy(&two_n, &bits, sizeof(two_n));
  return y * two_n;
}

}  // namespace kvlm::simd
