// Prefill matmul speed of the CPU backend (kernels/cpu/matmul.cpp): T tokens through a
// float32 weight matrix of the default model's shapes, on 1 thread, GFLOP/s of the best of
// several passes. Built by name only:
//
//   make build/release/prefill_matmul && build/release/prefill_matmul [T=512]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

using namespace kvlm;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  const int T = argc > 1 ? std::atoi(argv[1]) : 512;
  CpuBackend backend(1);
  std::mt19937 rng(1);
  std::normal_distribution<float> gauss(0, 0.1f);
  struct Shape { int rows, cols; const char* name; };
  for (const Shape& s : {Shape{576, 576, "attention output 576 x 576"},
                         Shape{3072, 576, "gate+up 3072 x 576"},
                         Shape{576, 1536, "down 576 x 1536"}}) {
    std::vector<float> w(size_t(s.rows) * s.cols), x(size_t(T) * s.cols);
    for (float& v : w) v = gauss(rng);
    for (float& v : x) v = gauss(rng);
    const WeightMatrix m = backend.upload_matrix(w.data(), s.rows, s.cols);
    std::vector<float> out(size_t(T) * s.rows);
    double best = 1e30;
    for (int pass = 0; pass < 5; pass++) {
      const auto start = Clock::now();
      backend.matmul(out.data(), x.data(), m, T);
      best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
    }
    std::printf("%-28s T %d: %.1f GFLOP/s (%.2f ms)\n", s.name, T,
                2.0 * s.rows * s.cols * T / best / 1e9, best * 1e3);
  }
}
