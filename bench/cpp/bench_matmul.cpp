// Micro-benchmark of the CPU matrix products (backend/cpu/matmul.hpp).
//
// Runs the gpt-oss shapes the runtime uses on two threads, each computing half
// of the output rows [0, N), or with --units the way the runtime splits them
// (~1 MiB work units taken on demand, each starting cold). Prints, per shape
// and batch size M, the best (and median) time over many iterations, the weight bytes
// read per second (the figure of merit when M = 1, where a product is bound by
// memory bandwidth) and GFLOP/s (2*M*N*K / time; the figure of merit for
// prefill, which is bound by compute). The baseline is a plain streaming read
// (sum over a 2 GB buffer with the same two threads, in 128 MiB slices timed
// like the products); the lines give their bandwidth as a share of its best.
//
// Weights are cycled through several copies totalling >= 512 MiB so every
// product reads them from memory, as in a model whose other layers evict them.
// --file puts them in (unlinked) files mapped read-only, as the runtime maps a
// checkpoint. --cold-x cycles the packed activations through as many copies
// (one per weight copy), so each call reads them from memory or L3 as the
// runtime's experts do (each expert's rows are packed afresh), instead of one
// buffer that stays in L2. --peak first measures one core's fp32 FMA throughput and latency
// (zmm and ymm), the compute floor the GFLOP/s figures are to be read against.
//
//   bench_matmul [--impl avx512bf16|avx512amx|avx2|generic|all] [--quick] [--no-baseline] [--peak]
//                [--hugepages] [--file] [--units] [--cold-x] [--case bf16|mxfp4 N K M[,M...]]...
//   (default: every kernel set this CPU runs, as the runtime's own tables; avx512
//    and amx are short for avx512bf16 and avx512amx; the gpt-oss shapes unless
//    --case names others)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#include <unistd.h>
#endif

#include "backend/cpu/matmul.hpp"
#include "backend/cpu/matmul_impl.hpp"

#if GON_HAVE_AVX512_KERNELS
#include <immintrin.h>
#endif

namespace {

using namespace gon::cpu;
using Clock = std::chrono::steady_clock;

// ---- a persistent pair of threads ----------------------------------------

// The calling thread is worker 0; one std::thread is worker 1 and spins on a
// generation counter between jobs (no creation or sleeping inside timings).
class Pair {
 public:
  Pair() : other_([this] { loop(); }) {}
  ~Pair() {
    stop_.store(true, std::memory_order_release);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    other_.join();
  }
  // Runs job(0) here and job(1) on the other thread; returns when both are done.
  void run(const std::function<void(int)>& job) {
    job_ = &job;
    done_.store(0, std::memory_order_relaxed);
    generation_.fetch_add(1, std::memory_order_acq_rel);
    job(0);
    while (done_.load(std::memory_order_acquire) == 0) {
    }
  }

 private:
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t g;
      while ((g = generation_.load(std::memory_order_acquire)) == seen) {
      }
      seen = g;
      if (stop_.load(std::memory_order_acquire)) return;
      (*job_)(1);
      done_.store(1, std::memory_order_release);
    }
  }
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> done_{0};
  std::atomic<bool> stop_{false};
  std::thread other_;
};

// ---- helpers ---------------------------------------------------------------

// --units: the two threads take the runtime's ~1 MiB work units on demand
// (bf16_unit_rows / mxfp4_balanced_unit_rows) instead of one half of the rows each, so
// every unit starts its prefetch cold, as in the runtime.
bool g_units = false;

// 2 MiB-aligned buffer; with --hugepages it asks for transparent huge pages
// (madvise), otherwise it gets whatever the system's default is.
bool g_hugepages = false;
struct Buffer {
  std::unique_ptr<uint8_t[]> raw;
  uint8_t* p = nullptr;
  size_t n = 0;
  bool mapped = false;  // p is a file mapping (to_file_mapping)
  Buffer() = default;
  Buffer(Buffer&& o) noexcept : raw(std::move(o.raw)), p(o.p), n(o.n), mapped(o.mapped) { o.p = nullptr, o.mapped = false; }
  Buffer& operator=(Buffer&& o) noexcept {
    std::swap(raw, o.raw), std::swap(p, o.p), std::swap(n, o.n), std::swap(mapped, o.mapped);
    return *this;
  }
  ~Buffer() {
#if defined(__linux__)
    if (mapped) munmap(p, n);
#endif
  }
};

// With --file, weights are written to an unlinked temporary file and read
// through a read-only private mapping of it, as the runtime reads a
// checkpoint (page-cache pages instead of anonymous memory).
bool g_file = false;

// --cold-x: one packed activation buffer per weight copy (see the file comment).
bool g_cold_x = false;

void to_file_mapping(Buffer& b) {
#if defined(__linux__)
  char name[] = "/tmp/bench_matmul_XXXXXX";
  const int fd = mkstemp(name);
  if (fd < 0) std::perror("mkstemp"), std::exit(1);
  unlink(name);
  for (size_t off = 0; off < b.n;) {
    const ssize_t w = write(fd, b.p + off, b.n - off);
    if (w <= 0) std::perror("write"), std::exit(1);
    off += static_cast<size_t>(w);
  }
  void* p = mmap(nullptr, b.n, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) std::perror("mmap"), std::exit(1);
  madvise(p, b.n, MADV_WILLNEED);
  volatile uint8_t sink = 0;
  for (size_t off = 0; off < b.n; off += 4096) sink = sink + static_cast<const uint8_t*>(p)[off];  // map every page
  b.raw.reset();
  b.p = static_cast<uint8_t*>(p);
  b.mapped = true;
#else
  (void)b;
#endif
}

Buffer alloc(size_t n) {
  constexpr size_t kAlign = size_t{2} << 20;
  Buffer b;
  b.raw.reset(new uint8_t[n + kAlign]);
  b.p = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(b.raw.get()) + kAlign - 1) & ~(kAlign - 1));
  b.n = n;
#ifdef MADV_HUGEPAGE
  if (g_hugepages && n >= kAlign) madvise(b.p, n / kAlign * kAlign, MADV_HUGEPAGE);
#endif
  return b;
}

uint64_t next(uint64_t& s) {  // xorshift64*
  s ^= s >> 12, s ^= s << 25, s ^= s >> 27;
  return s * 0x2545f4914f6cdd1dull;
}

// Fills bf16 weights ~ N(0, 0.02)-ish (sum of uniforms), MXFP4 bytes uniform,
// scales in 118..124; split over the pair.
void fill_bf16(Pair& pair, uint16_t* w, size_t n) {
  pair.run([&](int t) {
    uint64_t s = 0x9e3779b97f4a7c15ull * (t + 1);
    for (size_t i = n * t / 2; i < n * (t + 1) / 2; ++i) {
      const uint64_t r = next(s);
      const float v = (static_cast<float>(r & 0xffff) + static_cast<float>((r >> 16) & 0xffff) - 65535.f) * 4e-7f;
      uint32_t u;
      std::memcpy(&u, &v, 4);
      w[i] = static_cast<uint16_t>(u >> 16);
    }
  });
}
void fill_bytes(Pair& pair, uint8_t* p, size_t n, int lo, int hi) {
  pair.run([&](int t) {
    uint64_t s = 0x1234567ull * (t + 3);
    for (size_t i = n * t / 2; i < n * (t + 1) / 2; ++i)
      p[i] = static_cast<uint8_t>(lo + static_cast<int>(next(s) % static_cast<uint64_t>(hi - lo + 1)));
  });
}

struct Timing {
  double best, median;  // seconds
};

// Runs job(iteration, thread) on the pair until ~budget seconds have passed
// (at least a few iterations); the machine is shared, so report the best and
// the median iteration. `before` (if any) runs before each iteration, untimed.
Timing time_it(Pair& pair, const std::function<void(int /*iteration*/, int /*thread*/)>& job, bool quick,
               const std::function<void()>& before = {}) {
  std::vector<double> t;
  double total = 0;
  const double budget = quick ? 0.3 : 1.5;
  const int min_iters = quick ? 3 : 5, max_iters = 2000;
  for (int it = 0; it < max_iters && (it < min_iters || total < budget); ++it) {
    if (before) before();
    const auto t0 = Clock::now();
    pair.run([&](int th) { job(it, th); });
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    total += t.back();
  }
  std::sort(t.begin(), t.end());
  return {t.front(), t[t.size() / 2]};
}

// ---- the streaming-read baseline -------------------------------------------

// A plain sum of 64-bit words, each thread reading half of a 128 MiB slice
// (a different slice of a 2 GiB buffer each iteration, so nothing is cached),
// timed the same way as the products. Returns GB/s (best, median).
Timing read_bandwidth(Pair& pair, bool quick) {
  const size_t bytes = size_t{2} << 30, slice = size_t{128} << 20, slices = bytes / slice;
  Buffer buf = alloc(bytes);
  pair.run([&](int t) { std::memset(buf.p + bytes * t / 2, 1, bytes / 2); });
  std::atomic<uint64_t> sink{0};
  const Timing tm = time_it(pair, [&](int it, int t) {
    const uint64_t* p = reinterpret_cast<const uint64_t*>(buf.p + (it % slices) * slice + slice * t / 2);
    const size_t n = slice / 2 / 8;
    uint64_t a[8] = {};
    for (size_t i = 0; i < n; i += 8)
      for (int j = 0; j < 8; ++j) a[j] += p[i + j];
    uint64_t sum = 0;
    for (uint64_t v : a) sum += v;
    sink += sum;
  }, quick);
  return {slice / tm.best / 1e9, slice / tm.median / 1e9};
}

// ---- the products --------------------------------------------------------------

enum class Format { kBf16, kMxfp4 };

void bench_shape(Pair& pair, const std::vector<const MatmulKernels*>& impls, Format f, int N, int K,
                 const std::vector<int>& Ms, double read_gbs, bool quick) {
  const size_t nb = static_cast<size_t>(K / 32);
  const size_t weight_bytes = f == Format::kBf16 ? static_cast<size_t>(N) * K * 2 : N * nb * 17;
  const size_t copies = std::max<size_t>(1, ((size_t{512} << 20) + weight_bytes - 1) / weight_bytes);
  std::vector<Buffer> w(copies), s(copies);
  for (size_t c = 0; c < copies; ++c) {
    if (f == Format::kBf16) {
      w[c] = alloc(weight_bytes);
      fill_bf16(pair, reinterpret_cast<uint16_t*>(w[c].p), static_cast<size_t>(N) * K);
    } else {
      w[c] = alloc(N * nb * 16);
      s[c] = alloc(N * nb);
      fill_bytes(pair, w[c].p, N * nb * 16, 0, 255);
      fill_bytes(pair, s[c].p, N * nb, 118, 124);
    }
    if (g_file) {
      to_file_mapping(w[c]);
      if (s[c].p) to_file_mapping(s[c]);
    }
  }
  std::vector<uint16_t> bias(N, 0x3c00);
  const int max_m = *std::max_element(Ms.begin(), Ms.end());
  std::vector<float> x(static_cast<size_t>(max_m) * K);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
  Buffer y = alloc(static_cast<size_t>(max_m) * N * sizeof(float));

  for (int M : Ms) {
    for (const MatmulKernels* impl : impls) {
      std::vector<Buffer> packs(g_cold_x ? copies : 1);
      for (Buffer& pk : packs) {
        pk = alloc(impl->packed_bytes(M, K));
        impl->pack(x.data(), K, nullptr, M, K, 0, M, pk.p);
      }
      float* yp = reinterpret_cast<float*>(y.p);
      // --units: the runtime's work units, taken on demand (ThreadPool::parallel_chunks)
      const int64_t unit = f == Format::kBf16 ? bf16_unit_rows(K) : mxfp4_balanced_unit_rows(K, N, 2);
      std::atomic<int64_t> next_unit{0};
      auto rows = [&](size_t c, int n0, int n1) {
        const void* packed = packs[g_cold_x ? c : 0].p;
        if (f == Format::kBf16)
          impl->bf16(reinterpret_cast<const uint16_t*>(w[c].p), K, bias.data(), packed, M, K, yp, N, n0, n1, false);
        else
          impl->mxfp4(w[c].p, s[c].p, bias.data(), packed, M, K, yp, N, n0, n1, false);
      };
      const Timing tm = time_it(pair, [&](int it, int t) {
        const size_t c = static_cast<size_t>(it) % copies;
        if (!g_units) return rows(c, N * t / 2, N * (t + 1) / 2);
        for (int64_t b; (b = next_unit.fetch_add(unit, std::memory_order_relaxed)) < N;)
          rows(c, static_cast<int>(b), static_cast<int>(std::min<int64_t>(N, b + unit)));
      }, quick || (impl->name[0] == 'g' && static_cast<double>(M) * N * K > 5e9),
      [&] { next_unit.store(0, std::memory_order_relaxed); });
      const double gbs = weight_bytes / tm.best / 1e9, gflops = 2.0 * M * N * K / tm.best / 1e9;
      const double gbs_med = weight_bytes / tm.median / 1e9, gflops_med = 2.0 * M * N * K / tm.median / 1e9;
      std::printf("%-5s %6dx%-5d M=%-4d %-10s %9.3f ms %6.1f GB/s (%3.0f%% of read) %6.1f GFLOP/s | median %6.1f GB/s %6.1f GFLOP/s\n",
                  f == Format::kBf16 ? "bf16" : "mxfp4", N, K, M, impl->name, tm.best * 1e3, gbs,
                  100.0 * gbs / read_gbs, gflops, gbs_med, gflops_med);
      std::fflush(stdout);
    }
  }
}

// ---- the core's FMA peak ------------------------------------------------------

// n FMAs in `chains` independent accumulators of `Vec`, timed on this thread
// (seconds); the sum of the lanes is returned through *sink so nothing is
// optimised away.
#if GON_HAVE_AVX512_KERNELS
__attribute__((target("avx512f"))) double fma_run_zmm(int chains, int64_t n, float* sink) {
  __m512 acc[16];
  for (int c = 0; c < 16; ++c) acc[c] = _mm512_set1_ps(1.0f + c * 1e-3f);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  const auto t0 = Clock::now();
  if (chains == 1) {
    for (int64_t i = 0; i < n; ++i) acc[0] = _mm512_fmadd_ps(acc[0], a, b);
  } else {
    for (int64_t i = 0; i < n; i += 16)
      for (int c = 0; c < 16; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  __m512 t = acc[0];
  for (int c = 1; c < 16; ++c) t = _mm512_add_ps(t, acc[c]);
  *sink += _mm512_reduce_add_ps(t);
  return s;
}
__attribute__((target("avx2,fma"))) double fma_run_ymm(int chains, int64_t n, float* sink) {
  __m256 acc[12];
  for (int c = 0; c < 12; ++c) acc[c] = _mm256_set1_ps(1.0f + c * 1e-3f);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  const auto t0 = Clock::now();
  if (chains == 1) {
    for (int64_t i = 0; i < n; ++i) acc[0] = _mm256_fmadd_ps(acc[0], a, b);
  } else {
    for (int64_t i = 0; i < n; i += 12)
      for (int c = 0; c < 12; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  __m256 t = acc[0];
  for (int c = 1; c < 12; ++c) t = _mm256_add_ps(t, acc[c]);
  alignas(32) float l[8];
  _mm256_store_ps(l, t);
  for (float v : l) *sink += v;
  return s;
}

// One core's FMA throughput (many chains) and latency (one chain): best of 5.
// The latency is 4 cycles on the cores this was written for (Zen 3/4, Intel
// since Skylake), so 4 / latency estimates the clock under that load.
void fma_peak() {
  float sink = 0;
  const int64_t n = int64_t{1} << 27;
  struct W {
    const char* name;
    double (*run)(int, int64_t, float*);
    int lanes;
    bool ok;
  } ws[] = {{"zmm", fma_run_zmm, 16, avx512::cpu_supported()}, {"ymm", fma_run_ymm, 8, avx2::cpu_supported()}};
  for (const W& w : ws) {
    if (!w.ok) continue;
    double thr = 1e9, lat = 1e9;
    for (int r = 0; r < 5; ++r) {
      thr = std::min(thr, w.run(16, n, &sink));
      lat = std::min(lat, w.run(1, n / 8, &sink));
    }
    const double per_ns = n / thr / 1e9, lat_ns = lat / (n / 8) * 1e9, ghz = 4.0 / lat_ns;
    std::printf("FMA %s, one core: %.2f per ns = %.1f GFLOP/s; latency %.3f ns (%.2f GHz if 4 cycles), "
                "%.2f per cycle\n", w.name, per_ns, per_ns * w.lanes * 2, lat_ns, ghz, per_ns / ghz);
  }
  if (sink == 12345.f) std::printf("%g\n", sink);
}
#endif

}  // namespace

int main(int argc, char** argv) {
  std::string which = "both";
  bool quick = false, baseline = true, peak = false;
  struct Case {
    Format f;
    int N, K;
    std::vector<int> Ms;
  };
  std::vector<Case> cases;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--impl") && i + 1 < argc) {
      which = argv[++i];
    } else if (!std::strcmp(argv[i], "--quick")) {
      quick = true;
    } else if (!std::strcmp(argv[i], "--peak")) {
      peak = true;
    } else if (!std::strcmp(argv[i], "--no-baseline")) {
      baseline = false;
    } else if (!std::strcmp(argv[i], "--hugepages")) {
      g_hugepages = true;
    } else if (!std::strcmp(argv[i], "--file")) {
      g_file = true;
    } else if (!std::strcmp(argv[i], "--units")) {
      g_units = true;
    } else if (!std::strcmp(argv[i], "--cold-x")) {
      g_cold_x = true;
    } else if (!std::strcmp(argv[i], "--case") && i + 4 < argc) {
      Case c{!std::strcmp(argv[i + 1], "mxfp4") ? Format::kMxfp4 : Format::kBf16, std::atoi(argv[i + 2]),
             std::atoi(argv[i + 3]), {}};
      for (const char* p = argv[i + 4]; *p;) {
        c.Ms.push_back(std::atoi(p));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
      if (c.N < 2 || c.K < 32 || c.K % 32 || c.Ms.empty()) {
        std::fprintf(stderr, "--case: need N >= 2, K a multiple of 32, M list\n");
        return 2;
      }
      cases.push_back(c);
      i += 4;
    } else {
      std::fprintf(stderr, "usage: %s [--impl avx512bf16|avx512amx|avx2|generic|all] [--quick] [--no-baseline] "
                   "[--hugepages] [--file] [--units] [--cold-x] [--peak] [--case bf16|mxfp4 N K M[,M...]]...\n", argv[0]);
      return 2;
    }
  }
  // The runtime's own kernel tables (matmul_kernels), strongest first; --impl
  // takes a set's name or its short form (avx512 = avx512bf16, amx = avx512amx).
  if (which == "avx512") which = "avx512bf16";
  if (which == "amx") which = "avx512amx";
  std::vector<const MatmulKernels*> impls;
  bool known = which == "both" || which == "all";
  for (int i = static_cast<int>(std::size(kMatmulKernelSets)) - 1; i >= 0; --i) {
    const char* set = kMatmulKernelSets[i];
    if (which != "both" && which != "all" && which != set) continue;
    known = true;
    if (const MatmulKernels* k = matmul_kernels(set)) impls.push_back(k);
  }
  if (!known || impls.empty()) {
    std::fprintf(stderr, "--impl %s: %s\n", which.c_str(),
                 known ? "this CPU or build lacks that kernel set" : "unknown kernel set");
    return 2;
  }
  std::printf("matmul_isa() = %s; 2 threads, %s%s; best and median of many iterations\n", matmul_isa(),
              g_units ? "~1 MiB work units of output rows taken on demand" : "each half of the output rows",
              g_cold_x ? ", activations cycled through copies" : "");

#if GON_HAVE_AVX512_KERNELS
  if (peak) fma_peak();
#endif
  (void)peak;
  Pair pair;
  double read_gbs = 32.0;
  if (baseline) {
    const Timing r = read_bandwidth(pair, quick);  // GB/s here
    read_gbs = r.best;
    std::printf("streaming read baseline (128 MiB slices of 2 GiB, 2 threads): best %.1f GB/s, median %.1f GB/s\n",
                r.best, r.median);
  } else {
    std::printf("no baseline measured; percentages are of %.0f GB/s\n", read_gbs);
  }

  if (cases.empty()) {
    const std::vector<int> prefill = {1, 8, 32, 128, 512};
    cases = {{Format::kBf16, 201088, 2880, {1, 8}},  {Format::kBf16, 5120, 2880, prefill},
             {Format::kBf16, 2880, 4096, prefill},   {Format::kMxfp4, 5760, 2880, prefill},
             {Format::kMxfp4, 2880, 2880, prefill}};
  }
  for (const Case& c : cases) bench_shape(pair, impls, c.f, c.N, c.K, c.Ms, read_gbs, quick);
  return 0;
}
