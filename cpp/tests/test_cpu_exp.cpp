// Tests of the vectorised CPU attention kernels' e^x (attention.hpp: exp512 of
// the AVX-512 kernel, exp256 of the AVX2 one), through avx512::exp_lanes and
// avx2::exp_lanes:
//  * each against double-precision exp, within 1.3 ulp over [-104, 88.7]
//    (subnormal results included), on a stride through every float bit pattern
//    and on fresh random inputs;
//  * the edges: 0 below -104 (and for -inf and NaN), inputs above 88.7 clamped
//    to it, e^0 = 1 exactly;
//  * the two bit for bit against each other where this CPU runs both, since
//    the AVX2 kernel promises the AVX-512 kernel's softmax weights.
// A set runs when the runtime would pick its attention kernel on this CPU
// (matmul_kernels of avx512bf16 / avx2); otherwise the test says it skipped it.
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/attention.hpp"
#include "backend/cpu/matmul.hpp"
#include "test_util.hpp"

namespace {

using namespace gon::cpu;

#if GON_HAVE_AVX512_KERNELS
struct ExpSet {
  const char* name;
  void (*fn)(const float*, float*, size_t);
};

std::vector<ExpSet> sets() {
  std::vector<ExpSet> v;
  if (matmul_kernels("avx512bf16"))
    v.push_back({"avx512 (exp512)", &avx512::exp_lanes});
  else
    std::printf("  note: this CPU cannot run the AVX-512 kernels; exp512 not tested\n");
  if (matmul_kernels("avx2"))
    v.push_back({"avx2 (exp256)", &avx2::exp_lanes});
  else
    std::printf("  note: this CPU cannot run the AVX2 kernels; exp256 not tested\n");
  return v;
}

// Error of y against exp(x) in float ulps at the reference (2^-149 below the
// normal range).
double ulp_error(float x, float y) {
  const double r = std::exp(static_cast<double>(x));
  const double ulp = r < 0x1p-126 ? 0x1p-149 : std::ldexp(1.0, std::ilogb(r) - 23);
  return std::fabs(static_cast<double>(y) - r) / ulp;
}

struct Stats {
  double worst = 0;
  float worst_x = 0;
  long checked = 0, bad = 0;
};

// Checks one buffer of inputs against double exp and the edges; returns the
// outputs of every set (outs[s]) for the cross-set comparison.
void check_buffer(const std::vector<ExpSet>& ss, const std::vector<float>& x, std::vector<std::vector<float>>& outs,
                  std::vector<Stats>& st, float clamp_value_of[]) {
  for (size_t s = 0; s < ss.size(); ++s) {
    outs[s].resize(x.size());
    ss[s].fn(x.data(), outs[s].data(), x.size());
    Stats& t = st[s];
    for (size_t i = 0; i < x.size(); ++i) {
      const float xi = x[i], yi = outs[s][i];
      bool ok;
      if (std::isnan(xi) || xi < kExpMin) {
        ok = std::bit_cast<uint32_t>(yi) == 0u;  // +0
      } else if (xi > kExpMax) {
        ok = std::bit_cast<uint32_t>(yi) == std::bit_cast<uint32_t>(clamp_value_of[s]);
      } else {
        const double e = ulp_error(xi, yi);
        if (e > t.worst) t.worst = e, t.worst_x = xi;
        ok = e <= 1.3;
      }
      ++t.checked;
      if (!ok && t.bad++ < 5)
        std::printf("  %s: x = %a gives %a (double exp %a)\n", ss[s].name, xi, yi, std::exp(static_cast<double>(xi)));
    }
  }
  for (size_t s = 1; s < ss.size(); ++s)
    for (size_t i = 0; i < x.size(); ++i)
      if (std::bit_cast<uint32_t>(outs[s][i]) != std::bit_cast<uint32_t>(outs[0][i]) && st[s].bad++ < 5)
        std::printf("  %s and %s differ at x = %a: %a against %a\n", ss[s].name, ss[0].name, x[i], outs[s][i],
                    outs[0][i]);
}

TEST(exp_lanes_match_double_exp_and_each_other) {
  const std::vector<ExpSet> ss = sets();
  if (ss.empty()) return;
  // The clamp: every input above kExpMax must give what kExpMax gives, which
  // itself is within 1.3 ulp of e^kExpMax.
  float clamp_value_of[2];
  for (size_t s = 0; s < ss.size(); ++s) {
    std::vector<float> in(16, kExpMax), out(16);
    ss[s].fn(in.data(), out.data(), 16);
    clamp_value_of[s] = out[0];
    CHECK(ulp_error(kExpMax, out[0]) <= 1.3);
  }
  std::vector<Stats> st(ss.size());
  std::vector<std::vector<float>> outs(ss.size());
  std::vector<float> x;
  x.reserve(1 << 16);
  auto flush = [&] {
    while (x.size() % 16) x.push_back(0.0f);
    check_buffer(ss, x, outs, st, clamp_value_of);
    x.clear();
  };
  // A stride through all 2^32 bit patterns (both signs, subnormals, infinities, NaNs), starting at a fresh offset.
  std::mt19937_64 rng(gon_test::seed());
  const uint64_t stride = 61;
  for (uint64_t u = rng() % stride; u < (uint64_t{1} << 32); u += stride) {
    x.push_back(std::bit_cast<float>(static_cast<uint32_t>(u)));
    if (x.size() == (1u << 16)) flush();
  }
  // Fresh random inputs where it matters (softmax arguments are <= 0), and the edges.
  std::uniform_real_distribution<float> neg(-110.0f, 0.0f), all(-110.0f, 95.0f);
  for (int i = 0; i < (1 << 20); ++i) {
    x.push_back(i % 4 ? neg(rng) : all(rng));
    if (x.size() == (1u << 16)) flush();
  }
  const float inf = std::numeric_limits<float>::infinity();
  for (float e : {0.0f, -0.0f, kExpMin, std::nextafter(kExpMin, 0.0f), std::nextafter(kExpMin, -inf), kExpMax,
                  std::nextafter(kExpMax, inf), std::nextafter(kExpMax, 0.0f), -inf, inf,
                  std::numeric_limits<float>::quiet_NaN(), -87.3365f, -103.28f, 1e-30f, -1e-30f,
                  std::numeric_limits<float>::denorm_min(), 0.5f * kLn2Hi, -0.5f * kLn2Hi, 88.0f})
    x.push_back(e);
  flush();
  // e^0 is exactly 1.
  for (size_t s = 0; s < ss.size(); ++s) {
    std::vector<float> zero(16, 0.0f), one(16);
    ss[s].fn(zero.data(), one.data(), 16);
    CHECK(one[0] == 1.0f);
  }
  for (size_t s = 0; s < ss.size(); ++s) {
    std::printf("  %s: %ld inputs, worst %.3f ulp (at x = %a)%s\n", ss[s].name, st[s].checked, st[s].worst,
                st[s].worst_x, s ? "; bit for bit equal to the first set's" : "");
    CHECK(st[s].bad == 0);
    CHECK(st[s].worst <= 1.3);
  }
}
#else
TEST(exp_lanes_not_built) { std::printf("  note: no x86-64 vector kernels in this build\n"); }
#endif

}  // namespace

GON_TEST_MAIN()
