// AVX2 attention kernel (contract and cache layout in attention.hpp), for
// x86-64 CPUs with AVX2 and FMA but not the AVX-512 set (the "avx2" kernel
// set of matmul.cpp).
//
// The AVX-512 kernel's steps with two 8-lane vectors per block of 16 keys:
// per block, for the rows 4 at a time (16 ymm registers hold 4 rows' scores,
// the two key vectors and the broadcast query element), the scores from the
// transposed K block; then per row the online softmax (vector exp) and the
// weighted sum of the block's value rows into the row's output, 64 dimensions
// at a time in registers. Before this kernel the avx2 set ran the portable
// one, whose scalar exp made 8-sequence decode steps of the 20b preset spend
// ~22 ms in attention on a Zen 3 core pair (2.8 ms at batch 1).
//
// exp256 is exp512's computation lane for lane (the same reduction,
// polynomial and single final rounding), so by construction the softmax
// weights equal the AVX-512 kernel's (cpp/tests/test_cpu_exp.cpp compares the
// two bit for bit where the CPU has AVX-512; equal bit for bit to a scalar
// emulation of exp512, whose scalef is one correctly rounded scaling, over all
// 2^32 inputs; within 1.3 ulp of
// double-precision exp over [-104, 88.7], subnormal results included, with
// FTZ/DAZ off as the runtime leaves them); the sums of a row may still round differently
// (another lane width), which the contract allows: bit-identical results are
// promised within one kernel set, across batchings.
//
// This file alone is compiled with -mavx2 -mfma (CMake does it for
// *_avx2.cpp); attention.cpp calls it only when the matrix products use their
// AVX2 kernels (the same CPU check).
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>

#include "backend/cpu/attention.hpp"

namespace gon::cpu::avx2 {

namespace {

// 2^e for integer lanes e in [-126, 127] (a normal float built from its exponent).
inline __m256 pow2(__m256i e) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(e, _mm256_set1_epi32(127)), 23));
}

// e^x for fp32 lanes, ~1 ulp, equal to attention_avx512.cpp's exp512: x = n ln2
// + r with |r| <= ln2/2, a degree-7 polynomial (Cephes' expf coefficients) for
// e^r, then scaling by 2^n, done as 2^floor(n/2) (exact: the product stays
// normal) and then 2^(n - floor(n/2)) (the one rounding, as scalef's). Exact
// at x = 0 (returns 1); lanes below -104 (including -inf) give 0.
inline __m256 exp256(__m256 x) {
  const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(kExpMin), _CMP_GE_OQ);
  x = _mm256_min_ps(x, _mm256_set1_ps(kExpMax));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[i]));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i ni = _mm256_cvtps_epi32(n);  // n is in [-150, 128]: both halves in [-75, 64]
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256 scaled = _mm256_mul_ps(_mm256_mul_ps(p, pow2(n1)), pow2(_mm256_sub_epi32(ni, n1)));
  return _mm256_and_ps(scaled, live);
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// 8 cache elements (fp32, or bf16 widened exactly) as fp32 lanes.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
// The first `count` (1..8) elements, the other lanes 0 (the end of a head_dim
// that is not a multiple of 8; never read past it).
template <typename KV>
inline __m256 load_first(const KV* p, int count) {
  alignas(32) KV buf[8] = {};
  std::memcpy(buf, p, static_cast<size_t>(count) * sizeof(KV));
  return load8(buf);
}

// Lanes e of a block half (keys `base + e`) with a <= base + e <= b, as a mask.
inline __m256 lanes_within(int base, int a, int b) {
  const __m256i e = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(base));
  const __m256i out = _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_set1_epi32(a), e),
                                      _mm256_cmpgt_epi32(e, _mm256_set1_epi32(b)));
  return _mm256_castsi256_ps(_mm256_xor_si256(out, _mm256_set1_epi32(-1)));
}

}  // namespace

template <typename KV>
void attend_rows(const AttnCache<KV>& c, const AttnRows& r, float* scratch) {
  static_assert(kKvBlock == 16 && kAttnRows % 4 == 0, "two ymm of scores per row, rows in tiles of 4");
  const int hd = c.hd, hdp = (hd + 15) / 16 * 16, n = r.count;
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256 scale = _mm256_set1_ps(c.scale);
  float* O = scratch;  // [n][hdp], 64-byte aligned
  alignas(32) float p[kKvBlock];
  alignas(32) float l[kAttnRows][kKvBlock];  // per row, per lane: the running sum of the weights
  float m[kAttnRows];
  // Rows beyond n repeat row 0's query so the score loop needs no branches.
  const float* q[kAttnRows];
  int lo = r.lo[0], hi = r.hi[0];
  for (int i = 0; i < kAttnRows; ++i) q[i] = r.q[i < n ? i : 0];
  for (int i = 0; i < n; ++i) {
    m[i] = r.sink[i];
    std::fill(l[i], l[i] + kKvBlock, 0.f);
    l[i][0] = 1.f;  // the sink's weight exp(sink - m)
    std::fill(O + static_cast<size_t>(i) * hdp, O + static_cast<size_t>(i + 1) * hdp, 0.f);
    lo = std::min(lo, r.lo[i]);
    hi = std::max(hi, r.hi[i]);
  }
  // Key blocks outermost: a block's keys and values are read from memory once
  // for all rows and stay in L1 while the rows use them.
  for (int j0 = lo / kKvBlock * kKvBlock; j0 <= hi; j0 += kKvBlock) {
    const int slot0 = j0 % c.capacity;
    const KV* kt = c.k + kt_block_offset(slot0, c.head, c.capacity, hd);
    const KV* v0 = c.v + v_row_offset(slot0, c.head, c.capacity, hd);
    for (int i0 = 0; i0 < n; i0 += 4) {
      __m256 s[4][2];
      for (int i = 0; i < 4; ++i) s[i][0] = s[i][1] = _mm256_setzero_ps();
      for (int d = 0; d < hd; ++d) {
        const __m256 k0 = load8(kt + static_cast<size_t>(d) * kKvBlock);
        const __m256 k1 = load8(kt + static_cast<size_t>(d) * kKvBlock + 8);
        for (int i = 0; i < 4; ++i) {
          const __m256 qd = _mm256_broadcast_ss(q[i0 + i] + d);
          s[i][0] = _mm256_fmadd_ps(qd, k0, s[i][0]);
          s[i][1] = _mm256_fmadd_ps(qd, k1, s[i][1]);
        }
      }
      for (int i = i0; i < std::min(n, i0 + 4); ++i) {
        const int a = std::max(r.lo[i], j0), b = std::min(r.hi[i], j0 + kKvBlock - 1);
        if (a > b) continue;  // no visible key here: the block would change nothing
        const __m256 s0 = _mm256_blendv_ps(neg_inf, _mm256_mul_ps(s[i - i0][0], scale), lanes_within(j0, a, b));
        const __m256 s1 = _mm256_blendv_ps(neg_inf, _mm256_mul_ps(s[i - i0][1], scale), lanes_within(j0 + 8, a, b));
        const float mnew = std::max(m[i], hmax(_mm256_max_ps(s0, s1)));
        const float alpha = _mm256_cvtss_f32(exp256(_mm256_set1_ps(m[i] - mnew)));
        const __m256 mv = _mm256_set1_ps(mnew), av = _mm256_set1_ps(alpha);
        const __m256 p0 = exp256(_mm256_sub_ps(s0, mv)), p1 = exp256(_mm256_sub_ps(s1, mv));
        _mm256_store_ps(l[i], _mm256_fmadd_ps(_mm256_load_ps(l[i]), av, p0));
        _mm256_store_ps(l[i] + 8, _mm256_fmadd_ps(_mm256_load_ps(l[i] + 8), av, p1));
        _mm256_store_ps(p, p0);
        _mm256_store_ps(p + 8, p1);
        float* o = O + static_cast<size_t>(i) * hdp;
        for (int d0 = 0; d0 < hd; d0 += 64) {  // 64 dimensions in registers at a time
          const int chunks = std::min(8, (hd - d0 + 7) / 8);
          const int last = hd - d0 - 8 * (chunks - 1);  // elements of the last chunk (1..8)
          __m256 acc[8];
          // O's rows are hdp >= 8 * chunks floats long past d0: whole vectors stay inside the row.
          for (int k = 0; k < chunks; ++k) acc[k] = _mm256_mul_ps(_mm256_load_ps(o + d0 + 8 * k), av);
          for (int j = a; j <= b; ++j) {
            const KV* v = v0 + static_cast<size_t>(j - j0) * hd + d0;
            const __m256 pj = _mm256_set1_ps(p[j - j0]);
            for (int k = 0; k < chunks; ++k) {
              const __m256 vk = k == chunks - 1 && last < 8 ? load_first(v + 8 * k, last) : load8(v + 8 * k);
              acc[k] = _mm256_fmadd_ps(pj, vk, acc[k]);
            }
          }
          for (int k = 0; k < chunks; ++k) _mm256_store_ps(o + d0 + 8 * k, acc[k]);
        }
        m[i] = mnew;
      }
    }
  }
  for (int i = 0; i < n; ++i) {
    const float inv = 1.0f / hsum(_mm256_add_ps(_mm256_load_ps(l[i]), _mm256_load_ps(l[i] + 8)));
    const __m256 iv = _mm256_set1_ps(inv);
    const float* o = O + static_cast<size_t>(i) * hdp;
    int d = 0;
    for (; d + 8 <= hd; d += 8) _mm256_storeu_ps(r.out[i] + d, _mm256_mul_ps(_mm256_load_ps(o + d), iv));
    for (; d < hd; ++d) r.out[i][d] = o[d] * inv;
  }
}

template void attend_rows<float>(const AttnCache<float>&, const AttnRows&, float*);
template void attend_rows<uint16_t>(const AttnCache<uint16_t>&, const AttnRows&, float*);

void exp_lanes(const float* x, float* y, size_t n) {
  for (size_t i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp256(_mm256_loadu_ps(x + i)));
}

}  // namespace gon::cpu::avx2
