// Shared by the op suites: backend buffers mirroring host vectors, random inputs, and a
// fixture parameterised by backend name, so every backend runs the very same cases.
// The "cuda" cases skip with a message when no GPU is visible (or the build has no CUDA),
// unless KVLM_REQUIRE_GPU=1 (`make test-gpu`) turns that into a failure.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "device.h"

namespace kvlm::test {

inline bool gpu_required() {
  const char* e = std::getenv("KVLM_REQUIRE_GPU");
  return e && *e && std::strcmp(e, "0") != 0;
}

// Why CUDA cannot run here, or "" when it can.
inline std::string cuda_unavailable() {
  if (!cuda_built()) return "this build has no CUDA backend (no nvcc, or CUDA=0)";
  if (cuda_gpu_count() == 0) return "no CUDA GPU visible";
  return "";
}

// First statement of a test (or SetUp) that needs a GPU.
#define KVLM_REQUIRE_CUDA()                                                              \
  if (const std::string why = ::kvlm::test::cuda_unavailable(); !why.empty()) {          \
    if (::kvlm::test::gpu_required()) FAIL() << "KVLM_REQUIRE_GPU is set, but " << why;  \
    GTEST_SKIP() << why;                                                                 \
  }

// Test names end in the backend: Kernels.MatmulMatchesNaive/cuda.
inline std::string backend_param_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

inline std::vector<float> random_vector(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// A backend buffer that mirrors a host vector.
struct Buf {
  Backend& b;
  float* ptr;
  size_t n;
  Buf(Backend& backend, const std::vector<float>& host)
      : b(backend), ptr(backend.alloc(std::max<size_t>(host.size(), 1))), n(host.size()) {
    b.upload(ptr, host.data(), n);
  }
  Buf(Backend& backend, size_t size)
      : b(backend), ptr(backend.alloc(std::max<size_t>(size, 1))), n(size) {}
  ~Buf() { b.release(ptr); }
  Buf(const Buf&) = delete;
  Buf& operator=(const Buf&) = delete;
  std::vector<float> host() const {
    std::vector<float> v(n);
    b.download(v.data(), ptr, n);
    return v;
  }
};

// A weight matrix uploaded in the backend's weight dtype.
struct Matrix {
  Backend& b;
  WeightMatrix m;
  Matrix(Backend& backend, const std::vector<float>& host, int rows, int cols)
      : b(backend), m(backend.upload_matrix(host.data(), rows, cols)) {}
  ~Matrix() { b.release_matrix(m); }
  Matrix(const Matrix&) = delete;
  Matrix& operator=(const Matrix&) = delete;
};

class BackendTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Weights stay float32 on every backend here: the ops are compared, not the dtypes.
  void SetUp() override {
    if (GetParam() == "cuda") {
      KVLM_REQUIRE_CUDA();
    }
    backend = make_backend(GetParam(), "f32", 0);
  }
  std::unique_ptr<Backend> backend;
};

}  // namespace kvlm::test
