// MXFP4 products on AMX tiles (Intel Sapphire Rapids and later), the
// "avx512amx" kernel set (the contract is in matmul.hpp).
//
// This file alone is compiled with -mamx-tile -mamx-bf16 on top of the AVX-512
// flags (CMake does it for *_amx.cpp); matmul.cpp calls it only after a
// run-time check of the CPU and of the kernel's permission to use AMX state.
//
// Why: the AVX-512 MXFP4 kernel spends 4 vector operations decoding 32 weights
// and 2 FMAs per activation row on them, so with the 1-3 rows per expert of
// batched decoding (and the 5-30 of prefill) it is bound by instruction issue.
// Here a 16 x 32 block of decoded weights is one AMX A tile and one TDPBF16PS
// multiplies it by up to 16 activation columns: the 2-operation decode stays,
// the per-row arithmetic almost disappears.
//
// Exactness. TDPBF16PS multiplies bf16 by bf16 (exact in fp32) and accumulates
// in fp32, but treats bf16 subnormal inputs as zero and flushes subnormal
// results. The decoded weights FP4 * 2^(s-127) are exact in bf16. Activations
// are fp32: each is split into three bf16 parts, hi + lo + lo2 == x exactly
// (each part takes the next 8 significant bits), and each part is a column of
// the B tile, so an activation row is three columns and one tile serves 5 rows
// (column 15 is unused). y = (C[hi] + C[lo]) + C[lo2] (+ bias) (+ old y). Every
// output is computed by the same sequence for any M, [n0, n1) or tile (the
// tile's other rows and columns never mix into it), which is the determinism
// contract of matmul.hpp. The flushes only matter far from the values a model
// holds: a weight row with a scale outside [127 - 60, 127 + 60], or an
// activation row whose largest magnitude is outside [2^-60, 2^60] (or not
// finite), gets its outputs from the AVX-512 kernel instead (the pack flags such
// activation rows; the kernel tracks each weight row's scales while decoding).
// A given (weight row, activation row) pair always takes the same path, so the
// contract still holds.
//
// Packed activations (this set's own layout):
//   [M][K] fp32 in the AVX-512 kernels' layout (the bf16 products and the
//       fallback read it: avx512::matmul_bf16 runs unchanged on this buffer),
//   [M] int32 flags (1: the row takes the AVX-512 path),
//   per group of 5 rows and per 32-element block, one 1 KiB B tile: 16 rows
//       (pairs of words 2p, 2p+1 of a decoded block, i.e. elements kPerm[2p],
//       kPerm[2p+1]) x 16 dword columns (column 3i+s: bf16 part s of row i's
//       two elements, the even word in the low half).
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "backend/cpu/matmul_impl.hpp"
#include "backend/cpu/mxfp4_tables.hpp"

namespace gon::cpu::amx {

namespace {

using x86::kNibbleShift;
using x86::kPerm;
using x86::kScaledFp4;

constexpr int kRowsPerGroup = 5;     // activation rows per B tile (3 columns each)
constexpr int kTileBytes = 1024;     // 16 rows x 64 bytes
constexpr int kSafeScale = 60;       // weight scales within 127 +- this take AMX
constexpr float kSafeHi = 0x1p60f;   // activation rows with max |x| in [2^-60, 2^60]
constexpr float kSafeLo = 0x1p-60f;

size_t align64(size_t n) { return (n + 63) & ~size_t{63}; }
size_t fp32_bytes(int M, int K) { return align64(static_cast<size_t>(M) * K * sizeof(float)); }
size_t flag_bytes(int M) { return align64(static_cast<size_t>(M) * sizeof(int32_t)); }
int groups(int M) { return (M + kRowsPerGroup - 1) / kRowsPerGroup; }

// The tile configuration: palette 1, eight tiles of 16 rows x 64 bytes
// (0-3: accumulators, 4-5: weights, 6-7: activations).
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t colsb[16] = {64, 64, 64, 64, 64, 64, 64, 64};
  uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};
};

// Splits 16 fp32 values into three bf16 parts (exact: see the file comment),
// returned as the fp32 bit patterns of the parts (low 16 bits zero).
inline void split3(__m512 x, __m512i& hi, __m512i& lo, __m512i& lo2) {
  const __m512i top = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  hi = _mm512_and_si512(_mm512_castps_si512(x), top);
  const __m512 r1 = _mm512_sub_ps(x, _mm512_castsi512_ps(hi));
  lo = _mm512_and_si512(_mm512_castps_si512(r1), top);
  lo2 = _mm512_castps_si512(_mm512_sub_ps(r1, _mm512_castsi512_ps(lo)));
}

// Dword p = bf16 of the odd word's part << 16 | bf16 of the even word's part.
inline __m512i pair_words(__m512i even, __m512i odd) {
  return _mm512_or_si512(_mm512_and_si512(odd, _mm512_set1_epi32(static_cast<int>(0xffff0000u))),
                         _mm512_srli_epi32(even, 16));
}

// Tile register numbers are immediates: accumulator c (0-3) += A tile a (4-5)
// times B tile b (6-7), and the accumulators' zeroing and stores.
// (GCC's tile intrinsics paste their register arguments into the assembly
// text, so they take literal numbers only.)
inline void dp(int c, int a, int b) {
  switch (c * 4 + (a - 4) * 2 + (b - 6)) {
    case 0: _tile_dpbf16ps(0, 4, 6); break;
    case 1: _tile_dpbf16ps(0, 4, 7); break;
    case 2: _tile_dpbf16ps(0, 5, 6); break;
    case 3: _tile_dpbf16ps(0, 5, 7); break;
    case 4: _tile_dpbf16ps(1, 4, 6); break;
    case 5: _tile_dpbf16ps(1, 4, 7); break;
    case 6: _tile_dpbf16ps(1, 5, 6); break;
    case 7: _tile_dpbf16ps(1, 5, 7); break;
    case 8: _tile_dpbf16ps(2, 4, 6); break;
    case 9: _tile_dpbf16ps(2, 4, 7); break;
    case 10: _tile_dpbf16ps(2, 5, 6); break;
    case 11: _tile_dpbf16ps(2, 5, 7); break;
    case 12: _tile_dpbf16ps(3, 4, 6); break;
    case 13: _tile_dpbf16ps(3, 4, 7); break;
    case 14: _tile_dpbf16ps(3, 5, 6); break;
    default: _tile_dpbf16ps(3, 5, 7); break;
  }
}
inline void zero_acc(int c) {
  switch (c) {
    case 0: _tile_zero(0); break;
    case 1: _tile_zero(1); break;
    case 2: _tile_zero(2); break;
    default: _tile_zero(3); break;
  }
}
inline void store_acc(int c, float* out) {
  switch (c) {
    case 0: _tile_stored(0, out, 64); break;
    case 1: _tile_stored(1, out, 64); break;
    case 2: _tile_stored(2, out, 64); break;
    default: _tile_stored(3, out, 64); break;
  }
}
inline void load_tile(int t, const void* p) {
  switch (t) {
    case 4: _tile_loadd(4, p, 64); break;
    case 5: _tile_loadd(5, p, 64); break;
    case 6: _tile_loadd(6, p, 64); break;
    default: _tile_loadd(7, p, 64); break;
  }
}

// True when every scale byte of a weight row (nb of them) is within the range
// the tiles compute exactly (see the file comment).
inline bool safe_scales(const uint8_t* row_scales, int nb) {
  __m512i lo = _mm512_set1_epi8(static_cast<char>(0xff)), hi = _mm512_setzero_si512();
  for (int b = 0; b < nb; b += 64) {
    const __mmask64 mk = nb - b >= 64 ? ~__mmask64{0} : (__mmask64{1} << (nb - b)) - 1;
    const __m512i v = _mm512_maskz_loadu_epi8(mk, row_scales + b);
    lo = _mm512_mask_min_epu8(lo, mk, lo, v);
    hi = _mm512_mask_max_epu8(hi, mk, hi, v);
  }
  alignas(64) uint8_t l[64], h[64];
  _mm512_store_si512(l, lo);
  _mm512_store_si512(h, hi);
  int mn = 255, mx = 0;
  for (int i = 0; i < 64; ++i) mn = std::min<int>(mn, l[i]), mx = std::max<int>(mx, h[i]);
  return mn >= 127 - kSafeScale && mx <= 127 + kSafeScale;
}

// Blocks decoded ahead of their tile products: a tile load must wait until the
// stores that wrote its data have committed, so decoding a whole chunk before
// loading any of it keeps the tile unit from waiting on each 16-row decode.
// WT * kChunkBlocks<WT> tiles of 1 KiB: 16 KiB, within L1.
template <int WT>
constexpr int kChunkBlocks = 16 / WT;
constexpr int kPrefetchChunks = 2;

// Computes up to WT weight tiles of 16 rows (rows [n, n + rows) of the call)
// against GC activation groups starting at group g0, WT * GC <= 4 accumulators.
// bad_row[r] is set for weight rows whose scales leave the safe range.
template <int WT, int GC>
void tile_pass(const uint8_t* blocks, const uint8_t* scales, const uint8_t* vnni, int nb, int n, int rows, int g0,
               float (*c_out)[16][16], bool* bad_row) {
  static_assert(WT * GC <= 4, "four accumulator tiles");
  constexpr int KB = kChunkBlocks<WT>;
  alignas(64) uint16_t abuf[WT][KB][16][32];
  for (int t = 0; t < WT * GC; ++t) zero_acc(t);
  // Rows past the end multiply zeros (their outputs are dropped anyway).
  if (rows < 16 * WT) std::memset(abuf, 0, sizeof(abuf));
  const __m512i shifts = _mm512_load_si512(kNibbleShift);
  for (int b0 = 0; b0 < nb; b0 += KB) {
    const int kb = std::min(KB, nb - b0);
    for (int r = 0; r < rows; ++r) {
      const size_t at0 = static_cast<size_t>(n + r) * nb + b0;
      // The row's blocks kPrefetchChunks chunks on (one 64-byte line per
      // 4 blocks), and its scales when this chunk starts a line of them: the
      // tile walks 16 * WT rows side by side, more streams than the hardware
      // prefetcher follows.
      for (int l = 0; l < KB * 16; l += 64)
        _mm_prefetch(reinterpret_cast<const char*>(blocks + (at0 + kPrefetchChunks * KB) * 16 + l), _MM_HINT_T0);
      if ((b0 & 63) == 0) _mm_prefetch(reinterpret_cast<const char*>(scales + at0 + 64), _MM_HINT_T0);
      for (int bb = 0; bb < kb; ++bb) {
        const __m512i raw =
            _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks + (at0 + bb) * 16)));
        const __m512i tab = _mm512_load_si512(kScaledFp4.t[scales[at0 + bb]]);
        _mm512_store_si512(abuf[r / 16][bb][r % 16], _mm512_permutexvar_epi16(_mm512_srlv_epi16(raw, shifts), tab));
      }
    }
    for (int bb = 0; bb < kb; ++bb) {
      auto b_tile = [&](int g) { return vnni + (static_cast<size_t>(g0 + g) * nb + b0 + bb) * kTileBytes; };
      // Up to two groups: their B tiles stay in 6 and 7 for every weight tile.
      if (GC <= 2)
        for (int g = 0; g < GC; ++g) load_tile(6 + g, b_tile(g));
      for (int w = 0; w < WT; ++w) {
        const int a = 4 + (w & 1);
        load_tile(a, abuf[w][bb]);
        for (int g = 0; g < GC; ++g) {
          // Three or four groups (one weight tile): B tiles alternate in 6 and 7.
          if (GC > 2) load_tile(6 + (g & 1), b_tile(g));
          dp(w * GC + g, a, 6 + (GC > 2 ? (g & 1) : g));
        }
      }
    }
  }
  for (int t = 0; t < WT * GC; ++t) store_acc(t, &c_out[t][0][0]);
  for (int r = 0; r < rows; ++r) bad_row[r] = !safe_scales(scales + static_cast<size_t>(n + r) * nb, nb);
}

using PassFn = void (*)(const uint8_t*, const uint8_t*, const uint8_t*, int, int, int, int, float (*)[16][16], bool*);

}  // namespace

bool os_permits_amx() {
  // Linux hands out AMX tile state only to processes that ask for it.
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  static const bool ok = syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
  return ok;
}

size_t packed_activation_bytes(int M, int K) {
  return fp32_bytes(M, K) + flag_bytes(M) + static_cast<size_t>(groups(M)) * (K / 32) * kTileBytes;
}

void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1, void* packed) {
  avx512::pack_activations(x, ldx, rows, M, K, m0, m1, packed);
  const float* xp = static_cast<const float*>(packed);
  int32_t* flags = reinterpret_cast<int32_t*>(static_cast<char*>(packed) + fp32_bytes(M, K));
  uint8_t* vnni = static_cast<uint8_t*>(packed) + fp32_bytes(M, K) + flag_bytes(M);
  const int nb = K / 32;
  const __m512i pair_index = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
  const __m512i zero = _mm512_setzero_si512();
  for (int m = m0; m < m1; ++m) {
    const float* row = xp + static_cast<size_t>(m) * K;
    // The row's largest magnitude decides its path (NaN compares false: unsafe).
    __m512 mx = _mm512_setzero_ps();
    for (int k = 0; k < K; k += 16) mx = _mm512_max_ps(mx, _mm512_abs_ps(_mm512_loadu_ps(row + k)));
    float big = _mm512_reduce_max_ps(mx);
    bool finite = true;
    for (int k = 0; k < K && finite; ++k) finite = std::isfinite(row[k]);
    flags[m] = (finite && big <= kSafeHi && (big >= kSafeLo || big == 0.f)) ? 0 : 1;
    const int g = m / kRowsPerGroup, i = m % kRowsPerGroup;
    for (int b = 0; b < nb; ++b) {
      uint8_t* tile = vnni + (static_cast<size_t>(g) * nb + b) * kTileBytes;
      __m512i eh, el, el2, oh, ol, ol2;
      split3(_mm512_loadu_ps(row + b * 32), eh, el, el2);
      split3(_mm512_loadu_ps(row + b * 32 + 16), oh, ol, ol2);
      const __m512i col = _mm512_add_epi32(pair_index, _mm512_set1_epi32(3 * i));
      _mm512_i32scatter_epi32(tile, col, pair_words(eh, oh), 4);
      _mm512_i32scatter_epi32(tile, _mm512_add_epi32(col, _mm512_set1_epi32(1)), pair_words(el, ol), 4);
      _mm512_i32scatter_epi32(tile, _mm512_add_epi32(col, _mm512_set1_epi32(2)), pair_words(el2, ol2), 4);
      // Columns no row owns are zero: the group's first row clears column 15,
      // the batch's last row the columns of the rows after it.
      if (i == 0) _mm512_i32scatter_epi32(tile, _mm512_add_epi32(pair_index, _mm512_set1_epi32(15)), zero, 4);
      if (m == M - 1)
        for (int c = 3 * (i + 1); c < 15; ++c)
          _mm512_i32scatter_epi32(tile, _mm512_add_epi32(pair_index, _mm512_set1_epi32(c)), zero, 4);
    }
  }
}

void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed, int M,
                  int K, float* y, size_t ldy, int n0, int n1, bool accumulate) {
  if (n0 >= n1) return;
  const int nb = K / 32, G = groups(M);
  const int32_t* flags =
      reinterpret_cast<const int32_t*>(static_cast<const char*>(packed) + fp32_bytes(M, K));
  const uint8_t* vnni = static_cast<const uint8_t*>(packed) + fp32_bytes(M, K) + flag_bytes(M);
  const TileConfig cfg;
  _tile_loadconfig(&cfg);
  alignas(64) float c_out[4][16][16];
  bool bad_row[64];
  auto finish = [&](int n, int rows, int g, const float(*c)[16], const bool* bad) {
    const int m_end = std::min(M, (g + 1) * kRowsPerGroup);
    for (int m = g * kRowsPerGroup; m < m_end; ++m) {
      const int col = 3 * (m - g * kRowsPerGroup);
      float* out = y + static_cast<size_t>(m) * ldy + n;
      for (int j = 0; j < rows; ++j) {
        if (flags[m] || bad[j]) {
          // The AVX-512 kernel for this one output, on row m of the fp32 part.
          avx512::matmul_mxfp4(blocks, scales, bias, static_cast<const float*>(packed) + static_cast<size_t>(m) * K,
                               1, K, out - n, ldy, n + j, n + j + 1, accumulate);
          continue;
        }
        float v = (c[j][col] + c[j][col + 1]) + c[j][col + 2];
        if (bias) {
          const uint32_t bits = static_cast<uint32_t>(bias[n + j]) << 16;
          float bv;
          std::memcpy(&bv, &bits, 4);
          v += bv;
        }
        out[j] = accumulate ? out[j] + v : v;
      }
    }
  };
  for (int g0 = 0; g0 < G;) {
    const int gc = std::min(4, G - g0);
    const int wt = 4 / gc;
    static constexpr PassFn kPass[5] = {nullptr, &tile_pass<4, 1>, &tile_pass<2, 2>, &tile_pass<1, 3>,
                                        &tile_pass<1, 4>};
    for (int n = n0; n < n1; n += 16 * wt) {
      const int rows = std::min(16 * wt, n1 - n);
      kPass[gc](blocks, scales, vnni, nb, n, rows, g0, c_out, bad_row);
      for (int w = 0; w < wt; ++w) {
        const int wr = std::min(16, rows - 16 * w);
        if (wr <= 0) break;
        for (int g = 0; g < gc; ++g) finish(n + 16 * w, wr, g0 + g, c_out[w * gc + g], bad_row + 16 * w);
      }
    }
    g0 += gc;
  }
  _tile_release();
}

}  // namespace gon::cpu::amx
