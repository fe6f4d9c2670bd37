// What the vector kernel sets of the CPU matrix products (matmul_avx512.cpp,
// matmul_avx2.cpp) share: the exact FP4 * 2^(scale - 127) values and the walk
// over register tiles with its prefetch plan. No intrinsics here.
//
// Everything is in an unnamed namespace: each kernel file is compiled with its
// own instruction-set flags, and an inline function shared by name between
// them could be linked from the file compiled for the larger set into the other
// one (an AVX-512 copy running on an AVX2-only CPU).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

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
// Weight rows go in groups small enough to stay in L2 while every m-tile uses
// them (one tile of nt1 rows when M == 1). While a group is being computed, a
// later group is prefetched: the tile at the same position in the group
// `ahead` groups on (the next one when M > 1; pf_ahead1 when M == 1), spread
// over the m-tiles (m-tile t fetches the t-th slice of the blocks), so that
// memory traffic overlaps the arithmetic instead of stalling the first m-tile
// of each group.
template <class Call>
inline void for_tiles(int max_mt, int max_nt, int M, int K, int n0, int n1, size_t row_bytes, int nt1,
                      int pf_ahead1, Call&& call) {
  const int nb = K / 32;
  const int nt_max = M == 1 ? nt1 : max_nt;
  const int ahead = M == 1 ? pf_ahead1 : 1;
  int group = nt_max;
  if (M > 1) {
    constexpr size_t kGroupBytes = 256 * 1024;
    group = static_cast<int>(std::max<size_t>(1, kGroupBytes / row_bytes));
    group = std::max(nt_max, group / nt_max * nt_max);
  }
  const int m_tiles = (M + max_mt - 1) / max_mt;
  for (int g0 = n0; g0 < n1; g0 += group) {
    const int g1 = std::min(n1, g0 + group), h1 = std::min(n1, g1 + ahead * group);
    for (int t = 0, m = 0; t < m_tiles; ++t) {
      const int mt = M / m_tiles + (t < M % m_tiles ? 1 : 0);
      const int b0 = static_cast<int>(int64_t{nb} * t / m_tiles), b1 = static_cast<int>(int64_t{nb} * (t + 1) / m_tiles);
      for (int n = g0; n < g1; n += nt_max) {
        const int nt = std::min(nt_max, g1 - n);
        const int r0 = g1 + (ahead - 1) * group + (n - g0);  // same position, `ahead` groups on
        const int pf_rows = std::clamp(h1 - r0, 0, nt_max);
        call(mt, nt, m, n, pf_rows, static_cast<ptrdiff_t>(r0 - n), b0, b1);
      }
      m += mt;
    }
  }
}

}  // namespace
}  // namespace gon::cpu
