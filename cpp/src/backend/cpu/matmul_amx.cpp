// bf16 products on AMX tiles (Intel Sapphire Rapids and later), the
// "avx512amx" kernel set (the contract is in matmul.hpp). Its MXFP4 products
// are the AVX-512 kernel's, on the fp32 part of this set's packed activations.
//
// This file alone is compiled with -mamx-tile -mamx-bf16 on top of the AVX-512
// flags (CMake does it for *_amx.cpp); matmul.cpp calls it only after a
// run-time check of the CPU and of the process's permission to use AMX state.
//
// Why: with several activation rows (batched decoding, prefill) the AVX-512
// bf16 kernel issues 3 vector operations per 32 weights and 2 FMAs per row on
// them, so an 8-row product costs about twice a 1-row one although it reads the
// same bytes (bench/cpp/NOTES-matmul.md, section 11). Here the weights need no
// decode at all: 16 weight rows x 32 consecutive k, straight from the
// checkpoint, are one A tile (stride = the row pitch), and one TDPBF16PS
// multiplies them by up to 16 activation columns.
//
// Opt-in (GON_MATMUL_ISA=avx512amx), not the default: on the 16-core Xeon it was
// measured on, 8-row products took M = 1's time and 32-row ones half the
// AVX-512 time, but batch-1 decoding with 16 threads was 14-17% slower (its
// dense products 21-31% slower; section 11), and one kernel must serve every M.
//
// Exactness. TDPBF16PS multiplies bf16 by bf16 (exact in fp32) and accumulates
// in fp32, treating bf16 subnormal inputs as zero and flushing subnormal
// results. Each fp32 activation is split into three bf16 parts, hi + lo + lo2
// == x exactly (each part takes the next 8 significant bits), each part a
// column of the B tile, so an activation row is three columns and one tile
// serves 5 rows (column 15 unused); y = (C[hi] + C[lo]) + C[lo2] (+ bias)
// (+ old y). Every output is computed by the same sequence for any M, [n0, n1)
// or tile (a tile's other rows and columns never mix into it: the determinism
// contract of matmul.hpp). What the flushes change: a weight below 2^-126 in
// magnitude counts as zero (its product with any activation the tiles take is
// below 2^-66), and an activation row whose largest magnitude is outside
// [2^-60, 2^60] (or not finite) gets its outputs from the AVX-512 kernel
// instead (the pack flags such rows). Within a row the tiles take, an element
// far below the row's largest (under ~2^-118), or a product of a split part
// falling under 2^-126, still flushes: terms below 2^-100 or so of the row's
// scale, far under the fp32 accumulation's rounding. A given activation row
// always takes the same path.
//
// Packed activations (this set's own layout):
//   [M][K] fp32 in the AVX-512 kernels' layout (the MXFP4 products and the
//       fallback read it),
//   [M] int32 flags (1: the row takes the AVX-512 path),
//   per group of 5 rows and per 32-element block of K, one 1 KiB B tile: 16
//       rows (pairs of elements 2p, 2p + 1 of the block, in natural order) x 16
//       dword columns (column 3i + s: bf16 part s of row i's two elements, the
//       even element in the low half).
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

namespace gon::cpu::amx {

namespace {

constexpr int kRowsPerGroup = 5;    // activation rows per B tile (3 columns each)
constexpr int kTileBytes = 1024;    // 16 rows x 64 bytes
constexpr float kSafeHi = 0x1p60f;  // activation rows with max |x| in [2^-60, 2^60] take the tiles
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

// Dword p = bf16 of the odd element's part << 16 | bf16 of the even element's part.
inline __m512i pair_words(__m512i even, __m512i odd) {
  return _mm512_or_si512(_mm512_and_si512(odd, _mm512_set1_epi32(static_cast<int>(0xffff0000u))),
                         _mm512_srli_epi32(even, 16));
}

// Keeps the compiler from dropping or sinking stores to memory that a tile
// instruction reads (GCC's tile intrinsics do not name all of it as an input).
inline void compiler_barrier() { asm volatile("" ::: "memory"); }

// Tile register numbers are immediates (GCC's tile intrinsics paste them into
// the assembly text): accumulator c (0-3) += A tile a (4-5) times B tile b
// (6-7), and the accumulators' zeroing and stores, the tiles' loads.
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
inline void load_tile(int t, const void* p, size_t stride) {
  switch (t) {
    case 4: _tile_loadd(4, p, stride); break;
    case 5: _tile_loadd(5, p, stride); break;
    case 6: _tile_loadd(6, p, stride); break;
    default: _tile_loadd(7, p, stride); break;
  }
}

// Computes WT weight tiles of 16 rows (rows [n, n + 16 WT) of w, all of them
// existing rows; `tail` rows of the last tile when it is partial, read from a
// zero-padded copy) against GC activation groups from g0, WT * GC <= 4
// accumulators, into c_out[w * GC + g]. While it runs it prefetches, in address
// order, the next call's weights: pf_rows rows from pf (the region right after
// this one; 0 rows at the end).
template <int WT, int GC>
void tile_pass(const uint16_t* w, size_t ldw, int nb, int tail, const uint8_t* vnni, int g0, const uint16_t* pf,
               int pf_rows, float (*c_out)[16][16]) {
  static_assert(WT * GC <= 4, "four accumulator tiles");
  for (int t = 0; t < WT * GC; ++t) zero_acc(t);
  const size_t stride = ldw * sizeof(uint16_t);
  alignas(64) uint16_t tail_buf[16][32];
  if (tail) std::memset(tail_buf, 0, sizeof(tail_buf));
  // The next region's lines, spread evenly over the nb steps (one sequential
  // stream, which the L2 streamer follows, rather than 16 WT row streams).
  const char* pf_base = reinterpret_cast<const char*>(pf);
  const int64_t pf_lines = (static_cast<int64_t>(pf_rows) * static_cast<int64_t>(stride) + 63) / 64;
  int64_t pf_next = 0;
  for (int b = 0; b < nb; ++b) {
    const int64_t pf_end = pf_lines * (b + 1) / nb;
    for (; pf_next < pf_end; ++pf_next) _mm_prefetch(pf_base + pf_next * 64, _MM_HINT_T1);
    for (int g = 0; g < GC; ++g)
      load_tile(6 + g, vnni + (static_cast<size_t>(g0 + g) * nb + b) * kTileBytes, 64);
    for (int t = 0; t < WT; ++t) {
      const int a = 4 + (t & 1);
      const uint16_t* src = w + static_cast<size_t>(16 * t) * ldw + static_cast<size_t>(b) * 32;
      if (tail && t == WT - 1) {
        for (int r = 0; r < tail; ++r) std::memcpy(tail_buf[r], src + static_cast<size_t>(r) * ldw, 64);
        compiler_barrier();  // the tile load reads tail_buf through a pointer the compiler cannot see into
        load_tile(a, tail_buf, 64);
      } else {
        load_tile(a, src, stride);
      }
      for (int g = 0; g < GC; ++g) dp(t * GC + g, a, 6 + g);
    }
  }
  for (int t = 0; t < WT * GC; ++t) store_acc(t, &c_out[t][0][0]);
}

using PassFn = void (*)(const uint16_t*, size_t, int, int, const uint8_t*, int, const uint16_t*, int,
                        float (*)[16][16]);

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
  int32_t* flags = reinterpret_cast<int32_t*>(static_cast<char*>(packed) + fp32_bytes(M, K));
  uint8_t* vnni = static_cast<uint8_t*>(packed) + fp32_bytes(M, K) + flag_bytes(M);
  const int nb = K / 32;
  const __m512i pair_index = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
  const __m512i even_index = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd_index = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  const __m512i zero = _mm512_setzero_si512();
  for (int m = m0; m < m1; ++m) {
    const float* row = x + static_cast<size_t>(rows ? rows[m] : m) * ldx;
    // The row's largest magnitude decides its path (NaN compares false: unsafe).
    __m512 mx = _mm512_setzero_ps();
    bool finite = true;
    for (int k = 0; k < K; k += 16) {
      const __m512 v = _mm512_loadu_ps(row + k);
      mx = _mm512_max_ps(mx, _mm512_abs_ps(v));
      // x - x is 0 for finite x and NaN for infinities and NaN
      finite = finite && _mm512_cmp_ps_mask(_mm512_sub_ps(v, v), _mm512_setzero_ps(), _CMP_EQ_OQ) == 0xffff;
    }
    const float big = _mm512_reduce_max_ps(mx);
    flags[m] = (finite && big <= kSafeHi && (big >= kSafeLo || big == 0.f)) ? 0 : 1;
    const int g = m / kRowsPerGroup, i = m % kRowsPerGroup;
    for (int b = 0; b < nb; ++b) {
      uint8_t* tile = vnni + (static_cast<size_t>(g) * nb + b) * kTileBytes;
      const __m512 v0 = _mm512_loadu_ps(row + b * 32), v1 = _mm512_loadu_ps(row + b * 32 + 16);
      __m512i eh, el, el2, oh, ol, ol2;
      split3(_mm512_permutex2var_ps(v0, even_index, v1), eh, el, el2);
      split3(_mm512_permutex2var_ps(v0, odd_index, v1), oh, ol, ol2);
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

void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K, float* y,
                 size_t ldy, int n0, int n1, bool accumulate) {
  if (n0 >= n1) return;
  const int nb = K / 32, G = groups(M);
  const int32_t* flags = reinterpret_cast<const int32_t*>(static_cast<const char*>(packed) + fp32_bytes(M, K));
  const uint8_t* vnni = static_cast<const uint8_t*>(packed) + fp32_bytes(M, K) + flag_bytes(M);
  const TileConfig cfg;
  compiler_barrier();  // GCC's ldtilecfg names only the first 8 bytes of cfg as read: keep every store before it
  _tile_loadconfig(&cfg);
  alignas(64) float c_out[4][16][16];
  auto finish = [&](int n, int rows, int g, const float (*c)[16]) {
    const int m_end = std::min(M, (g + 1) * kRowsPerGroup);
    for (int m = g * kRowsPerGroup; m < m_end; ++m) {
      float* out = y + static_cast<size_t>(m) * ldy + n;
      if (flags[m]) {  // the AVX-512 kernel for this row's outputs, on row m of the fp32 part
        avx512::matmul_bf16(w, ldw, bias, static_cast<const float*>(packed) + static_cast<size_t>(m) * K, 1, K,
                            out - n, ldy, n, n + rows, accumulate);
        continue;
      }
      const int col = 3 * (m - g * kRowsPerGroup);
      for (int j = 0; j < rows; ++j) {
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
  static constexpr PassFn kPass[3][5] = {
      {nullptr, nullptr, nullptr, nullptr, nullptr},
      {nullptr, &tile_pass<1, 1>, &tile_pass<2, 1>, nullptr, &tile_pass<4, 1>},
      {nullptr, &tile_pass<1, 2>, &tile_pass<2, 2>, nullptr, nullptr}};
  // Groups two at a time (B tiles 6 and 7) with two weight tiles, or one group with four.
  for (int g0 = 0; g0 < G;) {
    const int gc = std::min(2, G - g0);
    const int wt_max = gc == 1 ? 4 : 2;
    for (int n = n0; n < n1;) {
      const int left = n1 - n;
      int wt = std::min(wt_max, (left + 15) / 16);
      if (wt == 3) wt = 2;
      const int rows = std::min(16 * wt, left), tail = rows % 16;
      const int next = n + rows;
      const int pf_rows = std::min(16 * wt, n1 - next);
      kPass[gc][wt](w + static_cast<size_t>(n) * ldw, ldw, nb, tail, vnni, g0, w + static_cast<size_t>(next) * ldw,
                    pf_rows, c_out);
      for (int t = 0; t < wt; ++t) {
        const int tr = std::min(16, rows - 16 * t);
        for (int g = 0; g < gc; ++g) finish(n + 16 * t, tr, g0 + g, c_out[t * gc + g]);
      }
      n = next;
    }
    g0 += gc;
  }
  _tile_release();
}

}  // namespace gon::cpu::amx
