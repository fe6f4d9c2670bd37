// Backend plumbing for the op harness (test_ops.cpp) and its timing mode
// (op_timing.hpp): the backends under test, buffers in backend memory, and the
// residual stream of an executor.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/backend.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"
#include "backend/registry.hpp"
#include "test_util.hpp"

namespace gon_test::ops {

using gon::Backend;
using gon::Executor;

inline std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
inline std::string fmt(const char* f, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

// ---- the backends under test ------------------------------------------------
struct BackendUnderTest {
  std::string name;  // "cpu/generic", "cpu/avx2", "cpu/avx512bf16", "cpu/avx512amx", "cuda"
  std::unique_ptr<Backend> backend;
};

// The backends this binary can run: the CPU with each kernel set this machine
// runs, and CUDA when it is built and usable. `threads`: CPU worker threads (0 =
// one per core). Prints what it leaves out; a CUDA backend that is usable but
// cannot be created counts as a test failure.
inline std::vector<BackendUnderTest> usable_backends(int threads) {
  std::vector<BackendUnderTest> v;
  for (const char* isa : gon::cpu::kMatmulKernelSets) {
    const gon::cpu::MatmulKernels* k = gon::cpu::matmul_kernels(isa);
    if (k == nullptr) {
      std::printf("  backend cpu/%s: this CPU or build cannot run it\n", isa);
      continue;
    }
    v.push_back({std::string("cpu/") + isa, std::make_unique<gon::cpu::CpuBackend>(threads, k)});
  }
  if (gon::cuda_backend_usable()) {
    try {
      v.push_back({"cuda", gon::create_backend("cuda", 0)});
    } catch (const gon::Error& e) {
      std::printf("  backend cuda: usable but could not be created: %s\n", e.what());
      ++gon_test::failures();
    }
  } else {
    std::printf("  backend cuda: not usable here (%s)\n",
                gon::cuda_backend_built() ? "built, no usable GPU" : "not built");
  }
  return v;
}

// ---- backend memory -------------------------------------------------------------
class DeviceBuffer {
 public:
  DeviceBuffer(Backend& be, size_t bytes) : be_(&be), bytes_(std::max<size_t>(bytes, 1)) {
    p_ = be.allocate(bytes_, false);
  }
  ~DeviceBuffer() {
    if (p_ != nullptr) be_->release(p_, false);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  template <typename T>
  void upload(const std::vector<T>& v) {
    if (v.size() * sizeof(T) > bytes_) GON_TEST_ABORT("upload larger than the buffer");
    be_->copy_to_device(p_, v.data(), v.size() * sizeof(T));
  }
  template <typename T>
  std::vector<T> download(size_t count) const {
    std::vector<T> v(count);
    be_->copy_to_host(v.data(), p_, count * sizeof(T));
    return v;
  }

 private:
  [[noreturn]] static void GON_TEST_ABORT(const char* m) {
    std::printf("test harness error: %s\n", m);
    std::abort();
  }
  Backend* be_;
  size_t bytes_;
  void* p_ = nullptr;
};

template <typename T>
std::unique_ptr<DeviceBuffer> to_device(Backend& be, const std::vector<T>& v) {
  auto b = std::make_unique<DeviceBuffer>(be, v.size() * sizeof(T));
  b->upload(v);
  return b;
}

inline std::vector<int32_t> random_tokens(std::mt19937_64& rng, int n, int V) {
  std::uniform_int_distribution<int> d(0, V - 1);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = d(rng);
  return t;
}

inline void set_residual(Backend& be, Executor& ex, const std::vector<float>& x) {
  be.copy_to_device(ex.residual(), x.data(), x.size() * sizeof(float));
}
inline std::vector<float> get_residual(Backend& be, Executor& ex, size_t n) {
  ex.synchronize();
  std::vector<float> x(n);
  be.copy_to_host(x.data(), ex.residual(), n * sizeof(float));
  return x;
}

}  // namespace gon_test::ops
