// A decode step's matrix products alone: the default model's 30 layers of weights (fused
// q/k/v, attention output, fused gate/up, down; random blocks of one type, 62-210 MB) and
// its 49152 x 576 output matrix, each multiplied by one token through CpuBackend::matmul
// as the model calls it, in the model's order. Nothing else runs between them, so this is
// what the step's matrices cost by themselves: compare its GB/s with `quant_dot`'s (one big
// matrix) and with a real step (`kvlm run --stats`). Prints, per shape, microseconds a
// call and GB/s, then the whole step; the best of 30 steps.
//
//   make build/release/decode_matmuls && build/release/decode_matmuls [TYPE] [threads]
//   (TYPE: q4_1 (default), q8_0, f16, ...; the output matrix is q8_0, as in the Q4_1 file,
//   for q4_1, and TYPE otherwise)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "tests/bench/random_blocks.h"

using namespace kvlm;
using Clock = std::chrono::steady_clock;

namespace {

struct Shape {
  const char* name;
  int rows, cols;
};

// SmolLM2-135M: dim 576, 9 query and 3 KV heads of 64, FFN 1536, 30 layers.
constexpr Shape kLayer[] = {{"qkv", 576 + 2 * 192, 576},
                            {"attention output", 576, 576},
                            {"gate/up", 2 * 1536, 576},
                            {"down", 576, 1536}};
constexpr Shape kOutput = {"output", 49152, 576};
constexpr int kLayers = 30;

struct Matrix {
  const Shape* shape;
  std::vector<uint8_t> bytes;
  WeightMatrix m;
  double best = 1e30;  // seconds of its fastest call
};

}  // namespace

int main(int argc, char** argv) {
  const std::string type_name = argc > 1 ? argv[1] : "q4_1";
  const int threads = argc > 2 ? std::atoi(argv[2]) : 0;
  int type_index = 0;
  while (type_index < kWeightTypes && type_name != weight_type_name(WeightType(type_index)))
    type_index++;
  if (type_index == kWeightTypes) {
    std::fprintf(stderr, "decode_matmuls: unknown weight type %s\n", type_name.c_str());
    return 2;
  }
  const WeightType type = WeightType(type_index);
  const WeightType output_type = type == WeightType::Q4_1 ? WeightType::Q8_0 : type;
  CpuBackend backend(threads);

  std::vector<Matrix> step;  // the backend keeps pointers into each matrix's bytes
  step.reserve(kLayers * std::size(kLayer) + 1);
  auto add = [&](const Shape& s, WeightType t) {
    Matrix& m = step.emplace_back();
    m.shape = &s;
    m.bytes = random_blocks(t, s.rows, s.cols, uint32_t(step.size()));
    m.m = backend.upload_weights({{m.bytes.data(), t, s.rows}}, s.cols, true);
  };
  for (int l = 0; l < kLayers; l++)
    for (const Shape& s : kLayer) add(s, type);
  add(kOutput, output_type);

  float* x = backend.alloc(1536);
  float* y = backend.alloc(size_t(kOutput.rows));
  std::vector<float> input(1536);
  std::mt19937 rng(7);
  std::normal_distribution<float> gaussian;
  for (float& v : input) v = gaussian(rng);
  backend.upload(x, input.data(), input.size());

  double best_step = 1e30, total_bytes = 0;
  for (const Matrix& m : step) total_bytes += double(m.bytes.size());
  for (int pass = 0; pass < 30; pass++) {
    const Clock::time_point step_start = Clock::now();
    for (Matrix& m : step) {
      const Clock::time_point start = Clock::now();
      backend.matmul(y, x, m.m, 1);
      m.best = std::min(m.best, std::chrono::duration<double>(Clock::now() - start).count());
    }
    if (pass > 0)  // the first pass touches every page
      best_step = std::min(best_step, std::chrono::duration<double>(Clock::now() - step_start).count());
  }

  std::printf("%s weights (%s output), %d threads\n", weight_type_name(type),
              weight_type_name(output_type), backend.threads());
  // A shape's time: the mean over its matrices of each one's best call.
  auto report = [&](const Shape& shape) {
    double seconds = 0, bytes = 0;
    int n = 0;
    for (const Matrix& m : step)
      if (m.shape == &shape) seconds += m.best, bytes = double(m.bytes.size()), n++;
    seconds /= n;
    std::printf("  %-17s %6.0f KiB  %8.1f us  %6.1f GB/s\n", shape.name, bytes / 1024,
                seconds * 1e6, bytes / seconds / 1e9);
  };
  for (const Shape& s : kLayer) report(s);
  report(kOutput);
  std::printf("  whole step        %6.1f MiB  %8.1f us  %6.1f GB/s  (%.0f steps/s)\n",
              total_bytes / (1 << 20), best_step * 1e6, total_bytes / best_step / 1e9, 1 / best_step);
  for (const Matrix& m : step) backend.release_matrix(m.m);
  backend.release(x);
  backend.release(y);
}
