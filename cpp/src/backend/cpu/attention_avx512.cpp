// AVX-512 attention kernel (contract and cache layout in attention.hpp).
//
// Per block of 16 keys, for the rows 8 at a time: the scores of the 8 rows,
// 16 keys per vector, from the transposed K block (one vector load per
// dimension, one FMA per row with the broadcast query element); then per row
// the online softmax (vector exp) and the weighted sum of the block's value
// rows into the row's output, 64 dimensions at a time in registers.
//
// This file alone is compiled with -mavx512*; attention.cpp calls it only when
// the matrix products use their AVX-512 kernels (the same CPU check).
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <limits>

// GCC 12's reduce intrinsics use _mm512_undefined_ps(), which trips false
// -W(maybe-)uninitialized warnings once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "backend/cpu/attention.hpp"

namespace gon::cpu::avx512 {

namespace {

// e^x for fp32 lanes, ~1 ulp: x = n ln2 + r with |r| <= ln2/2, a degree-7
// polynomial (Cephes' expf coefficients) for e^r, then scaling by 2^n. Exact at
// x = 0 (returns 1); lanes below -104 (including -inf) give 0.
inline __m512 exp512(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpMin), _CMP_GE_OQ);
  x = _mm512_min_ps(x, _mm512_set1_ps(kExpMax));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[i]));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(live, p, n);
}

// Mask of lanes e (0..15) with a <= e <= b.
inline __mmask16 lane_range(int a, int b) {
  return static_cast<__mmask16>(((2u << b) - 1u) & ~((1u << a) - 1u));
}

// 16 cache elements (fp32, or bf16 widened exactly) as fp32 lanes; `mask`
// selects the elements read (the others are 0).
inline __m512 load16(const float* p, __mmask16 mask) { return _mm512_maskz_loadu_ps(mask, p); }
inline __m512 load16(const uint16_t* p, __mmask16 mask) {
  const __m256i h = _mm256_maskz_loadu_epi16(mask, p);
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

}  // namespace

template <typename KV>
void attend_rows(const AttnCache<KV>& c, const AttnRows& r, float* scratch) {
  static_assert(kKvBlock == 16 && kAttnRows % 8 == 0, "one zmm of scores per row, rows in tiles of 8");
  const int hd = c.hd, hdp = (hd + 15) / 16 * 16, n = r.count;
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 scale = _mm512_set1_ps(c.scale);
  float* O = scratch;  // [n][hdp], 64-byte aligned
  alignas(64) float p[kKvBlock];
  float m[kAttnRows];
  __m512 l[kAttnRows];
  // Rows beyond n repeat row 0's query so the score loop needs no branches.
  const float* q[kAttnRows];
  int lo = r.lo[0], hi = r.hi[0];
  for (int i = 0; i < kAttnRows; ++i) q[i] = r.q[i < n ? i : 0];
  for (int i = 0; i < n; ++i) {
    m[i] = r.sink[i];
    l[i] = _mm512_maskz_mov_ps(1, _mm512_set1_ps(1.0f));  // the sink's weight exp(sink - m)
    for (int d = 0; d < hdp; d += 16) _mm512_store_ps(O + i * hdp + d, _mm512_setzero_ps());
    lo = std::min(lo, r.lo[i]);
    hi = std::max(hi, r.hi[i]);
  }
  // Key blocks outermost: a block's keys and values are read from memory once
  // for all rows and stay in L1 while the rows use them.
  for (int j0 = lo / kKvBlock * kKvBlock; j0 <= hi; j0 += kKvBlock) {
    const int slot0 = j0 % c.capacity;
    const KV* kt = c.k + kt_block_offset(slot0, c.head, c.capacity, hd);
    const KV* v0 = c.v + v_row_offset(slot0, c.head, c.capacity, hd);
    for (int i0 = 0; i0 < n; i0 += 8) {
      __m512 s[8];
      for (int i = 0; i < 8; ++i) s[i] = _mm512_setzero_ps();
      for (int d = 0; d < hd; ++d) {
        const __m512 kd = load16(kt + static_cast<size_t>(d) * kKvBlock, 0xffff);
        for (int i = 0; i < 8; ++i) s[i] = _mm512_fmadd_ps(_mm512_set1_ps(q[i0 + i][d]), kd, s[i]);
      }
      for (int i = i0; i < std::min(n, i0 + 8); ++i) {
        const int a = std::max(r.lo[i], j0), b = std::min(r.hi[i], j0 + kKvBlock - 1);
        if (a > b) continue;  // no visible key here: the block would change nothing
        const __mmask16 vis = lane_range(a - j0, b - j0);
        const __m512 si = _mm512_mask_mul_ps(neg_inf, vis, s[i - i0], scale);
        const float mnew = std::max(m[i], _mm512_reduce_max_ps(si));
        const float alpha = _mm_cvtss_f32(_mm512_castps512_ps128(exp512(_mm512_set1_ps(m[i] - mnew))));
        const __m512 pv = exp512(_mm512_sub_ps(si, _mm512_set1_ps(mnew)));
        const __m512 av = _mm512_set1_ps(alpha);
        l[i] = _mm512_fmadd_ps(l[i], av, pv);
        _mm512_store_ps(p, pv);
        float* o = O + i * hdp;
        for (int d0 = 0; d0 < hd; d0 += 64) {  // 64 dimensions in registers at a time
          const int chunks = std::min(4, (hd - d0 + 15) / 16);
          __mmask16 tail = 0xffff;
          if (hd - d0 < 64 && (hd - d0) % 16) tail = static_cast<__mmask16>((1u << ((hd - d0) % 16)) - 1u);
          __m512 acc[4];
          for (int k = 0; k < chunks; ++k) acc[k] = _mm512_mul_ps(_mm512_load_ps(o + d0 + 16 * k), av);
          for (int j = a; j <= b; ++j) {
            const KV* v = v0 + static_cast<size_t>(j - j0) * hd + d0;
            const __m512 pj = _mm512_set1_ps(p[j - j0]);
            for (int k = 0; k < chunks; ++k) {
              const __mmask16 mk = k == chunks - 1 ? tail : static_cast<__mmask16>(0xffff);
              acc[k] = _mm512_fmadd_ps(pj, load16(v + 16 * k, mk), acc[k]);
            }
          }
          for (int k = 0; k < chunks; ++k) _mm512_store_ps(o + d0 + 16 * k, acc[k]);
        }
        m[i] = mnew;
      }
    }
  }
  for (int i = 0; i < n; ++i) {
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(l[i]));
    for (int d = 0; d < hd; d += 16) {
      const __mmask16 mk = hd - d >= 16 ? static_cast<__mmask16>(0xffff)
                                        : static_cast<__mmask16>((1u << (hd - d)) - 1u);
      _mm512_mask_storeu_ps(r.out[i] + d, mk, _mm512_mul_ps(_mm512_load_ps(O + i * hdp + d), inv));
    }
  }
}

template void attend_rows<float>(const AttnCache<float>&, const AttnRows&, float*);
template void attend_rows<uint16_t>(const AttnCache<uint16_t>&, const AttnRows&, float*);

void exp_lanes(const float* x, float* y, size_t n) {
  for (size_t i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, exp512(_mm512_loadu_ps(x + i)));
}

}  // namespace gon::cpu::avx512
