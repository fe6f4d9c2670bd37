// AVX-512 kernels for the CPU matrix products (the contract is in matmul.hpp).
//
// This file alone is compiled with -mavx512* (CMake does it for *_avx512.cpp);
// matmul.cpp calls it only after a run-time CPU check, and nothing here may be
// inlined into other files.
//
// Design (measured on Zen 4; bench/cpp/NOTES-matmul.md has the numbers):
//  * Arithmetic is fp32 FMA on exact fp32 activations. Every weight (bf16, or an
//    FP4 value times a power of two) is exact in fp32, so the only rounding is
//    the fp32 accumulation. (vdpbf16ps on hi/lo bf16 halves of the activations
//    needs two instructions per 32 products and issues at about a third of the
//    FMA rate on Zen 4: slower as well as less exact.)
//  * A block of 32 weights becomes 32 bf16 words in one zmm, then two fp32
//    vectors: dword i = (word 2i+1 << 16) | word 2i, so "<< 16" gives the
//    even words and "& 0xffff0000" the odd ones, both exact fp32.
//      MXFP4: the 16 block bytes are broadcast to the four 128-bit lanes
//        (a load), vpsrlvw shifts word w right by 4*(w/8) so its low nibble is
//        element kPerm[w] = 4*(w%8) + w/8, and vpermw looks the nibbles up in
//        the row of a constant table holding FP4 * 2^(scale-127) in bf16 for
//        every scale byte (exact, subnormals and infinities included; vpermw
//        uses 5 index bits, so each row holds its 16 values twice). Per 32
//        weights and weight row: 3 loads (block, table row, scale byte) and 5
//        vector ops (vpsrlvw, vpermw, vpslld, vpandd + the FMAs below).
//      bf16: one 64-byte load, vpermw into the same kPerm order, vpslld, vpandd.
//    Then 2 FMAs per activation row, against the packed activations.
//    On Zen 4, zmm shuffles (vpermw, vpermps, vpmovzx) share a pipe with the
//    FMAs while shifts do not; this decode has one shuffle per 32 weights. The
//    obvious one (vpmovzxbd, then two vpermps against a table scaled per block
//    by an integer add to its exponents) has three and was ~10% slower.
//  * Packed activations: fp32 rows [M][K] (stride K); block b of a row holds
//    x[32b + kPerm[0]], x[32b + kPerm[2]], ..., x[32b + kPerm[30]] (the even
//    words) and then x[32b + kPerm[1]], ..., x[32b + kPerm[31]] (the odd ones).
//  * Register tiles of MT <= 5 activation rows x NT = 4 weight rows (when
//    M = 1: 1 x 1 for bf16, 1 x 8 for MXFP4), one 16-lane accumulator per output, walked over all of K. Every
//    accumulator sees the same operations in the same order for any tile
//    shape (per block: FMA with the even half, then with the odd half), and one
//    fixed tree sums its lanes, so a result never depends on M, on [n0, n1) or
//    on the tile that computed it (the determinism contract of matmul.hpp).
//  * Weight rows are prefetched as for_tiles plans it: a few tiles ahead when
//    there is one m-tile (bf16 at M = 1: 4 rows), else in L2-sized groups
//    reused by every m-tile, the next group fetched while one is computed.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

// GCC 12's intrinsics (e.g. _mm512_shuffle_f32x4) use _mm512_undefined_ps(),
// which trips false -W(maybe-)uninitialized warnings once inlined.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "backend/cpu/matmul_impl.hpp"
#include "backend/cpu/matmul_tiles.hpp"

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

// For each scale byte s, the 16 values FP4 * 2^(s - 127) as bf16, twice (so
// that vpermw, which uses 5 index bits, can be given a word whose bit 4 belongs
// to the next nibble). 16 KiB; a model uses a handful of scales, so only those
// few 64-byte rows stay in L1.
struct ScaledFp4Tables {
  alignas(64) uint16_t t[256][32];
};
constexpr ScaledFp4Tables make_scaled_fp4_tables() {
  ScaledFp4Tables r{};
  for (int s = 0; s < 256; ++s)
    for (int w = 0; w < 32; ++w) r.t[s][w] = scaled_fp4_bf16(w & 15, s);
  return r;
}
alignas(64) constexpr ScaledFp4Tables kScaledFp4 = make_scaled_fp4_tables();

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


// Prefetch hint for the next tile's weights: into L2, where they wait for the
// ~1 tile's worth of time until they are used.
constexpr auto kPrefetchHint = _MM_HINT_T1;

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
  const uint16_t* pf[NT];  // the rows to prefetch, blocks [pf_b0, pf_b1) of them
  int pf_b0, pf_b1;
  prefetch_plan<NT>(w, static_cast<ptrdiff_t>(ldw), K / 32, a, pf, &pf_b0, &pf_b1);
  const int pf_k0 = pf_b0 * 32, pf_k1 = pf_b1 * 32;
  for (int k = 0; k < K; k += 32) {
    if (k >= pf_k0 && k < pf_k1)  // one 64-byte line per row and block
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

// Outputs of MT activation rows x NT weight rows; blocks/scales: NT rows of
// nb = K/32 blocks.
template <int MT, int NT>
void fp4_tile(const uint8_t* blocks, const uint8_t* scales, const TileArgs& a) {
  const float* x = a.x;
  const int K = a.K;
  const size_t nb = static_cast<size_t>(K / 32);
  __m512 acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm512_setzero_ps();
  const uint8_t* pf[NT];  // the rows to prefetch, blocks [pf_b0, pf_b1) of them
  int plan_b0, plan_b1;
  prefetch_plan<NT>(blocks, static_cast<ptrdiff_t>(nb * 16), static_cast<int>(nb), a, pf, &plan_b0, &plan_b1);
  const size_t pf_b0 = static_cast<size_t>(plan_b0), pf_b1 = static_cast<size_t>(plan_b1);
  if (pf_b0 == 0 && pf_b0 < pf_b1)  // the scales of the rows, contiguous, by whoever fetches block 0
    for (size_t off = 0; off < a.pf_rows * nb; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(scales + a.pf_offset * ptrdiff_t(nb) + off), kPrefetchHint);
  const __m512i shifts = _mm512_load_si512(kNibbleShift);
  const __m512i hi_half = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  for (size_t b = 0; b < nb; ++b) {
    const int k = static_cast<int>(b) * 32;
    if ((b & 3) == 0 && b >= pf_b0 && b < pf_b1)  // one 64-byte line holds 4 blocks
      for (int j = 0; j < NT; ++j) _mm_prefetch(reinterpret_cast<const char*>(pf[j] + b * 16), kPrefetchHint);
    __m512i v[NT];
    __m512 wv[NT];
    for (int j = 0; j < NT; ++j) {
      // Word w: the bf16 value of element kPerm[w] of this block.
      const __m512i raw =
          _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + (j * nb + b) * 16)));
      const __m512i tab = _mm512_load_si512(kScaledFp4.t[scales[j * nb + b]]);
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
  for (int i = 0; i < MT; ++i) finish_row<NT>(acc[i], a.y + i * a.ldy, a.bias, a.accumulate);
}

// ---- tile dispatch ---------------------------------------------------------

constexpr int kMaxMT = 5;  // activation rows per tile (M > 1)
constexpr int kMaxNT = 4;  // weight rows per tile (M > 1)
// When M == 1 (decoding), a product is bound by memory (bf16) or by the MXFP4
// decode. bf16 rows go one at a time: a single sequential stream, prefetched
// kPfAhead1Bf16 rows ahead, read ~40% faster than 8 interleaved row streams
// when the machine has bandwidth to spare (bench/cpp/NOTES-matmul.md, section 7).
// MXFP4 rows go 8 at a time, which keeps 8 independent FMA chains busy.
constexpr int kNT1Bf16 = 1, kPfAhead1Bf16 = 4;
constexpr int kNT1Fp4 = 8, kPfAhead1Fp4 = 1;
constexpr int kNT1 = kNT1Bf16 > kNT1Fp4 ? kNT1Bf16 : kNT1Fp4;  // widest M == 1 tile
constexpr int kTabNT = kMaxNT > kNT1 ? kMaxNT : kNT1;

// The tile shapes this file uses, for TileTables (matmul_tiles.hpp).
template <int MT, int NT>
struct Tile {
  static constexpr bool kUsed = (MT == 1 && NT <= kNT1) || (MT <= kMaxMT && NT <= kMaxNT);
  static void bf16(const uint16_t* w, size_t ldw, const TileArgs& a) { bf16_tile<MT, NT>(w, ldw, a); }
  static void fp4(const uint8_t* blocks, const uint8_t* scales, const TileArgs& a) {
    fp4_tile<MT, NT>(blocks, scales, a);
  }
};
constexpr TileTables<kMaxMT, kTabNT, Tile> kTables{};

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
  tiled_bf16(kTables, kMaxMT, kMaxNT, kNT1Bf16, kPfAhead1Bf16, w, ldw, bias, packed, M, K, y, ldy, n0, n1, accumulate);
}

void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed, int M,
                  int K, float* y, size_t ldy, int n0, int n1, bool accumulate) {
  tiled_mxfp4(kTables, kMaxMT, kMaxNT, kNT1Fp4, kPfAhead1Fp4, blocks, scales, bias, packed, M, K, y, ldy, n0, n1,
              accumulate);
}

}  // namespace gon::cpu::avx512
