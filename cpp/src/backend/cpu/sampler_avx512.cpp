// AVX-512 bulk passes of the CPU sampler (sampler.hpp). This file alone is
// compiled with -mavx512*; sampler.cpp calls it only when the matrix kernels
// use AVX-512 (the same CPU check).
//
// exp is computed in double, as the portable pass does with std::exp, and
// rounded to float: x = n ln2 + r with |r| <= ln2/2, e^r by its Taylor series
// to degree 13 (truncation below 2e-16 relative), scaled by 2^n. Its last bit
// may differ from the C library's, which changes the float p_i only when a
// value lies within that bit of a float rounding boundary.
#include <immintrin.h>

#include <limits>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "backend/cpu/sampler.hpp"

namespace gon::cpu::avx512 {

namespace {
inline __m512d exp_pd(__m512d x) {
  const __mmask8 live = _mm512_cmp_pd_mask(x, _mm512_set1_pd(-745.5), _CMP_GE_OQ);
  x = _mm512_min_pd(x, _mm512_set1_pd(709.0));
  const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634074)),
                                         _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(6.93147180369123816490e-01), x);
  r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.90821492927058770002e-10), r);
  static constexpr double kCoeff[14] = {1.0,
                                        1.0,
                                        1.0 / 2,
                                        1.0 / 6,
                                        1.0 / 24,
                                        1.0 / 120,
                                        1.0 / 720,
                                        1.0 / 5040,
                                        1.0 / 40320,
                                        1.0 / 362880,
                                        1.0 / 3628800,
                                        1.0 / 39916800,
                                        1.0 / 479001600,
                                        1.0 / 6227020800.0};
  __m512d p = _mm512_set1_pd(kCoeff[13]);
  for (int k = 12; k >= 0; --k) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(kCoeff[k]));
  return _mm512_maskz_scalef_pd(live, p, n);
}

inline __mmask16 mask16(const uint8_t* mask, int i, __mmask16 in_range) {
  if (mask == nullptr) return in_range;
  const __m128i m = _mm_maskz_loadu_epi8(in_range, mask + i);
  return _mm_mask_cmpneq_epi8_mask(in_range, m, _mm_setzero_si128());
}

inline __mmask16 tail16(int left) { return left >= 16 ? __mmask16(0xffff) : __mmask16((1u << left) - 1u); }
}  // namespace

float max_allowed(const float* l, int n, const uint8_t* mask) {
  __m512 m = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int i = 0; i < n; i += 16) {
    const __mmask16 in = tail16(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(in, l + i);
    const __mmask16 ok = _mm512_mask_cmp_ps_mask(mask16(mask, i, in), v, v, _CMP_ORD_Q);
    m = _mm512_mask_max_ps(m, ok, m, v);
  }
  return _mm512_reduce_max_ps(m);
}

int first_equal(const float* l, int n, const uint8_t* mask, float value) {
  const __m512 want = _mm512_set1_ps(value);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 in = tail16(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(in, l + i);
    const __mmask16 hit = _mm512_mask_cmp_ps_mask(mask16(mask, i, in), v, want, _CMP_EQ_OQ);
    if (hit) return i + __builtin_ctz(hit);
  }
  return -1;
}

double exp_sum(const float* l, int n, const uint8_t* mask, double shift, double inv_t, float* p) {
  __m512d acc0 = _mm512_setzero_pd(), acc1 = _mm512_setzero_pd();
  const __m512d sh = _mm512_set1_pd(shift), it = _mm512_set1_pd(inv_t);
  for (int i = 0; i < n; i += 16) {
    const __mmask16 in = tail16(n - i);
    const __m512 v = _mm512_maskz_loadu_ps(in, l + i);
    const __mmask16 ok = _mm512_mask_cmp_ps_mask(mask16(mask, i, in), v, v, _CMP_ORD_Q);
    const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
    const __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
    __m512d e0 = _mm512_maskz_mov_pd(static_cast<__mmask8>(ok), exp_pd(_mm512_mul_pd(_mm512_sub_pd(lo, sh), it)));
    __m512d e1 = _mm512_maskz_mov_pd(static_cast<__mmask8>(ok >> 8), exp_pd(_mm512_mul_pd(_mm512_sub_pd(hi, sh), it)));
    if (p != nullptr) {
      const __m256 f0 = _mm512_cvtpd_ps(e0), f1 = _mm512_cvtpd_ps(e1);
      const __m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(f0), f1, 1);
      _mm512_mask_storeu_ps(p + i, in, f);
      e0 = _mm512_cvtps_pd(f0);  // the sum of the rounded values, as the portable pass adds them
      e1 = _mm512_cvtps_pd(f1);
    }
    acc0 = _mm512_add_pd(acc0, e0);
    acc1 = _mm512_add_pd(acc1, e1);
  }
  return _mm512_reduce_add_pd(_mm512_add_pd(acc0, acc1));
}

}  // namespace gon::cpu::avx512
