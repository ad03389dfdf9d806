// A portable 16-float vector (GCC vector extension): one AVX-512 register, two AVX2 ones,
// four SSE ones; the compiler picks the instructions for the build's -march.
#pragma once
#include <cstring>

namespace kvlm::simd {

constexpr int kLanes = 16;
using Vec = float __attribute__((vector_size(kLanes * sizeof(float))));

inline Vec load(const float* p) {  // unaligned
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline float horizontal_sum(const Vec& v) {
  float s = 0;
  for (int i = 0; i < kLanes; i++) s += v[i];
  return s;
}

}  // namespace kvlm::simd
