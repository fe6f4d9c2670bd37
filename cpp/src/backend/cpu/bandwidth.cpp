// Memory read bandwidth measurement (see bandwidth.hpp).
#include "backend/cpu/bandwidth.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "backend/cpu/thread_pool.hpp"
#include "core/check.hpp"

namespace gon::cpu {

double measure_read_bandwidth(size_t bytes, int threads, int repeats) {
  GON_CHECK(bytes >= (size_t{1} << 20), kInvalidArgument, "bandwidth: buffer must be at least 1 MiB");
  GON_CHECK(repeats >= 1, kInvalidArgument, "bandwidth: repeats must be >= 1");
  const size_t words = bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[], decltype(&std::free)> buf(
      static_cast<uint64_t*>(std::aligned_alloc(64, words * sizeof(uint64_t))), &std::free);
  GON_CHECK(buf != nullptr, kOutOfMemory, "bandwidth: cannot allocate ", bytes, " bytes");
  ThreadPool pool(threads > 0 ? threads : available_cores());
  pool.parallel_for(static_cast<int64_t>(words), 4096, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf[i] = static_cast<uint64_t>(i) * 0x9e3779b97f4a7c15ull;
  });
  uint64_t sums[256] = {};
  double best = 0.0;
  for (int r = 0; r < repeats; ++r) {
    auto start = std::chrono::steady_clock::now();
    auto body = [&](int t, int nt) {
      const size_t b = words * t / nt, e = words * (t + 1) / nt;
      uint64_t acc[8] = {};
      size_t i = b;
      for (; i + 8 <= e; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += buf[i + l];
      for (; i < e; ++i) acc[0] += buf[i];
      uint64_t s = 0;
      for (int l = 0; l < 8; ++l) s ^= acc[l];
      sums[t % 256] += s;
    };
    pool.run(body);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    best = std::max(best, static_cast<double>(words * sizeof(uint64_t)) / seconds);
  }
  volatile uint64_t keep = sums[0];
  (void)keep;
  return best;
}

}  // namespace gon::cpu
