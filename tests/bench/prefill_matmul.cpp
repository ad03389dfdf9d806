// Prefill matmul speed of the CPU backend (kernels/cpu/matmul.cpp): T tokens through an
// f16 weight matrix of the default model's shapes, on 1 thread (or THREADS), GFLOP/s of the
// best of several passes, with float32 products and (where the CPU has AVX512-BF16) bf16
// pairs. Built by name only:
//
//   make build/release/prefill_matmul && build/release/prefill_matmul [T=512] [THREADS=1]
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
  const int threads = argc > 2 ? std::atoi(argv[2]) : 1;
  CpuBackend float_products(threads, WeightType::F16, false),
      pair_products(threads, WeightType::F16, true);
  std::mt19937 rng(1);
  std::normal_distribution<float> gauss(0, 0.1f);
  struct Shape { int rows, cols; const char* name; };
  for (const Shape& s : {Shape{576, 576, "attention output 576 x 576"},
                         Shape{3072, 576, "gate+up 3072 x 576"},
                         Shape{576, 1536, "down 576 x 1536"}}) {
    std::vector<float> w(size_t(s.rows) * s.cols), x(size_t(T) * s.cols);
    for (float& v : w) v = gauss(rng);
    for (float& v : x) v = gauss(rng);
    for (CpuBackend* backend : {&float_products, &pair_products}) {
      if (backend == &pair_products && !pair_products.bf16_prefill()) {
        std::printf("%-28s bf16 pairs: skipped, this CPU has no AVX512-BF16\n", s.name);
        continue;
      }
      const WeightMatrix m = backend->upload_matrix(w.data(), s.rows, s.cols);
      std::vector<float> out(size_t(T) * s.rows);
      double best = 1e30;
      for (int pass = 0; pass < 5; pass++) {
        const auto start = Clock::now();
        backend->matmul(out.data(), x.data(), m, T);
        best = std::min(best, std::chrono::duration<double>(Clock::now() - start).count());
      }
      std::printf("%-28s %-11s T %d: %.1f GFLOP/s (%.2f ms)\n", s.name,
                  backend == &float_products ? "f32" : "bf16 pairs", T,
                  2.0 * s.rows * s.cols * T / best / 1e9, best * 1e3);
      backend->release_matrix(m);
    }
  }
}
