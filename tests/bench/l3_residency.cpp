// Can part of a model's weights stay in the L3 from one decode step to the next?
//
// A decode step streams every weight once, in the same order, so a cache that keeps what
// was read last holds the end of one step when the next begins at its start: nothing is
// reused. If the rest of the weights were read with the non-temporal hint (prefetchnta
// ahead of the loads), a "hot" set read normally might survive in the L3 and be read from
// there at every step. This measures it: each pass reads a hot set of H MiB, then a cold
// set of 240 MiB (a model's worth), on every core, with the cold set read plainly or with
// the hint. If the hot set survived, its read speed would jump to the L3's (run it alone,
// with a cold set of 0, for that speed). Prints the best pass of each.
//
//   make build/release/l3_residency && build/release/l3_residency
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "util/thread_pool.h"

using namespace kvlm;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kMiB = size_t(1) << 20;

// Sums floats [begin, end) of `data`, asking for each line `ahead` bytes before it is read
// with the non-temporal hint when `non_temporal`.
float sum_range(const float* data, size_t begin, size_t end, bool non_temporal) {
  constexpr size_t kLineFloats = 16, ahead = 2048;
  float sums[kLineFloats] = {};
  for (size_t i = begin; i < end; i += kLineFloats) {
    if (non_temporal) __builtin_prefetch(reinterpret_cast<const char*>(data + i) + ahead, 0, 0);
    for (size_t k = 0; k < kLineFloats; k++) sums[k] += data[i + k];
  }
  float total = 0;
  for (float s : sums) total += s;
  return total;
}

// Reads `data` once on every thread of the pool, each thread its own slice. Seconds.
double read_all(ThreadPool& pool, const std::vector<float>& data, bool non_temporal,
                std::vector<float>& sink) {
  const auto start = Clock::now();
  const size_t per_thread = data.size() / pool.threads() / 16 * 16;
  pool.run(pool.threads(), [&](int t, int) {
    sink[size_t(t) * 16] += sum_range(data.data(), t * per_thread, (t + 1) * per_thread, non_temporal);
  });
  return std::chrono::duration<double>(Clock::now() - start).count();
}

void measure(ThreadPool& pool, size_t hot_mib, size_t cold_mib, bool non_temporal) {
  std::vector<float> hot(hot_mib * kMiB / sizeof(float), 1.0f);
  std::vector<float> cold(cold_mib * kMiB / sizeof(float), 1.0f);
  std::vector<float> sink(size_t(pool.threads()) * 16);
  double best_hot = 1e30, best_step = 1e30;
  for (int pass = 0; pass < 20; pass++) {
    const double h = read_all(pool, hot, false, sink);
    const double c = cold.empty() ? 0.0 : read_all(pool, cold, non_temporal, sink);
    if (pass < 2) continue;  // first touches
    best_hot = std::min(best_hot, h);
    best_step = std::min(best_step, h + c);
  }
  std::printf("hot %3zu MiB, cold %3zu MiB read %-13s  hot set %6.1f GB/s   whole pass %6.1f GB/s\n",
              hot_mib, cold_mib, non_temporal ? "non-temporal" : "plainly",
              hot.size() * sizeof(float) / best_hot / 1e9,
              (hot.size() + cold.size()) * sizeof(float) / best_step / 1e9);
}

}  // namespace

int main() {
  ThreadPool pool(0);
  std::printf("%d threads\n", pool.threads());
  measure(pool, 16, 0, false);
  for (size_t hot_mib : {4, 8, 16, 24})
    for (bool non_temporal : {false, true}) measure(pool, hot_mib, 240, non_temporal);
}
