// A fixed set of worker threads that run one function on every thread and
// wait for all of them: the CPU backend's only parallel primitive.
//
// Threads are created once (with the backend) and park between jobs, spinning
// briefly first because a decoded token runs a few hundred short jobs back to
// back. run() neither allocates nor copies the function: it takes a plain
// function pointer and argument, so the hot path stays allocation-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace gon::cpu {

class ThreadPool {
 public:
  // `threads` workers in total, the calling thread counted as worker 0.
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  using Fn = void (*)(void* arg, int thread, int num_threads);
  // Calls fn(arg, t, size()) for t in [0, size()), t = 0 on the calling thread,
  // and returns when all calls have returned. fn must not throw.
  void run(Fn fn, void* arg);

  // Convenience: f(thread, num_threads) for a callable kept on the caller's stack.
  template <typename F>
  void run(F& f) {
    run([](void* a, int t, int n) { (*static_cast<F*>(a))(t, n); }, &f);
  }

  // f(begin, end) over chunks of [0, n) of `chunk` items handed out on demand,
  // so a thread slowed by other work on its core takes fewer chunks.
  template <typename F>
  void parallel_chunks(int64_t n, int64_t chunk, F&& f) {
    if (n <= 0) return;
    if (size_ == 1 || n <= chunk) {
      f(int64_t{0}, n);
      return;
    }
    std::atomic<int64_t> next{0};
    auto body = [&](int, int) {
      for (;;) {
        const int64_t b = next.fetch_add(chunk, std::memory_order_relaxed);
        if (b >= n) break;
        f(b, b + chunk < n ? b + chunk : n);
      }
    };
    run(body);
  }

  // f(begin, end) over a static split of [0, n) into size() contiguous ranges,
  // each a multiple of `grain` except the last.
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, F&& f) {
    if (n <= 0) return;
    auto body = [&](int t, int nt) {
      int64_t chunks = (n + grain - 1) / grain;
      int64_t c0 = chunks * t / nt, c1 = chunks * (t + 1) / nt;
      int64_t b = c0 * grain, e = c1 * grain < n ? c1 * grain : n;
      if (b < e) f(b, e);
    };
    if (size_ == 1 || n <= grain) {
      f(int64_t{0}, n);
      return;
    }
    run(body);
  }

 private:
  void worker(int index);

  int size_;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  Fn fn_ = nullptr;
  void* arg_ = nullptr;
};

// Cores this process may run on (sched_getaffinity where available).
int available_cores();

}  // namespace gon::cpu
