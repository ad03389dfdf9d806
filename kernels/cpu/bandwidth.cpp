// read_bandwidth: stream a buffer larger than any cache and sum it, with every thread.
#include <algorithm>
#include <chrono>
#include <cstdio>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/simd.h"

namespace kvlm {

double CpuBackend::read_bandwidth(size_t bytes) {
  using simd::Vec;
  constexpr size_t kStep = 4 * simd::kLanes;
  const size_t n = std::max(kStep, bytes / sizeof(float) / kStep * kStep);
  float* buf = alloc(n);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) buf[i] = float(i & 7);
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    const auto start = std::chrono::steady_clock::now();
    double total = 0;
    // Four independent sums: one running sum would wait on its own adds, not on memory.
#pragma omp parallel reduction(+ : total)
    {
      Vec a = {}, b = {}, c = {}, d = {};
#pragma omp for schedule(static)
      for (size_t i = 0; i < n; i += kStep) {
        a += simd::load(&buf[i]);
        b += simd::load(&buf[i + simd::kLanes]);
        c += simd::load(&buf[i + 2 * simd::kLanes]);
        d += simd::load(&buf[i + 3 * simd::kLanes]);
      }
      total += simd::horizontal_sum(a + b + c + d);
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (total < 0) std::fprintf(stderr, "?");  // keeps the loop from being optimised away
    best = std::max(best, n * sizeof(float) / s);
  }
  release(buf);
  return best;
}

}  // namespace kvlm
