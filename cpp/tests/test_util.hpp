// A minimal test harness for the C++ tests (no external framework).
//
// Each test binary defines TEST(name) { ... } blocks and uses CHECK / CHECK_NEAR
// / CHECK_THROWS_STATUS; main() comes from GON_TEST_MAIN(). A failed check prints
// file:line and the expression and marks the test failed; the binary's exit
// code is the number of failed tests, so CTest reports it. The binaries also
// run under AddressSanitizer and UndefinedBehaviorSanitizer in CI.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "gpt_oss_native/error.hpp"

namespace gon_test {

struct Registry {
  std::vector<std::pair<std::string, std::function<void()>>> tests;
  static Registry& get() {
    static Registry r;
    return r;
  }
};
inline int& failures() {
  static int n = 0;
  return n;
}
struct Register {
  Register(const char* name, std::function<void()> fn) { Registry::get().tests.emplace_back(name, std::move(fn)); }
};

// A fresh seed per run unless GON_TEST_SEED is set; printed so a failure can be replayed.
inline uint64_t seed() {
  static uint64_t s = [] {
    const char* env = std::getenv("GON_TEST_SEED");
    uint64_t v = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::printf("GON_TEST_SEED=%llu\n", static_cast<unsigned long long>(v));
    return v;
  }();
  return s;
}

inline int run_all() {
  int failed_tests = 0;
  seed();
  for (auto& [name, fn] : Registry::get().tests) {
    int before = failures();
    try {
      fn();
    } catch (const std::exception& e) {
      std::printf("  uncaught exception: %s\n", e.what());
      ++failures();
    }
    bool ok = failures() == before;
    std::printf("[%s] %s\n", ok ? "PASS" : "FAIL", name.c_str());
    if (!ok) ++failed_tests;
  }
  std::printf("%d of %zu tests failed\n", failed_tests, Registry::get().tests.size());
  return failed_tests;
}

}  // namespace gon_test

#define GON_TEST_CAT2(a, b) a##b
#define GON_TEST_CAT(a, b) GON_TEST_CAT2(a, b)
#define TEST(name)                                                                  \
  static void name();                                                               \
  static ::gon_test::Register GON_TEST_CAT(gon_reg_, name)(#name, name);            \
  static void name()

#define CHECK(cond)                                                                 \
  do {                                                                              \
    if (!(cond)) {                                                                  \
      std::printf("  %s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);        \
      ++::gon_test::failures();                                                     \
    }                                                                               \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                       \
  do {                                                                              \
    double gon_a = (a), gon_b = (b);                                                \
    if (!(std::fabs(gon_a - gon_b) <= (tol))) {                                     \
      std::printf("  %s:%d: CHECK_NEAR(%s, %s, %s) failed: %.9g vs %.9g\n", __FILE__, \
                  __LINE__, #a, #b, #tol, gon_a, gon_b);                            \
      ++::gon_test::failures();                                                     \
    }                                                                               \
  } while (0)

// Checks that `expr` throws gon::Error with the given Status (e.g. kCorruptCheckpoint).
#define CHECK_THROWS_STATUS(expr, expected)                                           \
  do {                                                                              \
    bool gon_thrown = false;                                                        \
    try {                                                                           \
      (void)(expr);                                                                 \
    } catch (const ::gon::Error& e) {                                               \
      gon_thrown = true;                                                            \
      if (e.status() != ::gon::Status::expected) {                                    \
        std::printf("  %s:%d: %s threw %s (%s), expected %s\n", __FILE__, __LINE__, \
                    #expr, ::gon::status_name(e.status()), e.what(), #expected);      \
        ++::gon_test::failures();                                                   \
      }                                                                             \
    }                                                                               \
    if (!gon_thrown) {                                                              \
      std::printf("  %s:%d: %s did not throw\n", __FILE__, __LINE__, #expr);        \
      ++::gon_test::failures();                                                     \
    }                                                                               \
  } while (0)

#define GON_TEST_MAIN() \
  int main() { return ::gon_test::run_all(); }
