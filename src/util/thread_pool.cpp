#include "util/thread_pool.h"

#include <chrono>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace kvlm {

namespace {

// How long an idle thread polls before it sleeps. Between two operations of a decode step
// the caller does a few microseconds of serial work; a step of the default model lasts
// ~20 ms. 50 us of polling keeps a step's workers awake on a quiet machine and costs a
// busy one little: the poller is ordinary runnable work to the scheduler.
constexpr auto kSpin = std::chrono::microseconds(50);

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

// Polls pred() for up to kSpin; true as soon as it holds.
template <class Pred>
bool spin_until(Pred pred) {
  const auto until = std::chrono::steady_clock::now() + kSpin;
  while (true) {
    for (int i = 0; i < 64; i++) {
      if (pred()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() > until) return false;
  }
}

constexpr uint32_t kClosed = UINT32_MAX;  // task index of an operation being set up
uint64_t pack(uint32_t generation, uint32_t index) { return uint64_t(generation) << 32 | index; }

}  // namespace

ThreadPool::ThreadPool(int n_threads)
    : n_threads_(n_threads > 0 ? n_threads : int(std::thread::hardware_concurrency())) {
  if (n_threads_ <= 0) n_threads_ = 1;
  for (int t = 1; t < n_threads_; t++) workers_.emplace_back([this, t] { worker(t); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  published_.fetch_add(1);
  published_.notify_all();
  for (std::thread& w : workers_) w.join();
}

void ThreadPool::run_erased(int n_tasks, TaskFn fn, void* ctx) {
  const uint32_t generation = published_.load(std::memory_order_relaxed) + 1;
  // Close the counter before the fields change: a worker still holding the previous
  // operation's counter value then fails its compare-exchange instead of pairing an old
  // index with the new task function.
  next_.store(pack(generation, kClosed));
  fn_.store(fn);
  ctx_.store(ctx);
  n_tasks_.store(n_tasks);
  done_.store(0);
  next_.store(pack(generation, 0));
  published_.store(generation);
  published_.notify_all();
  operations_.fetch_add(1, std::memory_order_relaxed);

  work(generation, 0);
  // Only tasks that other threads took and have not finished are left: wait for those.
  spin_until([&] { return done_.load() == n_tasks; });
  for (int done; (done = done_.load()) != n_tasks;) done_.wait(done);
}

void ThreadPool::work(uint32_t generation, int thread) {
  uint64_t next = next_.load();
  while (uint32_t(next >> 32) == generation) {
    const uint32_t index = uint32_t(next);
    const int n_tasks = n_tasks_.load();
    const TaskFn fn = fn_.load();
    void* const ctx = ctx_.load();
    if (index >= uint32_t(n_tasks)) return;
    // Succeeds only while `next_` still reads (generation, index), so the fields read
    // above belong to this operation.
    if (!next_.compare_exchange_weak(next, next + 1)) continue;
    fn(ctx, int(index), thread);
    if (done_.fetch_add(1) + 1 == n_tasks) done_.notify_one();
    next = next_.load();
  }
}

void ThreadPool::worker(int thread) {
  uint32_t seen = 0;
  while (true) {
    if (!spin_until([&] { return published_.load() != seen; })) {
      published_.wait(seen);
      continue;
    }
    if (stop_.load()) return;
    seen = published_.load();
    work(seen, thread);
  }
}

}  // namespace kvlm
