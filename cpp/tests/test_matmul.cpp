// Tests of the CPU matrix products (backend/cpu/matmul.hpp).
//
// Every implementation is tested directly, each against a float64 reference
// on fresh random inputs: the portable one always, the AVX-512 and AVX2 ones
// when this CPU can run them (otherwise it prints that it skipped). Besides accuracy
// (|y - ref| <= 1e-5 * (sum_k |w x| + |bias| + |old y|) + 1e-6) they check the
// determinism contract bitwise (a row's result does not depend on M, on the
// row range of a call or on how the rows were packed), bias and accumulate
// handling, that nothing outside [n0, n1) is written, the MXFP4 decode at
// extreme scales, and the dispatching entry points.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "backend/cpu/matmul.hpp"
#include "test_util.hpp"

namespace {

using namespace gon::cpu;

// ---- the implementations under test ----------------------------------------

// The kernel sets this CPU runs, as the runtime's own tables (matmul_kernels).
using Impl = MatmulKernels;

const std::vector<Impl>& impls() {
  static const std::vector<Impl> list = [] {
    std::vector<Impl> v;
    for (const char* set : kMatmulKernelSets) {
      if (const MatmulKernels* k = matmul_kernels(set))
        v.push_back(*k);
      else
        std::printf("  note: this CPU, OS or build cannot run the %s kernels; skipping them\n", set);
    }
    return v;
  }();
  return list;
}

// ---- random inputs ---------------------------------------------------------

std::mt19937_64& rng() {
  static std::mt19937_64 r(gon_test::seed());
  return r;
}

uint16_t to_bf16(float f) {  // round to nearest even (inputs are finite)
  uint32_t u = std::bit_cast<uint32_t>(f);
  u += 0x7fff + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}
double bf16_value(uint16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }

constexpr double kFp4[16] = {0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6};
double fp4_value(const uint8_t* blocks, const uint8_t* scales, int K, int n, int k) {
  const size_t b = static_cast<size_t>(n) * (K / 32) + k / 32;
  const uint8_t byte = blocks[b * 16 + (k % 32) / 2];
  return std::ldexp(kFp4[k % 2 ? byte >> 4 : byte & 15], scales[b] - 127);
}

std::vector<float> random_x(size_t count) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> x(count);
  for (float& v : x) v = u(rng()) < 0.01f ? nd(rng()) * 100.f : nd(rng());
  return x;
}

// Weights of one problem in both formats; w_bf16 rows have stride ldw.
struct Weights {
  int N = 0, K = 0;
  size_t ldw = 0;
  std::vector<uint16_t> bf16;    // [(N - 1) * ldw + K], sized exactly so ASan sees overreads
  std::vector<uint8_t> blocks;   // [N * K/32 * 16]
  std::vector<uint8_t> scales;   // [N * K/32]
  std::vector<uint16_t> bias;    // [N]
};

Weights random_weights(int N, int K, size_t ldw, bool extreme_scales = true) {
  Weights w;
  w.N = N, w.K = K, w.ldw = ldw;
  std::normal_distribution<float> nd(0.f, 0.02f);
  std::uniform_int_distribution<int> byte(0, 255), scale(115, 125);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  w.bf16.assign(static_cast<size_t>(N - 1) * ldw + K, 0);
  for (int n = 0; n < N; ++n)
    for (int k = 0; k < K; ++k) w.bf16[n * ldw + k] = to_bf16(nd(rng()));
  const size_t nb = static_cast<size_t>(N) * (K / 32);
  w.blocks.resize(nb * 16);
  for (uint8_t& b : w.blocks) b = static_cast<uint8_t>(byte(rng()));
  w.scales.resize(nb);
  // A few extreme scales (0 and 1 give subnormal weights); the largest ones,
  // near overflow, are covered by mxfp4_all_scales.
  static constexpr uint8_t kExtremes[] = {0, 1, 2, 3, 60, 100, 140, 160, 200};
  for (uint8_t& s : w.scales)
    s = extreme_scales && u(rng()) < 0.03f ? kExtremes[byte(rng()) % std::size(kExtremes)]
                                           : static_cast<uint8_t>(scale(rng()));
  w.bias.resize(N);
  for (uint16_t& b : w.bias) b = to_bf16(nd(rng()) * 25.f);
  return w;
}

enum class Format { kBf16, kMxfp4 };
const char* format_name(Format f) { return f == Format::kBf16 ? "bf16" : "mxfp4"; }

double weight(const Weights& w, Format f, int n, int k) {
  return f == Format::kBf16 ? bf16_value(w.bf16[n * w.ldw + k])
                            : fp4_value(w.blocks.data(), w.scales.data(), w.K, n, k);
}

// Packs M rows of x (row stride ldx) with `impl`, optionally in several pieces.
std::vector<uint8_t> pack(const Impl& impl, const float* x, size_t ldx, const int32_t* rows, int M, int K,
                          int pieces = 1) {
  std::vector<uint8_t> p(impl.packed_bytes(M, K));
  for (int i = 0; i < pieces; ++i) impl.pack(x, ldx, rows, M, K, M * i / pieces, M * (i + 1) / pieces, p.data());
  return p;
}

void run(const Impl& impl, Format f, const Weights& w, const bool with_bias, const void* packed, int M, float* y,
         size_t ldy, int n0, int n1, bool accumulate) {
  const uint16_t* bias = with_bias ? w.bias.data() : nullptr;
  if (f == Format::kBf16)
    impl.bf16(w.bf16.data(), w.ldw, bias, packed, M, w.K, y, ldy, n0, n1, accumulate);
  else
    impl.mxfp4(w.blocks.data(), w.scales.data(), bias, packed, M, w.K, y, ldy, n0, n1, accumulate);
}

bool same_bits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

// One accuracy case: computes rows [n0, n1) of y (M x N, stride ldy = N + 3)
// and compares with the float64 reference; everything else must be untouched.
// Returns the number of elements that failed.
int check_case(const Impl& impl, Format f, const Weights& w, int M, bool with_bias, bool accumulate, int n0,
               int n1) {
  const int N = w.N, K = w.K;
  const size_t ldx = K + 5, ldy = N + 3;
  std::vector<float> x = random_x((M - 1) * ldx + K);
  std::vector<uint8_t> packed = pack(impl, x.data(), ldx, nullptr, M, K, M > 2 ? 2 : 1);
  std::vector<float> y(M * ldy), y_old(M * ldy);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (size_t i = 0; i < y.size(); ++i) y_old[i] = y[i] = accumulate ? u(rng()) : nan;
  run(impl, f, w, with_bias, packed.data(), M, y.data(), ldy, n0, n1, accumulate);

  int bad = 0;
  for (int m = 0; m < M; ++m) {
    for (int n = 0; n < static_cast<int>(ldy); ++n) {
      const size_t at = m * ldy + n;
      if (n < n0 || n >= n1) {  // must be untouched
        if (!same_bits(y[at], y_old[at]) && !(std::isnan(y[at]) && std::isnan(y_old[at]))) ++bad;
        continue;
      }
      double sum = 0, abs_sum = 0;
      for (int k = 0; k < K; ++k) {
        const double p = weight(w, f, n, k) * static_cast<double>(x[m * ldx + k]);
        sum += p;
        abs_sum += std::fabs(p);
      }
      double ref = sum, scale = abs_sum;
      if (with_bias) ref += bf16_value(w.bias[n]), scale += std::fabs(bf16_value(w.bias[n]));
      if (accumulate) ref += y_old[at], scale += std::fabs(y_old[at]);
      const double err = std::fabs(static_cast<double>(y[at]) - ref), tol = 1e-5 * scale + 1e-6;
      if (!(err <= tol)) {
        if (bad < 3)
          std::printf("  %s %s M=%d N=%d K=%d m=%d n=%d: got %.9g want %.9g (tol %.3g)\n", impl.name,
                      format_name(f), M, N, K, m, n, y[at], ref, tol);
        ++bad;
      }
    }
  }
  return bad;
}

// ---- accuracy ----------------------------------------------------------------

void accuracy_sweep(Format f) {
  std::uniform_int_distribution<int> coin(0, 1);
  for (const Impl& impl : impls()) {
    int cases = 0, failed = 0;
    for (int K : {32, 64, 96, 2880}) {
      for (int N : {1, 3, 17, 64, 257}) {
        const Weights w = random_weights(N, K, K + (N % 2 ? 0 : 32));
        for (int M : {1, 2, 5, 13, 64}) {
          if (static_cast<int64_t>(K) * N * M > 12'000'000) continue;  // keep the reference cheap
          const bool bias = coin(rng()), acc = coin(rng());
          failed += check_case(impl, f, w, M, bias, acc, 0, N) > 0;
          ++cases;
          // A subrange of the rows (possibly empty or a single row).
          std::uniform_int_distribution<int> at(0, N);
          int a = at(rng()), b = at(rng());
          if (a > b) std::swap(a, b);
          failed += check_case(impl, f, w, M, !bias, !acc, a, b) > 0;
          ++cases;
        }
      }
    }
    std::printf("  %s %s: %d of %d cases failed\n", impl.name, format_name(f), failed, cases);
    CHECK(failed == 0);
  }
}

TEST(bf16_matches_float64_reference) { accuracy_sweep(Format::kBf16); }
TEST(mxfp4_matches_float64_reference) { accuracy_sweep(Format::kMxfp4); }

// All four bias/accumulate combinations on one shape that has tails in m and n.
TEST(bias_and_accumulate_combinations) {
  for (const Impl& impl : impls())
    for (Format f : {Format::kBf16, Format::kMxfp4}) {
      const Weights w = random_weights(19, 96, 96);
      for (int bias = 0; bias < 2; ++bias)
        for (int acc = 0; acc < 2; ++acc) CHECK(check_case(impl, f, w, 7, bias, acc, 0, 19) == 0);
      CHECK(check_case(impl, f, w, 7, true, true, 5, 6) == 0);   // a single row
      CHECK(check_case(impl, f, w, 7, true, false, 9, 9) == 0);  // empty range
    }
}

// The largest K the model uses is 2880; the kernels must not depend on a limit.
TEST(large_k) {
  for (const Impl& impl : impls())
    for (Format f : {Format::kBf16, Format::kMxfp4}) {
      const Weights w = random_weights(9, 8192, 8192);
      CHECK(check_case(impl, f, w, 6, true, false, 0, 9) == 0);
      CHECK(check_case(impl, f, w, 1, false, true, 2, 9) == 0);
    }
}

// Scales of a real checkpoint only (no extremes; at K = 2880 almost every row of
// random_weights has an extreme block), at the model's K and the row counts an
// expert sees in batched decoding and prefill.
TEST(mxfp4_model_scales) {
  for (const Impl& impl : impls()) {
    int failed = 0;
    for (int N : {16, 67, 200}) {
      const Weights w = random_weights(N, 2880, 2880, false);
      for (int M : {1, 2, 3, 5, 6, 11, 21, 26}) failed += check_case(impl, Format::kMxfp4, w, M, M % 2, M % 3 == 0, 0, N) > 0;
    }
    CHECK(failed == 0);
  }
}

// Activation rows far from 1 (2^62 and 2^-70: the AMX kernel's fallback) and
// weight rows with a block at an extreme scale (MXFP4) or an extreme or
// subnormal weight (bf16), mixed with ordinary rows in one product: every
// output matches the float64 reference, and the same row computed alone bit
// for bit.
TEST(mixed_ranges) {
  const int N = 40, K = 96, M = 7;
  for (const Impl& impl : impls())
  for (Format f : {Format::kMxfp4, Format::kBf16}) {
    Weights w = random_weights(N, K, K, false);
    w.scales[3 * (K / 32) + 1] = 2;     // row 3: a block of subnormal-range weights
    w.scales[21 * (K / 32) + 2] = 180;  // row 21: a block of weights ~2^53
    w.bf16[3 * K + 5] = 0x0001;         // the same for bf16: a subnormal weight (2^-133)
    w.bf16[21 * K + 9] = to_bf16(std::ldexp(1.f, 50));
    std::vector<float> x = random_x(static_cast<size_t>(M) * K);
    for (int k = 0; k < K; ++k) x[2 * K + k] = std::ldexp(x[2 * K + k], 62), x[5 * K + k] = std::ldexp(x[5 * K + k], -70);
    x[6 * K + 7] = std::ldexp(1.f, -130);  // a subnormal activation in an ordinary row
    const std::vector<uint8_t> packed = pack(impl, x.data(), K, nullptr, M, K, 2);
    std::vector<float> y(static_cast<size_t>(M) * N);
    run(impl, f, w, true, packed.data(), M, y.data(), N, 0, N, false);
    int bad = 0, mismatches = 0;
    for (int m = 0; m < M; ++m) {
      const std::vector<uint8_t> one = pack(impl, x.data() + static_cast<size_t>(m) * K, K, nullptr, 1, K);
      std::vector<float> y1(N);
      run(impl, f, w, true, one.data(), 1, y1.data(), N, 0, N, false);
      for (int n = 0; n < N; ++n) {
        double ref = bf16_value(w.bias[n]), scale = std::fabs(ref);
        for (int k = 0; k < K; ++k) {
          const double p = weight(w, f, n, k) * static_cast<double>(x[m * K + k]);
          ref += p;
          scale += std::fabs(p);
        }
        const float got = y[m * N + n];
        if (!(std::fabs(got - ref) <= 1e-5 * scale + 1e-30)) {
          if (bad < 3) std::printf("  %s %s m=%d n=%d: got %.9g want %.9g\n", impl.name, format_name(f), m, n, got, ref);
          ++bad;
        }
        mismatches += !same_bits(got, y1[n]);
      }
    }
    CHECK(bad == 0);
    CHECK(mismatches == 0);
  }
}

// ---- determinism -------------------------------------------------------------

// Every row of an M-row product equals, bit for bit, the same row computed
// alone (M = 1), in a batch of another size, and with any split of [0, N).
TEST(results_do_not_depend_on_batch_or_row_split) {
  const int K = 2880, N = 67, kBig = 13;
  std::uniform_int_distribution<int> at(1, N - 1);
  for (const Impl& impl : impls())
    for (Format f : {Format::kBf16, Format::kMxfp4}) {
      const Weights w = random_weights(N, K, K);
      for (bool with_bias : {false, true}) {
        const std::vector<float> x = random_x(static_cast<size_t>(64) * K);
        auto product = [&](int row0, int M, std::vector<int> cuts) {
          // Rows [row0, row0 + M) of x, outputs computed over [0, N) split at `cuts`.
          std::vector<uint8_t> packed = pack(impl, x.data() + static_cast<size_t>(row0) * K, K, nullptr, M, K);
          std::vector<float> y(static_cast<size_t>(M) * N);
          cuts.insert(cuts.begin(), 0);
          cuts.push_back(N);
          std::sort(cuts.begin(), cuts.end());
          for (size_t i = 0; i + 1 < cuts.size(); ++i)
            run(impl, f, w, with_bias, packed.data(), M, y.data(), N, cuts[i], cuts[i + 1], false);
          return y;
        };
        const std::vector<float> big = product(0, kBig, {});
        int mismatches = 0;
        for (int m = 0; m < kBig; ++m) {
          const std::vector<float> one = product(m, 1, {at(rng()), at(rng())});
          for (int n = 0; n < N; ++n) mismatches += !same_bits(one[n], big[m * N + n]);
        }
        for (int M : {2, 5, 7, 64}) {
          const std::vector<float> other = product(0, M, {at(rng()), at(rng()), at(rng())});
          for (int m = 0; m < std::min(M, kBig); ++m)
            for (int n = 0; n < N; ++n) mismatches += !same_bits(other[m * N + n], big[m * N + n]);
        }
        // Rows at an offset inside a batch (different position in the m-tiles).
        const std::vector<float> shifted = product(3, 9, {17, 18, 40});
        for (int m = 0; m < 9; ++m)
          for (int n = 0; n < N; ++n) mismatches += !same_bits(shifted[m * N + n], big[(m + 3) * N + n]);
        if (mismatches) std::printf("  %s %s: %d bitwise mismatches\n", impl.name, format_name(f), mismatches);
        CHECK(mismatches == 0);
      }
    }
}

// Packing via a row list, in pieces, gives the same buffer as packing copies.
TEST(pack_with_row_list_and_pieces) {
  const int K = 96, M = 11;
  for (const Impl& impl : impls()) {
    const std::vector<float> src = random_x(20 * K);
    std::vector<int32_t> rows(M);
    std::vector<float> gathered(static_cast<size_t>(M) * K);
    for (int m = 0; m < M; ++m) {
      rows[m] = (m * 7 + 3) % 20;
      std::memcpy(&gathered[static_cast<size_t>(m) * K], &src[static_cast<size_t>(rows[m]) * K], K * sizeof(float));
    }
    const std::vector<uint8_t> a = pack(impl, src.data(), K, rows.data(), M, K, 3);
    const std::vector<uint8_t> b = pack(impl, gathered.data(), K, nullptr, M, K, 1);
    CHECK(a == b);
  }
}

// ---- MXFP4 decode at every scale -------------------------------------------

// One row per scale byte 0..255 (all blocks of row s use scale s); activations
// of magnitude ~2^(127 - s) (clamped) keep the products near 1, so the decode of
// subnormal and near-overflow weights is visible in the result.
TEST(mxfp4_all_scales) {
  const int N = 256, K = 64, nb = K / 32;
  std::uniform_int_distribution<int> byte(0, 255);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint8_t> blocks(static_cast<size_t>(N) * nb * 16), scales(static_cast<size_t>(N) * nb);
  for (int n = 0; n < N; ++n)
    for (int b = 0; b < nb; ++b) {
      scales[n * nb + b] = static_cast<uint8_t>(n);
      for (int i = 0; i < 16; ++i) {
        uint8_t v = static_cast<uint8_t>(byte(rng()));
        // Magnitudes that overflow fp32 are checked separately below.
        if (n == 255) v &= 0x99;        // |FP4| <= 0.5 -> <= 2^127
        else if (n == 254) v &= 0xbb;   // |FP4| <= 1.5
        else if (n == 253) v &= 0xdd;   // |FP4| <= 3 (codes 0, 1, 4, 5)
        blocks[(n * nb + b) * 16 + i] = v;
      }
    }
  for (const Impl& impl : impls()) {
    int bad = 0;
    std::vector<float> ys(N);
    for (int n = 0; n < N; ++n) {
      // Per-row activations so that every row's products are ~1.
      std::vector<float> x(K);
      const int e = std::clamp(127 - n, -120, 120);
      for (float& v : x) v = std::ldexp(nd(rng()), e);
      std::vector<uint8_t> packed = pack(impl, x.data(), K, nullptr, 1, K);
      impl.mxfp4(blocks.data(), scales.data(), nullptr, packed.data(), 1, K, ys.data(), N, n, n + 1, false);
      const float y = ys[n];
      double ref = 0, abs_sum = 0;
      for (int k = 0; k < K; ++k) {
        const double p = fp4_value(blocks.data(), scales.data(), K, n, k) * x[k];
        ref += p;
        abs_sum += std::fabs(p);
      }
      if (!(std::fabs(y - ref) <= 1e-5 * abs_sum + 1e-30)) {
        if (bad < 3) std::printf("  %s scale %d: got %.9g want %.9g\n", impl.name, n, y, ref);
        ++bad;
      }
    }
    CHECK(bad == 0);
    // Scale 255 with FP4 1.0 is 2^128, which overflows fp32 to +inf (no NaN
    // special case for the scale byte).
    std::vector<uint8_t> blk(16, 0), sc(1, 255);
    blk[3] = 0x20;  // element 7 = 1.0
    std::vector<float> ones(32, 1.f);
    std::vector<uint8_t> packed = pack(impl, ones.data(), 32, nullptr, 1, 32);
    float y = 0;
    impl.mxfp4(blk.data(), sc.data(), nullptr, packed.data(), 1, 32, &y, 1, 0, 1, false);
    CHECK(std::isinf(y) && y > 0);
  }
}

// Every nibble at the extreme scales, one nonzero weight at a time against
// x = 1: the output is exactly that weight rounded to fp32 (subnormal for small
// scales, +-inf where FP4 * 2^(s-127) >= 2^128).
TEST(mxfp4_single_weight_decode) {
  const int K = 32;
  const std::vector<float> ones(K, 1.f);
  for (const Impl& impl : impls()) {
    const std::vector<uint8_t> packed = pack(impl, ones.data(), K, nullptr, 1, K);
    int bad = 0;
    for (int s : {0, 1, 2, 3, 127, 250, 251, 252, 253, 254, 255}) {
      for (int nib = 0; nib < 16; ++nib) {
        for (int k : {0, 1, 6, 31}) {
          std::vector<uint8_t> blk(16, 0), sc(1, static_cast<uint8_t>(s));
          blk[k / 2] = static_cast<uint8_t>(k % 2 ? nib << 4 : nib);
          const double v = std::ldexp(kFp4[nib], s - 127);
          const float want = std::fabs(v) >= 0x1p128 ? std::copysign(std::numeric_limits<float>::infinity(), v)
                                                      : static_cast<float>(v);
          float y = 0;
          impl.mxfp4(blk.data(), sc.data(), nullptr, packed.data(), 1, K, &y, 1, 0, 1, false);
          if (y != want) {
            if (bad < 3) std::printf("  %s scale %d nibble %d k %d: got %g want %g\n", impl.name, s, nib, k, y, want);
            ++bad;
          }
        }
      }
    }
    CHECK(bad == 0);
  }
}

// ---- the dispatching entry points ---------------------------------------------

TEST(public_entry_points) {
  const char* isa = matmul_isa();
  std::printf("  matmul_isa() = %s\n", isa);
  bool known = false;
  for (const char* set : kMatmulKernelSets) known = known || std::strcmp(isa, set) == 0;
  CHECK(known);
  const int M = 3, N = 5, K = 64;
  const Weights w = random_weights(N, K, K);
  const std::vector<float> x = random_x(static_cast<size_t>(M) * K);
  std::vector<uint8_t> packed(packed_activation_bytes(M, K));
  pack_activations(x.data(), K, nullptr, M, K, 0, M, packed.data());
  std::vector<float> y(M * N), y2(M * N);
  matmul_bf16(w.bf16.data(), w.ldw, w.bias.data(), packed.data(), M, K, y.data(), N, 0, N, false);
  matmul_mxfp4(w.blocks.data(), w.scales.data(), nullptr, packed.data(), M, K, y2.data(), N, 0, N, false);
  // Same answers as the implementation matmul_isa() names.
  const Impl* chosen = nullptr;
  for (const Impl& impl : impls())
    if (std::strcmp(isa, impl.name) == 0) chosen = &impl;
  CHECK(chosen != nullptr);
  if (chosen) {
    std::vector<float> r(M * N), r2(M * N);
    run(*chosen, Format::kBf16, w, true, packed.data(), M, r.data(), N, 0, N, false);
    run(*chosen, Format::kMxfp4, w, false, packed.data(), M, r2.data(), N, 0, N, false);
    for (int i = 0; i < M * N; ++i) CHECK(same_bits(y[i], r[i]) && same_bits(y2[i], r2[i]));
  }
  // Invalid shapes are rejected. (CHECK_THROWS_STATUS in test_util.hpp cannot
  // be used: its parameter `status` also replaces the `status` of e.status().)
  auto invalid = [](auto&& fn) {
    try {
      fn();
    } catch (const gon::Error& e) {
      return e.status() == gon::Status::kInvalidArgument;
    }
    return false;
  };
  CHECK(invalid([] { packed_activation_bytes(1, 48); }));
  CHECK(invalid([] { packed_activation_bytes(0, 64); }));
  CHECK(invalid([&] { matmul_bf16(w.bf16.data(), K, nullptr, packed.data(), M, 40, y.data(), N, 0, N, false); }));
  CHECK(invalid([&] {
    matmul_mxfp4(w.blocks.data(), w.scales.data(), nullptr, packed.data(), M, K, y.data(), N, 3, 2, false);
  }));
}

}  // namespace

GON_TEST_MAIN()
