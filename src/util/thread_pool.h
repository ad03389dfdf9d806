// ThreadPool: the CPU's threads, built to keep working when other processes share the cores.
//
// A parallel operation is a list of tasks handed out one at a time from a shared counter,
// and the calling thread takes tasks too. The operation is finished when every task is
// finished, not when every thread has checked in. That difference is the point of this
// class: a decode step of the default model runs 241 parallel operations, and with
// fork/join threads (OpenMP) each one is a barrier at which all threads wait for the
// slowest. When another process holds a core, the thread it displaced stalls every barrier
// for a scheduler time slice: with two busy processes beside it, OpenMP decode fell to 9%
// of its speed alone, the pool's to 35% (README, "On a busy machine"). Here a descheduled worker simply
// misses the operations that run while it is away; the threads that are running do its
// share. Only a task already taken by a thread that is then descheduled must be waited
// for, so kernels split their work into several tasks per thread.
//
// Idle workers spin for a short while (the next operation of a decode step usually comes
// within microseconds), then sleep in the kernel, so a quiet machine keeps its speed and a
// busy one gets its cores back. The policy is the pool's own, whatever OMP_WAIT_POLICY says.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace kvlm {

class ThreadPool {
 public:
  // n_threads counts the caller: n_threads - 1 workers are started. <= 0 means all cores.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return n_threads_; }

  // Runs task(index, thread) for every index in [0, n_tasks) and returns when all are
  // done. `thread` is in [0, threads()) and identifies the running thread's scratch
  // space; the caller is thread 0. One caller at a time; a task must not call run().
  template <class Task>
  void run(int n_tasks, Task&& task) {
    if (n_tasks <= 0) return;
    if (n_tasks == 1 || n_threads_ == 1) {
      for (int i = 0; i < n_tasks; i++) task(i, 0);
      return;
    }
    using Fn = std::remove_reference_t<Task>;
    auto call = [](void* fn, int index, int thread) { (*static_cast<Fn*>(fn))(index, thread); };
    run_erased(n_tasks, call, &task);
  }

  // Runs body(begin, end) over consecutive chunks of [0, n): about four chunks per
  // thread, so that a descheduled thread holds back little, but none under `grain` items.
  template <class Body>
  void parallel_for(int64_t n, int64_t grain, Body&& body) {
    if (n <= 0) return;
    const int64_t most = n / std::max<int64_t>(grain, 1);
    const int64_t chunks = std::clamp<int64_t>(most, 1, 4 * n_threads_);
    const int64_t size = (n + chunks - 1) / chunks;
    run(int((n + size - 1) / size),
        [&](int c, int) { body(c * size, std::min(n, (c + 1) * size)); });
  }

  // Parallel operations run so far (those with more than one task): what a step costs in
  // synchronisation, for tests and benchmarks.
  uint64_t operations() const { return operations_.load(std::memory_order_relaxed); }

 private:
  using TaskFn = void (*)(void* ctx, int index, int thread);
  void run_erased(int n_tasks, TaskFn fn, void* ctx);
  void worker(int thread);
  // Takes and runs tasks of operation `generation` until none is left.
  void work(uint32_t generation, int thread);

  int n_threads_;
  std::vector<std::thread> workers_;

  // The operation being run. `next_` packs its generation (high 32 bits) with the index of
  // the next task to hand out (low 32 bits), so a worker that wakes late cannot take a
  // task of a newer operation believing it belongs to the one it saw.
  // Fields written at different moments live on different cache lines, so that threads
  // polling one do not slow down the threads writing another.
  alignas(64) std::atomic<uint64_t> next_{0};
  std::atomic<TaskFn> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int> n_tasks_{0};
  alignas(64) std::atomic<int> done_{0};  // tasks of the current operation finished
  // Generation of the latest operation; idle workers poll it, then sleep on it.
  alignas(64) std::atomic<uint32_t> published_{0};
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> operations_{0};
};

}  // namespace kvlm
