// read_bandwidth: stream a buffer larger than any cache and sum it, with every thread.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/simd.h"

namespace kvlm {

double CpuBackend::read_bandwidth(size_t bytes) {
  using simd::Vec;
  constexpr size_t kStep = 4 * simd::kLanes;
  const size_t n = std::max(kStep, bytes / sizeof(float) / kStep * kStep);
  float* buf = alloc(n, true);  // in the pages the weights are read from
  pool_.parallel_for(int64_t(n), 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) buf[i] = float(i & 7);
  });
  // One slice per thread: each streams its own part of the buffer.
  const int64_t steps = int64_t(n / kStep), per_thread = (steps + threads() - 1) / threads();
  std::vector<double> partial(threads());
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    const auto start = std::chrono::steady_clock::now();
    pool_.run(threads(), [&](int slice, int) {
      // Four independent sums: one running sum would wait on its own adds, not on memory.
      Vec a = {}, b = {}, c = {}, d = {};
      const size_t end = size_t(std::min(steps, (slice + 1) * per_thread)) * kStep;
      for (size_t i = size_t(slice * per_thread) * kStep; i < end; i += kStep) {
        a += simd::load(&buf[i]);
        b += simd::load(&buf[i + simd::kLanes]);
        c += simd::load(&buf[i + 2 * simd::kLanes]);
        d += simd::load(&buf[i + 3 * simd::kLanes]);
      }
      partial[slice] = simd::horizontal_sum(a + b + c + d);
    });
    double total = 0;
    for (double s : partial) total += s;
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (total < 0) std::fprintf(stderr, "?");  // keeps the loop from being optimised away
    best = std::max(best, n * sizeof(float) / s);
  }
  release(buf);
  return best;
}

}  // namespace kvlm
