// AVX2 + FMA kernels for the CPU matrix products (the contract is in matmul.hpp),
// for x86-64 CPUs without the AVX-512 set of matmul_avx512.cpp (Zen 1-3,
// Intel client cores since Haswell).
//
// This file alone is compiled with -mavx2 -mfma (CMake does it for *_avx2.cpp);
// matmul.cpp calls it only after a run-time CPU check.
//
// Design (bench/cpp/NOTES-matmul.md, section 9, has the measurements):
//  * As in the AVX-512 kernels, the arithmetic is fp32 FMA on exact fp32
//    activations against exact fp32 weights (bf16, or FP4 times a power of two
//    taken from a table per scale byte, subnormals and infinities included), so
//    the only rounding is the fp32 accumulation.
//  * Packed activations: fp32 rows [M][K] (stride K) in which every group of 8
//    elements is stored as x[0], x[2], x[4], x[6], x[1], x[3], x[5], x[7]: the
//    order in which both weight formats decode into 8-lane vectors cheaply.
//      bf16: the 16 bytes of 8 weights are broadcast to both 128-bit lanes (a
//        load); a variable shift (16 in the low lane, 0 in the high one) and a
//        mask leave the even words of the low lane and the odd words of the
//        high lane as fp32.
//      MXFP4: the 16 block bytes are broadcast to both lanes and shifted right
//        by 0 (low lane) or 4 (high lane), masked to nibbles: the low lane holds
//        elements 0, 2, ..., 30, the high lane 1, 3, ..., 31. Two byte shuffles
//        look the nibbles up in the block's scale row of a table holding the low
//        and the high bytes of FP4 * 2^(scale - 127) in bf16; interleaving them
//        gives bf16 words, and interleaving those with zeros gives the fp32
//        vectors of elements (0..6 even, 1..7 odd), (8..14, 9..15), ... in the
//        packed order. Per 32 weights and weight row: 3 loads, 10 vector
//        operations (9 on the shuffle ports), then 4 FMAs per activation row.
//        With two weight rows per tile (M >= 3), both rows' blocks are decoded
//        before the activation loads, so each activation vector is loaded once
//        for both (it was loaded once per weight row: more loads than FMAs).
//  * Register tiles: MT <= 4 activation rows x NT = 2 to 4 weight rows when
//    M > 1 (about 8 accumulators, see tile_shape; MXFP4 at M >= 3: always 2
//    weight rows, see fp4_tile_shape), 1 x 8 (MXFP4) or 1 x 4
//    (bf16) when M = 1, one 8-lane accumulator per output. Every accumulator
//    sees the same operations in the same order for any tile shape (per group
//    of 8 elements of K, one FMA, in K order), and one fixed tree sums its
//    lanes, so a result never depends on M, on [n0, n1) or on the tile that
//    computed it (the determinism contract of matmul.hpp).
//  * Weight rows are prefetched as matmul_tiles.hpp's for_tiles plans it, as in
//    the AVX-512 kernels.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "backend/cpu/matmul_impl.hpp"
#include "backend/cpu/matmul_tiles.hpp"

#define GON_AVX2_INLINE inline __attribute__((always_inline))

namespace gon::cpu::avx2 {

namespace {

// For each scale byte s: bytes 0..15 the low bytes, 16..31 the high bytes of
// the bf16 values FP4(n) * 2^(s - 127), n = 0..15 (8 KiB; a model uses a
// handful of scales).
struct ScaledFp4Bytes {
  alignas(32) uint8_t t[256][32];
};
constexpr ScaledFp4Bytes make_scaled_fp4_bytes() {
  ScaledFp4Bytes r{};
  for (int s = 0; s < 256; ++s)
    for (int n = 0; n < 16; ++n) {
      const uint16_t v = scaled_fp4_bf16(n, s);
      r.t[s][n] = static_cast<uint8_t>(v & 0xff);
      r.t[s][16 + n] = static_cast<uint8_t>(v >> 8);
    }
  return r;
}
alignas(32) constexpr ScaledFp4Bytes kScaledFp4 = make_scaled_fp4_bytes();

// Fixed summation tree over 8 lanes: [i] + [i+4], then + [i+2], then + [i+1].
GON_AVX2_INLINE float reduce8(__m256 a) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
  return _mm_cvtss_f32(s1);
}

GON_AVX2_INLINE float bf16_to_float(uint16_t v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Writes NT outputs y[0..NT) of one activation row: sum (+ bias) (+ old y).
template <int NT>
GON_AVX2_INLINE void finish_row(const __m256* acc, float* y, const uint16_t* bias, bool accumulate) {
  for (int j = 0; j < NT; ++j) {
    float s = reduce8(acc[j]);
    if (bias) s = s + bf16_to_float(bias[j]);
    if (accumulate) s = y[j] + s;
    y[j] = s;
  }
}

constexpr auto kPrefetchHint = _MM_HINT_T1;

// ---- bf16 weights ----------------------------------------------------------

// The 8 weights w[0..8) as fp32 in the packed order (see the file comment).
GON_AVX2_INLINE __m256 bf16_group(const uint16_t* w, __m256i shift, __m256i mask) {
  const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
  return _mm256_castsi256_ps(_mm256_and_si256(_mm256_sllv_epi32(raw, shift), mask));
}

template <int MT, int NT>
void bf16_tile(const uint16_t* w, size_t ldw, const TileArgs& a) {
  const float* x = a.x;
  const int K = a.K;
  __m256 acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
  const __m256i shift = _mm256_setr_epi32(16, 16, 16, 16, 0, 0, 0, 0);
  const __m256i mask = _mm256_setr_epi32(-1, -1, -1, -1, static_cast<int>(0xffff0000u),
                                         static_cast<int>(0xffff0000u), static_cast<int>(0xffff0000u),
                                         static_cast<int>(0xffff0000u));
  const uint16_t* pf[NT];  // the rows to prefetch, blocks [pf_b0, pf_b1) of them
  int pf_b0, pf_b1;
  prefetch_plan<NT>(w, static_cast<ptrdiff_t>(ldw), K / 32, a, pf, &pf_b0, &pf_b1);
  const int pf_k0 = pf_b0 * 32, pf_k1 = pf_b1 * 32;
  for (int k = 0; k < K; k += 32) {
    if (k >= pf_k0 && k < pf_k1)  // one 64-byte line per row and block
      for (int j = 0; j < NT; ++j) _mm_prefetch(reinterpret_cast<const char*>(pf[j] + k), kPrefetchHint);
    for (int g = 0; g < 32; g += 8) {
      __m256 wv[NT];
      for (int j = 0; j < NT; ++j) wv[j] = bf16_group(w + j * ldw + k + g, shift, mask);
      for (int i = 0; i < MT; ++i) {
        const __m256 xv = _mm256_loadu_ps(x + static_cast<size_t>(i) * K + k + g);
        for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_fmadd_ps(wv[j], xv, acc[i][j]);
      }
    }
  }
  for (int i = 0; i < MT; ++i) finish_row<NT>(acc[i], a.y + i * a.ldy, a.bias, a.accumulate);
}

// ---- MXFP4 weights ---------------------------------------------------------

// The 32 weights of one block as four fp32 vectors in the packed order.
GON_AVX2_INLINE void fp4_block(const uint8_t* block, uint8_t scale, __m256i shift, __m256i low4, __m256 (&w)[4]) {
  const __m256i raw = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(block)));
  const __m256i nib = _mm256_and_si256(_mm256_srlv_epi32(raw, shift), low4);
  const uint8_t* tab = kScaledFp4.t[scale];
  const __m256i lo = _mm256_shuffle_epi8(
      _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(tab))), nib);
  const __m256i hi = _mm256_shuffle_epi8(
      _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(tab + 16))), nib);
  const __m256i wl = _mm256_unpacklo_epi8(lo, hi);  // bf16 of elements 0, 2, .., 14 | 1, 3, .., 15
  const __m256i wh = _mm256_unpackhi_epi8(lo, hi);  // 16, 18, .., 30 | 17, 19, .., 31
  const __m256i z = _mm256_setzero_si256();
  w[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, wl));
  w[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, wl));
  w[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, wh));
  w[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, wh));
}

template <int MT, int NT>
void fp4_tile(const uint8_t* blocks, const uint8_t* scales, const TileArgs& a) {
  const float* x = a.x;
  const int K = a.K;
  const size_t nb = static_cast<size_t>(K / 32);
  __m256 acc[MT][NT];
  for (int i = 0; i < MT; ++i)
    for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_setzero_ps();
  const uint8_t* pf[NT];  // the rows to prefetch, blocks [pf_b0, pf_b1) of them
  int plan_b0, plan_b1;
  prefetch_plan<NT>(blocks, static_cast<ptrdiff_t>(nb * 16), static_cast<int>(nb), a, pf, &plan_b0, &plan_b1);
  const size_t pf_b0 = static_cast<size_t>(plan_b0), pf_b1 = static_cast<size_t>(plan_b1);
  if (pf_b0 == 0 && pf_b0 < pf_b1)  // the scales of the rows, contiguous, by whoever fetches block 0
    for (size_t off = 0; off < a.pf_rows * nb; off += 64)
      _mm_prefetch(reinterpret_cast<const char*>(scales + a.pf_offset * ptrdiff_t(nb) + off), kPrefetchHint);
  const __m256i shift = _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4);
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  for (size_t b = 0; b < nb; ++b) {
    const int k = static_cast<int>(b) * 32;
    if ((b & 3) == 0 && b >= pf_b0 && b < pf_b1)  // one 64-byte line holds 4 blocks
      for (int j = 0; j < NT; ++j) _mm_prefetch(reinterpret_cast<const char*>(pf[j] + b * 16), kPrefetchHint);
    if constexpr (MT > 1 && NT <= 2) {
      // Both blocks decoded first, then each activation vector loaded once for
      // both weight rows (the accumulators see the same FMAs in the same order).
      __m256 w[NT][4];
      for (int j = 0; j < NT; ++j) fp4_block(blocks + (j * nb + b) * 16, scales[j * nb + b], shift, low4, w[j]);
      for (int q = 0; q < 4; ++q)
        for (int i = 0; i < MT; ++i) {
          const __m256 xv = _mm256_loadu_ps(x + static_cast<size_t>(i) * K + k + 8 * q);
          for (int j = 0; j < NT; ++j) acc[i][j] = _mm256_fmadd_ps(w[j][q], xv, acc[i][j]);
        }
      continue;
    }
    for (int j = 0; j < NT; ++j) {
      __m256 w[4];
      fp4_block(blocks + (j * nb + b) * 16, scales[j * nb + b], shift, low4, w);
      for (int i = 0; i < MT; ++i) {
        const float* xb = x + static_cast<size_t>(i) * K + k;
        acc[i][j] = _mm256_fmadd_ps(w[0], _mm256_loadu_ps(xb), acc[i][j]);
        acc[i][j] = _mm256_fmadd_ps(w[1], _mm256_loadu_ps(xb + 8), acc[i][j]);
        acc[i][j] = _mm256_fmadd_ps(w[2], _mm256_loadu_ps(xb + 16), acc[i][j]);
        acc[i][j] = _mm256_fmadd_ps(w[3], _mm256_loadu_ps(xb + 24), acc[i][j]);
      }
    }
  }
  for (int i = 0; i < MT; ++i) finish_row<NT>(acc[i], a.y + i * a.ldy, a.bias, a.accumulate);
}

// ---- tile dispatch ---------------------------------------------------------

constexpr int kMaxMT = 4;  // activation rows per tile (M > 1)
constexpr int kMaxNT = 4;  // weight rows per tile (M > 1; see tile_shape)
// M == 1: bf16 should be bound by memory, but one FMA chain per row (one FMA
// per 8 weights, 4 cycles each on Zen 3) caps a row at ~24 GB/s per core: four
// rows at a time, prefetched kPfAhead1Bf16 tiles (8 rows) ahead, read 5-15%
// faster than two (NOTES-matmul section 12); MXFP4 is bound by the decode (8
// rows: 8 independent FMA chains).
constexpr int kNT1Bf16 = 4, kPfAhead1Bf16 = 2;
constexpr int kNT1Fp4 = 8, kPfAhead1Fp4 = 1;
constexpr int kNT1 = kNT1Bf16 > kNT1Fp4 ? kNT1Bf16 : kNT1Fp4;
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

// Tile shape for M > 1: (activation rows, weight rows). Each accumulator takes 4 dependent FMAs per block (per
// group of 8 elements for bf16), so a tile needs about 8 accumulators to cover the FMA latency; 2 x 2 tiles left
// M = 2 at half the speed of M = 1 per row. Fewer than 4 rows per m-tile get more weight rows instead.
struct TileShape {
  int mt, nt;
};
TileShape tile_shape(int M) {
  const int m_tiles = (M + kMaxMT - 1) / kMaxMT;
  const int shortest = M / m_tiles;  // the m-tiles are M / m_tiles or one more rows high
  return {kMaxMT, shortest >= 4 ? 2 : shortest == 3 ? 3 : 4};
}

// MXFP4 at M >= 3: two weight rows, whose blocks fp4_tile decodes before the
// activation loads, and m-tiles of at most 4 rows (for_tiles splits M evenly,
// so 3 or 4 rows each for M >= 6). tile_shape gives 3 or 4 weight rows where
// an m-tile is shorter than 4 rows, and those tiles load every activation
// vector once per weight row. A 4 x 2 tile
// keeps 17 vectors live, one more than there are registers, and still beats
// the old tiles. bench_matmul --units, 5760 x 2880, Zen 3, ms: M = 3 0.83
// against 0.94, M = 7 1.94 against 2.04, M = 12 3.34 against 3.71, M = 128
// 35.6 against 39.3. In the runtime's prefill (20b preset, 128 tokens, one
// process) the MoE took 6.5% less time (NOTES-matmul section 13).
TileShape fp4_tile_shape(int M) {
  if (M < 3) return tile_shape(M);
  return {kMaxMT, 2};
}

}  // namespace

size_t packed_activation_bytes(int M, int K) { return static_cast<size_t>(M) * static_cast<size_t>(K) * sizeof(float); }

void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1, void* packed) {
  (void)M;
  const __m256i order = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  float* out = static_cast<float*>(packed);
  for (int m = m0; m < m1; ++m) {
    const float* src = x + static_cast<size_t>(rows ? rows[m] : m) * ldx;
    float* dst = out + static_cast<size_t>(m) * K;
    for (int k = 0; k < K; k += 8)
      _mm256_storeu_ps(dst + k, _mm256_permutevar8x32_ps(_mm256_loadu_ps(src + k), order));
  }
}

void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K, float* y,
                 size_t ldy, int n0, int n1, bool accumulate) {
  const TileShape ts = tile_shape(M);
  tiled_bf16(kTables, ts.mt, ts.nt, kNT1Bf16, kPfAhead1Bf16, w, ldw, bias, packed, M, K, y, ldy, n0, n1, accumulate);
}

void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed, int M,
                  int K, float* y, size_t ldy, int n0, int n1, bool accumulate) {
  const TileShape ts = fp4_tile_shape(M);
  tiled_mxfp4(kTables, ts.mt, ts.nt, kNT1Fp4, kPfAhead1Fp4, blocks, scales, bias, packed, M, K, y, ldy, n0, n1,
              accumulate);
}

}  // namespace gon::cpu::avx2
