// Matrix-vector speed of the CPU dot products (kernels/cpu/quant.h): every row of a random
// weight matrix against one quantised input row, as in a decode step. Two sizes: 1536 rows
// stay in L2 (the kernel's arithmetic), 262144 rows (90-300 MB) stream from memory, past
// any L3 (for the k-quants, rows of 2048: 512 and 65536). Both on one thread, then split
// across every core as decode runs, whose streams share the memory bus. Prints GB/s of
// weights read and ns per row, the best of several passes. Built by name:
//
//   make build/release/quant_dot && build/release/quant_dot
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cpu/quant.h"
#include "kernels/quant_blocks.h"
#include "model/dequant.h"
#include "tests/bench/random_blocks.h"

using namespace kvlm;
using namespace kvlm::quant;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One row at a time, or kDotRows at once (dot_rows_function) where `rows_at_once`; the
// rows split in equal contiguous ranges over `threads`.
void bench(WeightType type, SimdLevel level, int rows, int cols, int threads,
           bool rows_at_once = false) {
  const std::vector<uint8_t> w = random_blocks(type, rows, cols, 1);
  std::vector<float> x(cols);
  std::mt19937 rng(2);
  std::normal_distribution<float> gaussian;
  for (float& v : x) v = gaussian(rng);
  const ActFormat format = act_format(type);
  std::vector<uint8_t> xq(act_row_bytes(format, cols));
  std::vector<float> out(rows);
  const DotFn dot = dot_function(type, level);
  const DotRowsFn dot_rows = rows_at_once ? dot_rows_function(type, level) : nullptr;
  if (rows_at_once && !dot_rows) return;
  const size_t row_bytes = weight_row_bytes(type, cols);
  const int per_thread = rows / threads / kDotRows * kDotRows;
  auto range = [&](int first, int end) {
    if (dot_rows)
      for (int r = first; r < end; r += kDotRows)
        dot_rows(&w[r * row_bytes], row_bytes, xq.data(), cols, &out[r]);
    else
      for (int r = first; r < end; r++) out[r] = dot(&w[r * row_bytes], xq.data(), cols);
  };

  // Passes for a second, the best of them: the machine may be shared.
  const Clock::time_point begin = Clock::now();
  double best = 1e9;
  int passes = 0;
  for (; passes < 5 || seconds_since(begin) < 1; passes++) {
    const Clock::time_point start = Clock::now();
    quantize_activations(format, x.data(), xq.data(), cols);
    std::vector<std::thread> helpers;
    for (int t = 1; t < threads; t++)
      helpers.emplace_back(range, t * per_thread, (t + 1) * per_thread);
    range(0, per_thread);
    for (std::thread& h : helpers) h.join();
    best = std::min(best, seconds_since(start));
  }
  const double bytes = double(per_thread) * threads * row_bytes;
  std::printf("%-5s %-6s %-6s %6d x %d  %d thread%s %7.2f GB/s  %6.1f ns/row\n",
              weight_type_name(type), simd_level_name(level), dot_rows ? "4 rows" : "1 row",
              rows, cols, threads, threads > 1 ? "s" : " ", bytes / best / 1e9,
              best / (per_thread * threads) * 1e9);
}

void bench_quantize(ActFormat format, int cols) {
  std::vector<float> x(cols, 0.5f);
  std::vector<uint8_t> xq(act_row_bytes(format, cols));
  const int reps = 1000;
  double best = 1e9;
  for (int pass = 0; pass < 100; pass++) {
    const Clock::time_point start = Clock::now();
    for (int r = 0; r < reps; r++) {
      x[r % cols] += 1e-3f;  // a new input each time
      quantize_activations(format, x.data(), xq.data(), cols);
    }
    best = std::min(best, seconds_since(start) / reps);
  }
  std::printf("quantize_activations %s, %d floats: %.0f ns\n",
              format == ActFormat::Q8_32 ? "Q8_32" : "Q8_256", cols, best * 1e9);
}

int main() {
  bench_quantize(ActFormat::Q8_32, 576);
  bench_quantize(ActFormat::Q8_32, 1536);
  bench_quantize(ActFormat::Q8_256, 2048);
  bench_quantize(ActFormat::Q8_256, 5632);
  const int cores = std::max(1u, std::thread::hardware_concurrency());
  const SimdLevel widest = supported_levels().back();
  // In cache on one thread (the kernel's arithmetic), then from memory on one and on every
  // core. The scalar reference only in cache: from memory it takes minutes and says nothing.
  auto sizes = [&](WeightType type, SimdLevel level, bool rows_at_once) {
    bench(type, level, 1536, 576, 1, rows_at_once);
    if (level == SimdLevel::Scalar) return;
    for (int threads : {1, cores}) bench(type, level, 262144, 576, threads, rows_at_once);
  };
  for (WeightType type : {WeightType::Q4_1, WeightType::Q8_0})
    for (SimdLevel level : supported_levels())
      for (bool rows_at_once : {false, true}) sizes(type, level, rows_at_once);
  sizes(WeightType::F16, widest, false);
  bench(WeightType::F32, widest, 1536, 576, 1);
  // The k-quants of a Q4_K_M file, on rows of 2048 (eight super-blocks; the default model's
  // 576 is not a multiple of 256): 512 rows in L2, 65536 (75 and 110 MB) from memory.
  for (WeightType type : {WeightType::Q4_K, WeightType::Q6_K}) {
    bench(type, widest, 512, 2048, 1);
    for (int threads : {1, cores}) bench(type, widest, 65536, 2048, threads);
  }
}
