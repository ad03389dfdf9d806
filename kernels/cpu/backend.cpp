// CpuBackend: memory is ordinary host memory; the ops live in the files beside this one.
#include <omp.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "kernels/cpu/cpu_backend.h"

namespace kvlm {

CpuBackend::CpuBackend(int n_threads)
    : n_threads_(n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency())) {
  if (n_threads_ <= 0) n_threads_ = 1;
  omp_set_num_threads(n_threads_);
}

std::string CpuBackend::name() const {
  return "cpu (" + std::to_string(n_threads_) + " threads)";
}

// 64-byte alignment: one cache line, and a whole AVX-512 register.
float* CpuBackend::alloc(size_t n_floats) {
  size_t bytes = ((n_floats * sizeof(float)) + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, bytes > 0 ? bytes : 64);
  if (!p) throw std::bad_alloc();
  return static_cast<float*>(p);
}

void CpuBackend::release(float* p) { std::free(p); }

void CpuBackend::upload(float* dst, const float* host_src, size_t n) {
  std::memcpy(dst, host_src, n * sizeof(float));
}

void CpuBackend::download(float* host_dst, const float* src, size_t n) {
  std::memcpy(host_dst, src, n * sizeof(float));
}

}  // namespace kvlm
