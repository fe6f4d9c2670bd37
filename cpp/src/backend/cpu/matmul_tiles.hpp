// What the vector kernel sets of the CPU matrix products (matmul_avx512.cpp,
// matmul_avx2.cpp) share: the exact FP4 * 2^(scale - 127) values, the walk over
// register tiles with its prefetch plan, the tables of tile functions and the
// entry points' bodies. No intrinsics here: each file brings its tile kernels.
//
// Everything is in an unnamed namespace: each kernel file is compiled with its
// own instruction-set flags, and an inline function shared by name between
// them could be linked from the file compiled for the larger set into the other
// one (an AVX-512 copy running on an AVX2-only CPU).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <utility>

namespace gon::cpu {
namespace {

// bf16 bit pattern of FP4 nibble n times 2^(s - 127), exactly (these values
// have two significant bits, so bf16 holds every one of them: subnormal down to
// 2^-128 for small scales, +-infinity where the value reaches 2^128).
constexpr uint16_t scaled_fp4_bf16(int n, int s) {
  const uint16_t sign = (n & 8) ? 0x8000 : 0;
  const int c = n & 7;  // magnitude code: 0, 0.5, 1, 1.5, 2, 3, 4, 6
  if (c == 0) return sign;
  const int e = (c == 1 ? -1 : (c >> 1) - 1) + s - 127;  // value = (1 + f/2) * 2^e
  const int f = c >= 2 ? (c & 1) : 0;
  if (e > 127) return sign | 0x7f80;                                              // infinity
  if (e >= -126) return sign | static_cast<uint16_t>(((e + 127) << 7) | (f << 6));  // normal
  return sign | static_cast<uint16_t>((2 + f) << (e + 132));                      // subnormal, e >= -128
}

// Walks the (m, n) tiles of [0, M) x [n0, n1), calling
// call(mt, nt, m, n, pf_rows, pf_offset, pf_b0, pf_b1) where the pf_* fields
// say which weight rows and blocks the tile should prefetch.
//
// Activation rows go in tiles of at most max_mt (M is cut into near-equal
// tiles: 8 = 4 + 4, 13 = 5 + 4 + 4 with max_mt = 5, rather than full tiles plus
// a thin remainder), weight rows in tiles of max_nt (nt1 when M == 1).
//
// Prefetch plan. With one m-tile (M <= max_mt) every weight row is used once:
// each tile prefetches the tile `near` tiles on (pf_ahead1 when M == 1, else
// as many tiles as make kPrefetchAheadBytes), so only the first `near` tiles
// of a call wait on memory. With several m-tiles, weight rows go in groups
// small enough to stay in L2 while every m-tile uses them; while a group is
// computed the next one is prefetched, spread over the m-tiles (m-tile t
// fetches the t-th slice of the blocks), so that memory traffic overlaps the
// arithmetic. The first group of a call has nobody before it to fetch it:
// there m-tile 0 fetches its own group `near` tiles ahead and the other
// m-tiles share the next group. (The runtime's calls are ~1 MiB work units, a
// few groups each, so a cold first group was a quarter of a call; bench_matmul
// --units times calls of that size.)
constexpr size_t kGroupBytes = 256 * 1024;
constexpr size_t kPrefetchAheadBytes = 16 * 1024;

template <class Call>
inline void for_tiles(int max_mt, int max_nt, int M, int K, int n0, int n1, size_t row_bytes, int nt1,
                      int pf_ahead1, Call&& call) {
  const int nb = K / 32;
  const int nt_max = M == 1 ? nt1 : max_nt;
  const int m_tiles = (M + max_mt - 1) / max_mt;
  const size_t tile_bytes = row_bytes * static_cast<size_t>(nt_max);
  // Tiles between a tile and the one it prefetches when a pass walks its own rows.
  const int near = M == 1 ? pf_ahead1
                          : static_cast<int>(std::max<size_t>(1, (kPrefetchAheadBytes + tile_bytes - 1) / tile_bytes));
  if (m_tiles == 1) {
    for (int n = n0; n < n1; n += nt_max) {
      const int nt = std::min(nt_max, n1 - n);
      const int r0 = n + near * nt_max;
      call(M, nt, 0, n, std::clamp(n1 - r0, 0, nt_max), static_cast<ptrdiff_t>(r0 - n), 0, nb);
    }
    return;
  }
  int group = static_cast<int>(std::max<size_t>(1, kGroupBytes / row_bytes));
  group = std::max(nt_max, group / nt_max * nt_max);
  for (int g0 = n0; g0 < n1; g0 += group) {
    const int g1 = std::min(n1, g0 + group), h1 = std::min(n1, g1 + group);
    const bool first = g0 == n0;
    // m-tiles that share the next group's prefetch, and the first of them
    const int sharers = first ? m_tiles - 1 : m_tiles, s0 = m_tiles - sharers;
    for (int t = 0, m = 0; t < m_tiles; ++t) {
      const int mt = M / m_tiles + (t < M % m_tiles ? 1 : 0);
      for (int n = g0; n < g1; n += nt_max) {
        const int nt = std::min(nt_max, g1 - n);
        if (t < s0) {  // the first group's m-tile 0: its own rows, `near` tiles on
          const int r0 = n + near * nt_max;
          call(mt, nt, m, n, std::clamp(g1 - r0, 0, nt_max), static_cast<ptrdiff_t>(r0 - n), 0, nb);
        } else {  // the same position in the next group, slice t - s0 of its blocks
          const int b0 = static_cast<int>(int64_t{nb} * (t - s0) / sharers);
          const int b1 = static_cast<int>(int64_t{nb} * (t - s0 + 1) / sharers);
          const int r0 = g1 + (n - g0);
          call(mt, nt, m, n, std::clamp(h1 - r0, 0, nt_max), static_cast<ptrdiff_t>(r0 - n), b0, b1);
        }
      }
      m += mt;
    }
  }
}

// What a tile kernel needs besides its weights.
struct TileArgs {
  const float* x;        // MT packed activation rows (stride K)
  int K;
  float* y;              // y[i * ldy + j]: output of activation row i, weight row j
  size_t ldy;
  const uint16_t* bias;  // NT entries or null
  bool accumulate;
  // Weight rows to prefetch while this tile runs (see for_tiles): pf_rows rows
  // (0..NT) starting pf_offset rows after this tile's first row, blocks
  // [pf_b0, pf_b1) of them.
  int pf_rows;
  ptrdiff_t pf_offset;
  int pf_b0, pf_b1;
};

// Which weight rows a tile prefetches (TileArgs' pf_* fields): one pointer per
// row of the tile into rows of row_stride elements from w (the last prefetched
// row repeated when there are fewer than NT), and the blocks [*b0, *b1) of each
// row to fetch (*b0 = nb when the tile fetches nothing).
template <int NT, class T>
inline void prefetch_plan(const T* w, ptrdiff_t row_stride, int nb, const TileArgs& a, const T* (&rows)[NT], int* b0,
                          int* b1) {
  const ptrdiff_t offset = a.pf_rows > 0 ? a.pf_offset : 0;
  for (int j = 0; j < NT; ++j) rows[j] = w + (offset + std::min(j, std::max(a.pf_rows - 1, 0))) * row_stride;
  *b0 = a.pf_rows > 0 ? a.pf_b0 : nb;
  *b1 = a.pf_b1;
}

// Function-pointer tables of a kernel file's register tiles, indexed [MT][NT]:
// Tile<MT, NT> (a class template of that file) has `static constexpr bool
// kUsed` and the static functions bf16(w, ldw, args) and fp4(blocks, scales,
// args); only the used shapes are instantiated.
template <int MaxMT, int TabNT, template <int, int> class Tile>
struct TileTables {
  void (*bf16[MaxMT + 1][TabNT + 1])(const uint16_t*, size_t, const TileArgs&) = {};
  void (*fp4[MaxMT + 1][TabNT + 1])(const uint8_t*, const uint8_t*, const TileArgs&) = {};
  constexpr TileTables() { fill_all(std::make_integer_sequence<int, MaxMT>{}); }

 private:
  template <int... MT>
  constexpr void fill_all(std::integer_sequence<int, MT...>) {
    (fill_row<MT + 1>(std::make_integer_sequence<int, TabNT>{}), ...);
  }
  template <int MT, int... NT>
  constexpr void fill_row(std::integer_sequence<int, NT...>) {
    (fill_one<MT, NT + 1>(), ...);
  }
  template <int MT, int NT>
  constexpr void fill_one() {
    if constexpr (Tile<MT, NT>::kUsed) {
      bf16[MT][NT] = &Tile<MT, NT>::bf16;
      fp4[MT][NT] = &Tile<MT, NT>::fp4;
    }
  }
};

// The bodies of matmul_bf16 and matmul_mxfp4 (matmul.hpp) for a kernel set whose
// packed activations are fp32 rows [M][K]: tiles of at most max_mt x max_nt
// (nt1 weight rows when M == 1, prefetching pf_ahead1 tiles ahead).
template <class Tables>
inline void tiled_bf16(const Tables& t, int max_mt, int max_nt, int nt1, int pf_ahead1, const uint16_t* w,
                       size_t ldw, const uint16_t* bias, const void* packed, int M, int K, float* y, size_t ldy, int n0,
                       int n1, bool accumulate) {
  const float* xp = static_cast<const float*>(packed);
  for_tiles(max_mt, max_nt, M, K, n0, n1, static_cast<size_t>(K) * 2, nt1, pf_ahead1,
            [&](int mt, int nt, int m, int n, int pf_rows, ptrdiff_t pf_offset, int pf_b0, int pf_b1) {
              const TileArgs a{xp + static_cast<size_t>(m) * K, K, y + static_cast<size_t>(m) * ldy + n, ldy,
                               bias ? bias + n : nullptr, accumulate, pf_rows, pf_offset, pf_b0, pf_b1};
              t.bf16[mt][nt](w + static_cast<size_t>(n) * ldw, ldw, a);
            });
}

template <class Tables>
inline void tiled_mxfp4(const Tables& t, int max_mt, int max_nt, int nt1, int pf_ahead1, const uint8_t* blocks,
                        const uint8_t* scales, const uint16_t* bias, const void* packed, int M, int K, float* y,
                        size_t ldy, int n0, int n1, bool accumulate) {
  const float* xp = static_cast<const float*>(packed);
  const size_t nb = static_cast<size_t>(K / 32);
  for_tiles(max_mt, max_nt, M, K, n0, n1, nb * 17, nt1, pf_ahead1,
            [&](int mt, int nt, int m, int n, int pf_rows, ptrdiff_t pf_offset, int pf_b0, int pf_b1) {
              const TileArgs a{xp + static_cast<size_t>(m) * K, K, y + static_cast<size_t>(m) * ldy + n, ldy,
                               bias ? bias + n : nullptr, accumulate, pf_rows, pf_offset, pf_b0, pf_b1};
              t.fp4[mt][nt](blocks + static_cast<size_t>(n) * nb * 16, scales + static_cast<size_t>(n) * nb, a);
            });
}

}  // namespace
}  // namespace gon::cpu
