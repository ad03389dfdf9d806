// Shared by the op suites: backend buffers mirroring host vectors, random inputs, and a
// fixture parameterised by backend name, so every backend runs the very same cases
// (the CUDA backend joins the instantiations when it exists and a GPU is visible).
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm::test {

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
  void SetUp() override {
    ASSERT_EQ(GetParam(), "cpu") << "no such backend in this build";
    backend = std::make_unique<CpuBackend>();
  }
  std::unique_ptr<Backend> backend;
};

}  // namespace kvlm::test
