// Implementation of the CPU backend's worker pool (see thread_pool.hpp).
#include "backend/cpu/thread_pool.hpp"

#include <algorithm>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define GON_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define GON_CPU_RELAX() asm volatile("yield")
#else
#define GON_CPU_RELAX() ((void)0)
#endif

namespace gon::cpu {

namespace {
// Iterations to spin before parking on a futex; about 50-100 us.
constexpr int kSpinIterations = 20000;
}  // namespace

int available_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

ThreadPool::ThreadPool(int threads) : size_(std::max(1, threads)) {
  threads_.reserve(size_ - 1);
  for (int i = 1; i < size_; ++i) threads_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  generation_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::run(Fn fn, void* arg) {
  if (size_ == 1) {
    fn(arg, 0, 1);
    return;
  }
  fn_ = fn;
  arg_ = arg;
  pending_.store(size_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  fn(arg, 0, size_);
  for (int spin = 0;; ++spin) {
    int left = pending_.load(std::memory_order_acquire);
    if (left == 0) break;
    if (spin < kSpinIterations) {
      GON_CPU_RELAX();
    } else {
      pending_.wait(left, std::memory_order_acquire);
    }
  }
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g;
    for (int spin = 0;; ++spin) {
      g = generation_.load(std::memory_order_acquire);
      if (g != seen) break;
      if (spin < kSpinIterations) {
        GON_CPU_RELAX();
      } else {
        generation_.wait(seen, std::memory_order_acquire);
      }
    }
    seen = g;
    if (stop_.load(std::memory_order_acquire)) return;
    fn_(arg_, index, size_);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

}  // namespace gon::cpu
