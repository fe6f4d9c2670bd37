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
#include <cstdlib>
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

// One call of a tile kernel (see for_tiles).
struct TilePass {
  int mt, nt;                     // activation rows, weight rows
  int m, n;                       // first activation row, first weight row
  int pf_rows;                    // weight rows to prefetch (0..nt) ...
  ptrdiff_t pf_offset;            // ... starting this many rows after n ...
  int pf_b0, pf_b1;               // ... blocks [pf_b0, pf_b1) of them
  int kb0, kb1;                   // the blocks of K this pass computes
  float* acc;                     // where the accumulators wait between passes (null: one pass)
  bool first, last;               // the first pass over K (accumulators start at 0), the last (outputs written)
  bool spread;                    // XEXP: prefetch spread over the steps of the pass
  // XEXP sequential prefetch (GON_X_PFSEQ=1; pf_rows is then 0): lines [pf_l0, pf_l1) of the pf_seq_rows rows
  // starting pf_seq_offset rows after n, read as one contiguous region; pf_scales: also that region's scales.
  int pf_seq_rows;
  ptrdiff_t pf_seq_offset;
  int pf_l0, pf_l1;
  bool pf_scales;
};

// Floats a tile may keep between passes per output: one 16-lane vector.
constexpr int kAccFloats = 16;
// The accumulators of one row group, kept on the stack while K is split into passes.
constexpr int kAccBufFloats = 16384;

// Walks the (m, n) tiles of [0, M) x [n0, n1), calling call(const TilePass&).
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
//
// XEXP kchunk_kib > 0 (M > 1): K is walked in passes whose activation rows
// (an m-tile's rows x the pass's blocks) take at most that many KiB, so they
// stay in L1 while the group's weight rows stream past; each tile's
// accumulators wait in a stack buffer between passes, so every output sees the
// same operations in the same order as in one pass. The prefetch slices are
// then spread over the (m-tile, pass) pairs and over the steps of each pass.
inline int x_env(const char* name, int dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : dflt;
}
template <class Call>
inline void for_tiles(int max_mt, int max_nt, int M, int K, int n0, int n1, size_t row_bytes, size_t pf_row_bytes,
                      int nt1, int pf_ahead1, Call&& call) {
  // XEXP: temporary experiment switches (GON_X_PF: 0 no software prefetch, 1 as
  // before, 2 only when M == 1, 3 two groups ahead when M > 1; GON_X_GROUP: KiB
  // per row group when M > 1; GON_X_KCHUNK: KiB of activations per pass, 0 = one pass).
  static const int x_pf = x_env("GON_X_PF", 1), x_group = x_env("GON_X_GROUP", 256),
                   x_kchunk = x_env("GON_X_KCHUNK", 0), x_pfseq = x_env("GON_X_PFSEQ", 0);
  const int nb = K / 32;
  const int nt_max = M == 1 ? nt1 : max_nt;
  const int ahead = M == 1 ? pf_ahead1 : (x_pf == 3 ? 2 : 1);
  const bool no_pf = x_pf == 0 || (x_pf == 2 && M > 1);
  const int m_tiles = (M + max_mt - 1) / max_mt;
  const int mt_high = (M + m_tiles - 1) / m_tiles;
  int chunk = nb;
  if (M > 1 && x_kchunk > 0) chunk = std::clamp(x_kchunk * 1024 / (mt_high * 32 * 4), 1, nb);
  const int passes = (nb + chunk - 1) / chunk;
  int group = nt_max;
  if (M > 1) {
    const size_t kGroupBytes = static_cast<size_t>(x_group) * 1024;
    group = static_cast<int>(std::max<size_t>(1, kGroupBytes / row_bytes));
    if (passes > 1) group = std::min(group, kAccBufFloats / (max_mt * kAccFloats));
    group = std::max(nt_max, group / nt_max * nt_max);
  }
  alignas(64) float acc_buf[kAccBufFloats];
  const int slices = m_tiles * (passes > 1 ? passes : 1);
  for (int g0 = n0; g0 < n1; g0 += group) {
    const int g1 = std::min(n1, g0 + group), h1 = std::min(n1, g1 + ahead * group);
    const int rs = g1 + (ahead - 1) * group, seq_rows = x_pfseq && !no_pf ? std::max(0, h1 - rs) : 0;
    const int64_t seq_lines = (static_cast<int64_t>(seq_rows) * static_cast<int64_t>(pf_row_bytes) + 127) / 64;
    const int64_t calls = static_cast<int64_t>(m_tiles) * passes * ((g1 - g0 + nt_max - 1) / nt_max);
    int64_t c = 0;
    for (int t = 0, m = 0; t < m_tiles; ++t) {
      const int mt = M / m_tiles + (t < M % m_tiles ? 1 : 0);
      for (int p = 0; p < passes; ++p) {
        const int slice = passes > 1 ? t * passes + p : t;
        const int b0 = static_cast<int>(int64_t{nb} * slice / slices);
        const int b1 = static_cast<int>(int64_t{nb} * (slice + 1) / slices);
        const int kb0 = p * chunk, kb1 = std::min(nb, kb0 + chunk);
        for (int n = g0; n < g1; n += nt_max) {
          const int nt = std::min(nt_max, g1 - n);
          const int r0 = g1 + (ahead - 1) * group + (n - g0);  // same position, `ahead` groups on
          const int pf_rows = no_pf || x_pfseq ? 0 : std::clamp(h1 - r0, 0, nt_max);
          float* acc = passes > 1 ? acc_buf + static_cast<size_t>((n - g0) / nt_max) * max_mt * nt_max * kAccFloats
                                  : nullptr;
          const int l0 = static_cast<int>(seq_lines * c / calls), l1 = static_cast<int>(seq_lines * (c + 1) / calls);
          call(TilePass{mt, nt, m, n, pf_rows, static_cast<ptrdiff_t>(r0 - n), b0, b1, kb0, kb1, acc, p == 0,
                        p == passes - 1, x_kchunk > 0 && M > 1, seq_rows, static_cast<ptrdiff_t>(rs - n), l0, l1,
                        seq_rows > 0 && c == 0});
          ++c;
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
  // Blocks [kb0, kb1) of K; accumulators from/to acc unless first/last.
  int kb0, kb1;
  float* acc;
  bool first, last;
  bool spread;  // XEXP: prefetch spread over the pass's steps (else block b at step b)
  int pf_seq_rows;  // XEXP: see TilePass
  ptrdiff_t pf_seq_offset;
  int pf_l0, pf_l1;
  bool pf_scales;
};

// XEXP: lines [l0, l1) from base, spread evenly over `steps` steps.
struct SeqLines {
  const char* base;
  int next, end;
  int64_t rem, span, len;
  SeqLines(const void* b, int l0, int l1, int steps)
      : base(static_cast<const char*>(b)), next(l0), end(l1), rem(0), span(l1 > l0 ? l1 - l0 : 0),
        len(steps > 0 ? steps : 1) {}
  template <class F>
  inline void step(F&& f) {
    rem += span;
    while (rem >= len && next < end) {
      f(base + static_cast<size_t>(next) * 64);
      ++next;
      rem -= len;
    }
  }
};

// The blocks a tile prefetches, step by step: step(b, f) calls f(block) for
// each block of [pf_b0, pf_b1) to fetch at step b of the pass. Unspread, block
// b at step b; spread (XEXP), the slice evenly over the pass's steps.
struct PrefetchSteps {
  int next, end;
  int64_t rem, span, len;
  bool spread;
  PrefetchSteps(const TileArgs& a, int pf_b0, int pf_b1)
      : next(pf_b0), end(pf_b1), rem(0), span(pf_b1 > pf_b0 ? pf_b1 - pf_b0 : 0), len(a.kb1 - a.kb0),
        spread(a.spread) {}
  template <class F>
  inline void step(int b, F&& f) {
    if (!spread) {
      if (b >= next && b < end) f(b);
      return;
    }
    rem += span;
    while (rem >= len && next < end) {
      f(next++);
      rem -= len;
    }
  }
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

inline TileArgs tile_args(const TilePass& p, const float* xp, int K, float* y, size_t ldy, const uint16_t* bias,
                          bool accumulate) {
  return TileArgs{xp + static_cast<size_t>(p.m) * K, K, y + static_cast<size_t>(p.m) * ldy + p.n, ldy,
                  bias ? bias + p.n : nullptr, accumulate, p.pf_rows, p.pf_offset, p.pf_b0, p.pf_b1, p.kb0, p.kb1,
                  p.acc, p.first, p.last, p.spread, p.pf_seq_rows, p.pf_seq_offset, p.pf_l0, p.pf_l1, p.pf_scales};
}

// The bodies of matmul_bf16 and matmul_mxfp4 (matmul.hpp) for a kernel set whose
// packed activations are fp32 rows [M][K]: tiles of at most max_mt x max_nt
// (nt1 weight rows when M == 1, prefetching pf_ahead1 tiles ahead).
template <class Tables>
inline void tiled_bf16(const Tables& t, int max_mt, int max_nt, int nt1, int pf_ahead1, const uint16_t* w,
                       size_t ldw, const uint16_t* bias, const void* packed, int M, int K, float* y, size_t ldy, int n0,
                       int n1, bool accumulate) {
  const float* xp = static_cast<const float*>(packed);
  for_tiles(max_mt, max_nt, M, K, n0, n1, static_cast<size_t>(K) * 2, ldw * 2, nt1, pf_ahead1, [&](const TilePass& p) {
    t.bf16[p.mt][p.nt](w + static_cast<size_t>(p.n) * ldw, ldw, tile_args(p, xp, K, y, ldy, bias, accumulate));
  });
}

template <class Tables>
inline void tiled_mxfp4(const Tables& t, int max_mt, int max_nt, int nt1, int pf_ahead1, const uint8_t* blocks,
                        const uint8_t* scales, const uint16_t* bias, const void* packed, int M, int K, float* y,
                        size_t ldy, int n0, int n1, bool accumulate) {
  const float* xp = static_cast<const float*>(packed);
  const size_t nb = static_cast<size_t>(K / 32);
  for_tiles(max_mt, max_nt, M, K, n0, n1, nb * 17, nb * 16, nt1, pf_ahead1, [&](const TilePass& p) {
    t.fp4[p.mt][p.nt](blocks + static_cast<size_t>(p.n) * nb * 16, scales + static_cast<size_t>(p.n) * nb,
                      tile_args(p, xp, K, y, ldy, bias, accumulate));
  });
}

}  // namespace
}  // namespace gon::cpu
