// The CPU thread pool: every task runs exactly once, on a valid thread, however the
// operations follow each other; and how many parallel operations a decode step costs.
#include <gtest/gtest.h>

#include <atomic>
#include <vector>

#include "model_fixture.h"
#include "util/thread_pool.h"

namespace kvlm {
namespace {

// More threads than this machine has cores is the case that matters: workers are then
// descheduled in the middle of operations, as on a machine shared with other jobs.
TEST(ThreadPool, EveryTaskRunsExactlyOnceOnAValidThread) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    ASSERT_EQ(pool.threads(), threads);
    for (int n_tasks : {0, 1, 2, 7, 64, 1000}) {
      std::vector<std::atomic<int>> runs(n_tasks);
      std::atomic<bool> bad_thread{false};
      pool.run(n_tasks, [&](int i, int thread) {
        runs[i]++;
        if (thread < 0 || thread >= threads) bad_thread = true;
      });
      for (int i = 0; i < n_tasks; i++)
        ASSERT_EQ(runs[i].load(), 1) << threads << " threads, " << n_tasks << " tasks, task " << i;
      EXPECT_FALSE(bad_thread) << threads << " threads";
    }
  }
}

TEST(ThreadPool, ParallelForCoversTheRangeOnceInChunksOfAtLeastTheGrain) {
  ThreadPool pool(3);
  for (int64_t n : {0, 1, 5, 1000, 100003})
    for (int64_t grain : {1, 16, 4096}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<int> chunks{0}, small_chunks{0};
      pool.parallel_for(n, grain, [&](int64_t begin, int64_t end) {
        chunks++;
        if (end - begin < grain && end != n) small_chunks++;
        for (int64_t i = begin; i < end; i++) hits[i]++;
      });
      for (int64_t i = 0; i < n; i++) ASSERT_EQ(hits[i].load(), 1) << "n " << n << " item " << i;
      EXPECT_EQ(small_chunks.load(), 0) << "n " << n << " grain " << grain;
      EXPECT_LE(chunks.load(), 4 * pool.threads()) << "n " << n << " grain " << grain;
    }
}

// Thousands of short operations back to back: a worker that wakes late must never run a
// task of a newer operation as if it belonged to the one it saw, nor count it twice.
TEST(ThreadPool, BackToBackOperationsNeverMixTasks) {
  ThreadPool pool(8);
  constexpr int kTasks = 8;
  std::vector<int> slots(kTasks, -1);
  for (int op = 0; op < 5000; op++) {
    pool.run(kTasks, [&](int i, int) { slots[i] = op; });
    for (int i = 0; i < kTasks; i++) ASSERT_EQ(slots[i], op) << "operation " << op << " task " << i;
  }
  EXPECT_EQ(pool.operations(), 5000u);
}

// A decode step of the default model: one parallel operation per matrix product (the
// fused q/k/v, o, the fused gate/up, down) and one for attention, per layer, plus the
// output projection. Norms, RoPE and the elementwise ops of one token run on the calling
// thread (swiglu's rows are short enough at this width).
TEST(ThreadPool, ADecodeStepCostsFiveOperationsPerLayer) {
  KVLM_REQUIRE_MODEL();
  auto& m = test::default_model();
  if (m.backend.threads() == 1) GTEST_SKIP() << "one core: the pool runs every task inline";
  auto cache = m.model->make_cache(64);
  m.model->forward({1, 2, 3}, *cache);
  const uint64_t before = m.backend.parallel_operations();
  m.model->forward({4}, *cache);
  EXPECT_EQ(m.backend.parallel_operations() - before, 5u * m.model->config().n_layers + 1);
}

}  // namespace
}  // namespace kvlm
