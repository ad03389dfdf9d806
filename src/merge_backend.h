// MergeBackend: the ops of cross-layer KV merging (MiniCache's shared storage,
// kv/merged_layers.h), a second interface that a Backend implements beside its own.
// Both backends do (kernels/cpu/merge.cpp, kernels/cuda/merge.cu), tested by the same cases.
//
// Token pairs: row a_rows[i] of a and row b_rows[i] of b, i < n, head_dim values each (the
// same token's state in two layers). Rows and directions are stored in the KV cache's
// `dtype` and read as float32; magnitudes and angles are float32. Buffers are the
// backend's; row indices are host arrays.
#pragma once
#include <cstdint>

#include "backend.h"

namespace kvlm {

class MergeBackend {
 public:
  virtual ~MergeBackend() = default;
  // out[i] = the angle between the pair in radians, in [0, pi], or -1 when either row
  // is all zeros (it has no direction to share).
  virtual void pair_angles(float* out, DType dtype, const void* a, const int32_t* a_rows,
                           const void* b, const int32_t* b_rows, int n, int head_dim) = 0;
  // Splits each pair into one shared unit direction and two magnitudes:
  // mag_a[i] = |a_i|, mag_b[i] = |b_i|, dir[i] = slerp(a_i / |a_i|, b_i / |b_i|, t)
  // (t = 0 gives a's direction, 1 gives b's). Nearly parallel or opposite pairs use the
  // normalised linear interpolation; a zero row takes the other row's direction.
  // dir [n][head_dim]; mag_a, mag_b [n].
  virtual void merge_pair(void* dir, float* mag_a, float* mag_b, DType dtype, const void* a,
                          const int32_t* a_rows, const void* b, const int32_t* b_rows, int n,
                          int head_dim, float t) = 0;
  // out[r][c] = dir[i][c] * mag[i] with r = out_rows[i] (out_rows: a host array, or
  // nullptr for r = i); a null mag scales by 1, which copies the rows exactly.
  // dir [n][head_dim]; out has every row r.
  virtual void restore_rows(void* out, const int32_t* out_rows, DType dtype, const void* dir,
                            const float* mag, int n, int head_dim) = 0;
};

// The merge ops of `backend`. Throws std::logic_error when the backend has none.
inline MergeBackend& merge_ops(Backend& backend) {
  if (auto* ops = dynamic_cast<MergeBackend*>(&backend)) return *ops;
  throw std::logic_error("the " + backend.name() + " backend cannot merge KV layers");
}

}  // namespace kvlm
