// AVX-512 kernels for the CPU matrix products (the contract is in matmul.hpp).
//
// This file alone is compiled with -mavx512* (CMake does it for *_avx512.cpp);
// matmul.cpp calls it only after a run-time CPU check, and nothing here may be
// inlined into other files.
//
// Design (measured on Zen 4; see bench/cpp/NOTES-matmul.md):
//  * Arithmetic is fp32 FMA on exact fp32 activations. Every weight (bf16, or
//    an FP4 value times a power of two) is exactly representable in fp32, so the
//    only rounding is the fp32 accumulation. (vdpbf16ps with hi/lo bf16 halves
//    of the activations needs two instructions per 32 products and issues at a
//    third of the FMA rate on Zen 4, so it was slower as well as less exact.)
//  * Packed activations: fp32 rows [M][K]; inside each 32-element block the 16
//    even elements come first, then the 16 odd ones. That matches both weight
//    decodes without any shuffle:
//      bf16:  one 64-byte load holds 32 weights; dword i = (w[2i+1] << 16) | w[2i],
//             so even = dword << 16 and odd = dword & 0xffff0000 are fp32.
//      MXFP4: vpmovzxbd turns the 16 bytes of a block into 16 dwords; vpermps
//             uses the low 4 bits of each index, i.e. the low nibble (even
//             element), and after a shift by 4 the high nibble (odd element).
//             Its 16-entry table is FP4 * 2^(scale-127), built per block with
//             one masked integer add of (scale-127) << 23 to the exponents
//             (zero entries masked off); scales that would leave the normal
//             range (< 2 or > 252) take a slower exact table build that gives
//             bit-identical values where both apply.
//    Instructions per 32 weights and per weight row: bf16 = 1 load + 2 ALU;
//    MXFP4 = 1 load+extend, 1 shift, 1 masked add (broadcast operand), 2 vpermps;
//    then 2 FMAs per activation row.
//  * Register tiles of MT activation rows x NT weight rows, one 16-lane
//    accumulator per output, walked over all of K. Every accumulator sees the
//    same operations in the same order for any tile shape (per block: FMA with
//    the even half, then with the odd half), and the final horizontal sum uses
//    one fixed tree, so a result never depends on M, on [n0, n1) or on the tile
//    that computed it (the determinism contract of matmul.hpp).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

// GCC 12's intrinsics (e.g. _mm512_shuffle_f32x4) use _mm512_undefined_ps(),
// which trips false -W(maybe-)uninitialized warnings once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "backend/cpu/matmul_impl.hpp"

#define GON_AVX512_INLINE inline __attribute__((always_inline))

namespace gon::cpu::avx512 {

namespace {

// Element order inside a packed 32-element block. Word w (0..31) of a 16-byte
// MXFP4 block broadcast to all four 128-bit lanes holds bytes 2(w%8), 2(w%8)+1,
// i.e. the nibbles of elements 4(w%8) .. 4(w%8)+3; shifted right by 4*(w/8) its
// low nibble is element kPerm[w] = 4*(w%8) + w/8. The packed activations store a
// block as x[kPerm[0]], x[kPerm[2]], ..., x[kPerm[30]] (even words) followed by
// x[kPerm[1]], ..., x[kPerm[31]] (odd words), the order in which the words of a
// decoded block split into fp32 dwords (see the file comment).
constexpr int perm(int w) { return 4 * (w % 8) + w / 8; }
alignas(64) constexpr uint16_t kPerm[32] = {perm(0),  perm(1),  perm(2),  perm(3),  perm(4),  perm(5),  perm(6),
                                           perm(7),  perm(8),  perm(9),  perm(10), perm(11), perm(12), perm(13),
                                           perm(14), perm(15), perm(16), perm(17), perm(18), perm(19), perm(20),
                                           perm(21), perm(22), perm(23), perm(24), perm(25), perm(26), perm(27),
                                           perm(28), perm(29), perm(30), perm(31)};
// Right shift of word w that brings element kPerm[w]'s nibble to the bottom.
alignas(64) constexpr uint16_t kNibbleShift[32] = {0, 0, 0, 0, 0, 0, 0, 0, 4,  4,  4,  4,  4,  4,  4,  4,
                                                  8, 8, 8, 8, 8, 8, 8, 8, 12, 12, 12, 12, 12, 12, 12, 12};

// FP4 (e2m1) values indexed by nibble, as fp32 and as bf16 bit patterns; the
// bf16 table is repeated so that vpermw (which uses 5 index bits) can be given
// a word whose bit 4 belongs to the next nibble.
alignas(64) constexpr float kFp4[16] = {0.f,  .5f,  1.f,  1.5f,  2.f,  3.f,  4.f,  6.f,
                                        -0.f, -.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};
alignas(64) constexpr uint16_t kFp4Bf16[32] = {
    0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040, 0x4080, 0x40c0, 0x8000, 0xbf00, 0xbf80,
    0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0, 0x0000, 0x3f00, 0x3f80, 0x3fc0, 0x4000, 0x4040,
    0x4080, 0x40c0, 0x8000, 0xbf00, 0xbf80, 0xbfc0, 0xc000, 0xc040, 0xc080, 0xc0c0};
// Table entries whose exponent the scale adjusts (all but +0 and -0).
constexpr __mmask32 kFp4NonZero = 0xfefefefe;

#ifndef GON_MM_CHUNK
#define GON_MM_CHUNK 64
#endif
// MXFP4 scales are pre-converted for this many blocks at a time (stack buffer).
constexpr int kScaleChunk = GON_MM_CHUNK;

// Horizontal sums of four 16-lane accumulators, returned in lanes 0..3. The
// tree for each accumulator is fixed: a[i] + a[i+8], then + [i+4], then + [i+2],
// then + [i+1]; lanes of different accumulators never mix, so passing zeros for
// unused ones does not change the others.
GON_AVX512_INLINE __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xee));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c, d, 0x44), _mm512_shuffle_f32x4(c, d, 0xee));
  // 128-bit lanes now hold: a8[0..3], a8[4..7], b8[0..3], b8[4..7] (and c, d).
  const __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xdd));
  const __m512 v = _mm512_add_ps(u, _mm512_permute_ps(u, _MM_SHUFFLE(1, 0, 3, 2)));
  const __m512 s = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), s));
}

// Writes NT outputs y[0..NT) of one activation row: sum (+ bias) (+ old y).
template <int NT>
GON_AVX512_INLINE void finish_row(const __m512* acc, float* y, const uint16_t* bias, bool accumulate) {
  const __m512 z = _mm512_setzero_ps();
  for (int j0 = 0; j0 < NT; j0 += 4) {
    const int cnt = NT - j0 < 4 ? NT - j0 : 4;
    __m128 s = reduce4(acc[j0], cnt > 1 ? acc[j0 + 1] : z, cnt > 2 ? acc[j0 + 2] : z, cnt > 3 ? acc[j0 + 3] : z);
    const __mmask8 mk = static_cast<__mmask8>((1u << cnt) - 1);
    if (bias) {
      const __m128i b = _mm_maskz_loadu_epi16(mk, bias + j0);
      s = _mm_add_ps(s, _mm_castsi128_ps(_mm_slli_epi32(_mm_cvtepu16_epi32(b), 16)));
    }
    if (accumulate) s = _mm_add_ps(_mm_maskz_loadu_ps(mk, y + j0), s);
    _mm_mask_storeu_ps(y + j0, mk, s);
  }
}

// What a tile kernel needs besides its weights.
struct TileArgs {
  const float* x;      // MT packed activation rows (stride K)
  int K;
  float* y;            // y[i * ldy + j]: output of activation row i, weight row j
  size_t ldy;
  const uint16_t* bias;  // NT entries or null
  bool accumulate;
  int ahead;           // weight rows after this tile (<= NT) to prefetch while it runs
};

// Prefetch hint for the next tile's weights: into L2, where they wait for the
// ~1 tile's worth of time until they are used.
constexpr int kPrefetchHint = _MM_HINT_T1;

// ---- bf16 weights ----------------------------------------------------------

// Outputs of MT activation rows x NT weight rows; w: NT rows of K bf16 (stride ldw).
template <int MT, int NT>
void bf16_tile(const uint16_t* w, size_t ldw, const TileArgs& a) {
  const float* x = a.x;
  const int K = a.K;
  __m512 acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  const __m512i hi_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  const __m512i order = _mm512_load_si512(kPerm);
  // Row j of the next tile (or, past the range, this tile's last row again).
  const uint16_t* pf[NT];
  for (int j = 0; j < NT; ++j) pf[j] = w + static_cast<size_t>(j < a.ahead ? NT + j : NT - 1) * ldw;
  const bool prefetch = a.ahead > 0;
  for (int k = 0; k < K; k += 32) {
    if (prefetch)
      for (int j = 0; j < NT; ++j) _mm_prefetch(reinterpret_cast<const char*>(pf[j] + k), kPrefetchHint);
    __m512i raw[NT];
    __m512 wv[NT];
    // Word w of raw[j] becomes element kPerm[w] of the block (the packed order).
    for (int j = 0; j < NT; ++j) raw[j] = _mm512_permutexvar_epi16(order, _mm512_loadu_si512(w + j * ldw + k));
    for (int j = 0; j < NT; ++j) wv[j] = _mm512_castsi512_ps(_mm512_slli_epi32(raw[j], 16));
    for (int i = 0; i < MT; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + static_cast<size_t>(i) * K + k);
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(wv[j], xv, acc[i][j]);
    }
    for (int j = 0; j < NT; ++j) wv[j] = _mm512_castsi512_ps(_mm512_and_si512(raw[j], hi_half));
    for (int i = 0; i < MT; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + static_cast<size_t>(i) * K + k + 16);
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(wv[j], xv, acc[i][j]);
    }
  }
  for (int i = 0; i < MT; ++i) finish_row<NT>(acc[i], a.y + i * a.ldy, a.bias, a.accumulate);
}

// ---- MXFP4 weights ---------------------------------------------------------

// bf16 table FP4 * 2^(s - 127) (both halves) for any scale byte s, exactly
// rounded: two exact power-of-two multiplies in fp32, the second of which is the
// only one that can round (to a subnormal or to infinity); the results have at
// most two significant bits and exponents >= -128, so bf16 holds them exactly.
GON_AVX512_INLINE __m512i exact_table(int s) {
  const int e = s - 127;
  const int e1 = e >> 1, e2 = e - e1;  // both in [-64, 64]
  const __m512 p1 = _mm512_castsi512_ps(_mm512_set1_epi32((e1 + 127) << 23));
  const __m512 p2 = _mm512_castsi512_ps(_mm512_set1_epi32((e2 + 127) << 23));
  const __m512 t = _mm512_mul_ps(_mm512_mul_ps(_mm512_load_ps(kFp4), p1), p2);
  const __m256i half = _mm512_cvtepi32_epi16(_mm512_srli_epi32(_mm512_castps_si512(t), 16));
  return _mm512_broadcast_i64x4(half);
}

// Converts the scales of blocks [c0, c0 + cn) of NT rows into bf16 exponent
// increments ((s - 127) << 7, in both 16-bit halves of a dword). Returns true if
// some scale is outside [2, 252], where that increment would leave the normal
// range.
template <int NT>
GON_AVX512_INLINE bool prepare_scales(const uint8_t* scales, size_t nb, int c0, int cn, int32_t (*sadj)[kScaleChunk]) {
  __mmask16 edge = 0;
  for (int j = 0; j < NT; ++j) {
    for (int b = 0; b < cn; b += 16) {
      const __mmask16 mk = cn - b >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (cn - b)) - 1);
      const __m512i s = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(mk, scales + j * nb + c0 + b));
      edge |= _mm512_mask_cmpgt_epu32_mask(mk, _mm512_sub_epi32(s, _mm512_set1_epi32(2)), _mm512_set1_epi32(250));
      const __m512i inc = _mm512_and_si512(_mm512_slli_epi32(_mm512_sub_epi32(s, _mm512_set1_epi32(127)), 7),
                                           _mm512_set1_epi32(0xffff));
      _mm512_store_si512(&sadj[j][b], _mm512_or_si512(inc, _mm512_slli_epi32(inc, 16)));
    }
  }
  return edge != 0;
}

template <int MT, int NT, bool kExact>
GON_AVX512_INLINE void fp4_blocks(const uint8_t* blocks, const uint8_t* scales, size_t nb, int c0, int cn,
                                  const int32_t (*sadj)[kScaleChunk], const float* x, int K,
                                  const uint8_t* const (&pf)[NT], bool prefetch, __m512 (&acc)[MT][NT]) {
  const __m512i lut = _mm512_load_si512(kFp4Bf16);
  const __m512i shifts = _mm512_load_si512(kNibbleShift);
  const __m512i hi_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (int b = 0; b < cn; ++b) {
    const size_t blk = static_cast<size_t>(c0 + b);
    const int k = static_cast<int>(blk) * 32;
    if (prefetch && (blk & 3) == 0)  // one 64-byte line holds 4 blocks
      for (int j = 0; j < NT; ++j) _mm_prefetch(reinterpret_cast<const char*>(pf[j] + blk * 16), kPrefetchHint);
    __m512i v[NT];
    __m512 wv[NT];
    for (int j = 0; j < NT; ++j) {
      // Word w: the bf16 value of element kPerm[w] of this block.
      const __m512i raw =
          _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + (j * nb + blk) * 16)));
      __m512i tab;
      if constexpr (kExact)
        tab = exact_table(scales[j * nb + blk]);
      else
        tab = _mm512_maskz_add_epi16(kFp4NonZero, lut, _mm512_set1_epi32(sadj[j][b]));
      v[j] = _mm512_permutexvar_epi16(_mm512_srlv_epi16(raw, shifts), tab);
    }
    for (int j = 0; j < NT; ++j) wv[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v[j], 16));
    for (int i = 0; i < MT; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + static_cast<size_t>(i) * K + k);
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(wv[j], xv, acc[i][j]);
    }
    for (int j = 0; j < NT; ++j) wv[j] = _mm512_castsi512_ps(_mm512_and_si512(v[j], hi_half));
    for (int i = 0; i < MT; ++i) {
      const __m512 xv = _mm512_loadu_ps(x + static_cast<size_t>(i) * K + k + 16);
      for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_fmadd_ps(wv[j], xv, acc[i][j]);
    }
  }
}

// Outputs of MT activation rows x NT weight rows; blocks/scales: NT rows of
// nb = K/32 blocks.
template <int MT, int NT>
void fp4_tile(const uint8_t* blocks, const uint8_t* scales, const TileArgs& a) {
  const int K = a.K;
  const size_t nb = static_cast<size_t>(K / 32);
  __m512 acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  // Row j of the next tile (or, past the range, this tile's last row again),
  // and the next tile's scales.
  const uint8_t* pf[NT];
  for (int j = 0; j < NT; ++j) pf[j] = blocks + static_cast<size_t>(j < a.ahead ? NT + j : NT - 1) * nb * 16;
  const bool prefetch = a.ahead > 0;
  if (prefetch)
    for (size_t off = 0; off < a.ahead * nb; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(scales + NT * nb + off), kPrefetchHint);
  alignas(64) int32_t sadj[NT][kScaleChunk];
  for (int c0 = 0; c0 < static_cast<int>(nb); c0 += kScaleChunk) {
    const int cn = std::min<int>(kScaleChunk, static_cast<int>(nb) - c0);
    if (!prepare_scales<NT>(scales, nb, c0, cn, sadj)) [[likely]]
      fp4_blocks<MT, NT, false>(blocks, scales, nb, c0, cn, sadj, a.x, K, pf, prefetch, acc);
    else
      fp4_blocks<MT, NT, true>(blocks, scales, nb, c0, cn, sadj, a.x, K, pf, prefetch, acc);
  }
  for (int i = 0; i < MT; ++i) finish_row<NT>(acc[i], a.y + i * a.ldy, a.bias, a.accumulate);
}

// ---- tile dispatch ---------------------------------------------------------

#ifndef GON_MM_MT
#define GON_MM_MT 4
#endif
#ifndef GON_MM_NT
#define GON_MM_NT 4
#endif
#ifndef GON_MM_NT1
#define GON_MM_NT1 8
#endif
constexpr int kMaxMT = GON_MM_MT;   // activation rows per tile (M > 1)
constexpr int kMaxNT = GON_MM_NT;   // weight rows per tile (M > 1)
constexpr int kNT1 = GON_MM_NT1;    // weight rows per tile when M == 1
constexpr int kTabNT = kMaxNT > kNT1 ? kMaxNT : kNT1;

using Bf16Fn = void (*)(const uint16_t*, size_t, const TileArgs&);
using Fp4Fn = void (*)(const uint8_t*, const uint8_t*, const TileArgs&);

template <int MT, int NT>
constexpr bool kUsedTile = (MT == 1 && NT <= kNT1) || (MT <= kMaxMT && NT <= kMaxNT);

template <int... I>
struct Seq {};
template <int N, int... I>
struct MakeSeq : MakeSeq<N - 1, N - 1, I...> {};
template <int... I>
struct MakeSeq<0, I...> {
  using type = Seq<I...>;
};

struct Tables {
  Bf16Fn bf16[kMaxMT + 1][kTabNT + 1] = {};
  Fp4Fn fp4[kMaxMT + 1][kTabNT + 1] = {};
};

template <int MT, int NT>
constexpr void fill_one(Tables& t) {
  if constexpr (kUsedTile<MT, NT>) {
    t.bf16[MT][NT] = &bf16_tile<MT, NT>;
    t.fp4[MT][NT] = &fp4_tile<MT, NT>;
  }
}
template <int MT, int... NT>
constexpr void fill_row(Tables& t, Seq<NT...>) {
  (fill_one<MT, NT + 1>(t), ...);
}
template <int... MT>
constexpr void fill_all(Tables& t, Seq<MT...>) {
  (fill_row<MT + 1>(t, typename MakeSeq<kTabNT>::type{}), ...);
}
constexpr Tables make_tables() {
  Tables t;
  fill_all(t, typename MakeSeq<kMaxMT>::type{});
  return t;
}
constexpr Tables kTables = make_tables();

// Walks the (m, n) tiles of [0, M) x [n0, n1), calling
// call(mt, nt, m, n, ahead). Weight rows are taken in groups that fit in L2 (so
// that for M > kMaxMT each group is read from memory once and reused by every
// m-tile from cache); the first m-tile of a group prefetches the next tile's
// weights (`ahead` rows of them).
template <class Call>
GON_AVX512_INLINE void for_tiles(int M, int n0, int n1, size_t row_bytes, Call&& call) {
  if (M == 1) {
    for (int n = n0; n < n1; n += kNT1) {
      const int nt = std::min(kNT1, n1 - n);
      call(1, nt, 0, n, std::min(kNT1, n1 - n - nt));
    }
    return;
  }
  constexpr size_t kGroupBytes = 256 * 1024;
  int group = static_cast<int>(std::max<size_t>(1, kGroupBytes / row_bytes));
  group = std::max(kMaxNT, group / kMaxNT * kMaxNT);
  for (int g0 = n0; g0 < n1; g0 += group) {
    const int g1 = std::min(n1, g0 + group);
    for (int m = 0; m < M; m += kMaxMT) {
      const int mt = std::min(kMaxMT, M - m);
      for (int n = g0; n < g1; n += kMaxNT) {
        const int nt = std::min(kMaxNT, g1 - n);
        call(mt, nt, m, n, m == 0 ? std::min(kMaxNT, n1 - n - nt) : 0);
      }
    }
  }
}

}  // namespace

size_t packed_activation_bytes(int M, int K) { return static_cast<size_t>(M) * static_cast<size_t>(K) * sizeof(float); }

void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1, void* packed) {
  (void)M;
  // Even words of the block order first, then odd words (see kPerm).
  alignas(64) int32_t even[16], odd[16];
  for (int i = 0; i < 16; ++i) even[i] = kPerm[2 * i], odd[i] = kPerm[2 * i + 1];
  const __m512i ie = _mm512_load_si512(even), io = _mm512_load_si512(odd);
  float* out = static_cast<float*>(packed);
  for (int m = m0; m < m1; ++m) {
    const float* src = x + static_cast<size_t>(rows ? rows[m] : m) * ldx;
    float* dst = out + static_cast<size_t>(m) * K;
    for (int k = 0; k < K; k += 32) {
      const __m512 a = _mm512_loadu_ps(src + k), b = _mm512_loadu_ps(src + k + 16);
      _mm512_storeu_ps(dst + k, _mm512_permutex2var_ps(a, ie, b));
      _mm512_storeu_ps(dst + k + 16, _mm512_permutex2var_ps(a, io, b));
    }
  }
}

void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K, float* y,
                 size_t ldy, int n0, int n1, bool accumulate) {
  const float* xp = static_cast<const float*>(packed);
  for_tiles(M, n0, n1, static_cast<size_t>(K) * 2, [&](int mt, int nt, int m, int n, int ahead) {
    const TileArgs a{xp + static_cast<size_t>(m) * K, K, y + static_cast<size_t>(m) * ldy + n, ldy,
                     bias ? bias + n : nullptr, accumulate, ahead};
    kTables.bf16[mt][nt](w + static_cast<size_t>(n) * ldw, ldw, a);
  });
}

void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed, int M,
                  int K, float* y, size_t ldy, int n0, int n1, bool accumulate) {
  const float* xp = static_cast<const float*>(packed);
  const size_t nb = static_cast<size_t>(K / 32);
  for_tiles(M, n0, n1, nb * 17, [&](int mt, int nt, int m, int n, int ahead) {
    const TileArgs a{xp + static_cast<size_t>(m) * K, K, y + static_cast<size_t>(m) * ldy + n, ldy,
                     bias ? bias + n : nullptr, accumulate, ahead};
    kTables.fp4[mt][nt](blocks + static_cast<size_t>(n) * nb * 16, scales + static_cast<size_t>(n) * nb, a);
  });
}

}  // namespace gon::cpu::avx512
