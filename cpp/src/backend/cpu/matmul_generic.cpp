// Portable C++ implementation of the CPU matrix products (matmul.hpp).
//
// Used where the AVX-512 kernels cannot run (Apple Silicon, older x86). It is
// written so that a compiler at -O3 vectorizes it without reassociating any
// floating-point sum: every accumulator is an explicit array of 16 lanes, each
// lane summing its own products in a fixed order, and the lanes are combined by
// one fixed tree at the end. Hence, as in the AVX-512 path, the operations
// behind an output element never depend on M, on [n0, n1) or on the tile shape.
//
// Packed activations use the same layout as the AVX-512 path: fp32 rows [M][K]
// with each 32-element block stored as its 16 even elements, then its 16 odd
// ones. Lane l of an accumulator takes elements 2l and 2l+1 of every block, which
// is also the order in which an MXFP4 byte holds them (low nibble, high nibble).
#include <algorithm>
#include <bit>
#include <cstring>

#include "backend/cpu/matmul_impl.hpp"

namespace gon::cpu::generic {

namespace {

constexpr int kLanes = 16;

inline float bf16_to_float(uint16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }

// Fixed summation tree over the 16 lanes: [i] + [i+8], then + [i+4], + [i+2], + [i+1].
inline float reduce16(const float* a) {
  float s8[8], s4[4];
  for (int i = 0; i < 8; ++i) s8[i] = a[i] + a[i + 8];
  for (int i = 0; i < 4; ++i) s4[i] = s8[i] + s8[i + 4];
  const float s0 = s4[0] + s4[2], s1 = s4[1] + s4[3];
  return s0 + s1;
}

// y[0..NT) of one activation row = sum (+ bias) (+ old y), in that order.
template <int NT>
inline void finish_row(const float (*acc)[kLanes], float* y, const uint16_t* bias, bool accumulate) {
  for (int j = 0; j < NT; ++j) {
    float s = reduce16(acc[j]);
    if (bias) s = s + bf16_to_float(bias[j]);
    if (accumulate) s = y[j] + s;
    y[j] = s;
  }
}

// Multiply-accumulate of one block: acc[i][j][l] += we[j][l] * x_even[l], then
// += wo[j][l] * x_odd[l]. we/wo: decoded weights [NT][16]; x: MT packed rows.
template <int MT, int NT>
inline void block_fma(float (&acc)[MT][NT][kLanes], const float (&we)[NT][kLanes], const float (&wo)[NT][kLanes],
                      const float* x, int K, int k) {
  for (int i = 0; i < MT; ++i) {
    const float* xe = x + static_cast<size_t>(i) * K + k;
    const float* xo = xe + kLanes;
    for (int j = 0; j < NT; ++j) {
      for (int l = 0; l < kLanes; ++l) acc[i][j][l] += we[j][l] * xe[l];
      for (int l = 0; l < kLanes; ++l) acc[i][j][l] += wo[j][l] * xo[l];
    }
  }
}

// ---- bf16 ----------------------------------------------------------------

// Outputs y[i * ldy + j], i < MT, j < NT; w: NT rows (stride ldw); x: MT packed rows.
template <int MT, int NT>
void bf16_tile(const uint16_t* w, size_t ldw, const float* x, int K, float* y, size_t ldy, const uint16_t* bias,
               bool accumulate) {
  float acc[MT][NT][kLanes] = {};
  for (int k = 0; k < K; k += 32) {
    float we[NT][kLanes], wo[NT][kLanes];
    for (int j = 0; j < NT; ++j) {
      const uint16_t* r = w + j * ldw + k;
      for (int l = 0; l < kLanes; ++l) {
        we[j][l] = bf16_to_float(r[2 * l]);
        wo[j][l] = bf16_to_float(r[2 * l + 1]);
      }
    }
    block_fma<MT, NT>(acc, we, wo, x, K, k);
  }
  for (int i = 0; i < MT; ++i) finish_row<NT>(acc[i], y + i * ldy, bias, accumulate);
}

// ---- MXFP4 ---------------------------------------------------------------

constexpr float kFp4[16] = {0.f, .5f, 1.f, 1.5f, 2.f, 3.f, 4.f, 6.f, -0.f, -.5f, -1.f, -1.5f, -2.f, -3.f, -4.f, -6.f};

// FP4 nibble n times 2^(s - 127) as fp32 bits, for scales s in [2, 252] (where
// every nonzero result is a normal number). Magnitude code c = n & 7:
// c >= 2 is 2^((c >> 1) - 1) * (1 + (c & 1) / 2), i.e. bits (c << 22) + (126 << 23);
// c == 1 is 0.5 (bits 126 << 23); c == 0 is zero. The scale adds s - 127 to the
// exponent field.
inline uint32_t fp4_bits(uint32_t n, uint32_t s) {
  const uint32_t c = n & 7;
  const uint32_t mag = c >= 2 ? (c << 22) + ((s - 1) << 23) : (c == 1 ? (s - 1) << 23 : 0u);
  return mag | ((n & 8) << 28);
}

// Decodes block `blk` of one row into even/odd fp32 weights.
inline void decode_fp4(const uint8_t* block, uint32_t s, float* we, float* wo) {
  if (s >= 2 && s <= 252) [[likely]] {
    for (int l = 0; l < kLanes; ++l) {
      const uint32_t byte = block[l];
      we[l] = std::bit_cast<float>(fp4_bits(byte & 15, s));
      wo[l] = std::bit_cast<float>(fp4_bits(byte >> 4, s));
    }
  } else {
    // Subnormal or infinite results: two exact power-of-two multiplies, the
    // second rounding once (same values as above wherever both apply).
    const int e = static_cast<int>(s) - 127, e1 = e >> 1, e2 = e - e1;
    const float p1 = std::bit_cast<float>(static_cast<uint32_t>(e1 + 127) << 23);
    const float p2 = std::bit_cast<float>(static_cast<uint32_t>(e2 + 127) << 23);
    for (int l = 0; l < kLanes; ++l) {
      we[l] = (kFp4[block[l] & 15] * p1) * p2;
      wo[l] = (kFp4[block[l] >> 4] * p1) * p2;
    }
  }
}

// Outputs y[i * ldy + j], i < MT, j < NT; blocks/scales: NT rows of K/32 blocks.
template <int MT, int NT>
void fp4_tile(const uint8_t* blocks, const uint8_t* scales, const float* x, int K, float* y, size_t ldy,
              const uint16_t* bias, bool accumulate) {
  const size_t nb = static_cast<size_t>(K / 32);
  float acc[MT][NT][kLanes] = {};
  for (size_t b = 0; b < nb; ++b) {
    float we[NT][kLanes], wo[NT][kLanes];
    for (int j = 0; j < NT; ++j) decode_fp4(blocks + (j * nb + b) * 16, scales[j * nb + b], we[j], wo[j]);
    block_fma<MT, NT>(acc, we, wo, x, K, static_cast<int>(b) * 32);
  }
  for (int i = 0; i < MT; ++i) finish_row<NT>(acc[i], y + i * ldy, bias, accumulate);
}

// ---- tiling --------------------------------------------------------------

constexpr int kMT = 2;   // activation rows per tile
constexpr int kNT = 2;   // weight rows per tile
constexpr int kNT1 = 4;  // weight rows per tile when M == 1

// Calls f.template operator()<MT, NT>(m, n) over the tiles of [0, M) x [n0, n1).
// Weight rows go in L2-sized groups so each is reused across all m-tiles.
template <class F>
void for_tiles(int M, int n0, int n1, size_t row_bytes, F&& f) {
  if (M == 1) {
    int n = n0;
    for (; n + kNT1 <= n1; n += kNT1) f.template operator()<1, kNT1>(0, n);
    for (; n < n1; ++n) f.template operator()<1, 1>(0, n);
    return;
  }
  const int group = std::max(kNT, static_cast<int>(std::max<size_t>(1, (256 * 1024) / row_bytes)) / kNT * kNT);
  for (int g0 = n0; g0 < n1; g0 += group) {
    const int g1 = std::min(n1, g0 + group);
    int m = 0;
    for (; m + kMT <= M; m += kMT) {
      int n = g0;
      for (; n + kNT <= g1; n += kNT) f.template operator()<kMT, kNT>(m, n);
      for (; n < g1; ++n) f.template operator()<kMT, 1>(m, n);
    }
    for (; m < M; ++m) {
      int n = g0;
      for (; n + kNT <= g1; n += kNT) f.template operator()<1, kNT>(m, n);
      for (; n < g1; ++n) f.template operator()<1, 1>(m, n);
    }
  }
}

}  // namespace

size_t packed_activation_bytes(int M, int K) { return static_cast<size_t>(M) * static_cast<size_t>(K) * sizeof(float); }

void pack_activations(const float* x, size_t ldx, const int32_t* rows, int M, int K, int m0, int m1, void* packed) {
  (void)M;
  float* out = static_cast<float*>(packed);
  for (int m = m0; m < m1; ++m) {
    const float* src = x + static_cast<size_t>(rows ? rows[m] : m) * ldx;
    float* dst = out + static_cast<size_t>(m) * K;
    for (int k = 0; k < K; k += 32)
      for (int l = 0; l < kLanes; ++l) {
        dst[k + l] = src[k + 2 * l];
        dst[k + kLanes + l] = src[k + 2 * l + 1];
      }
  }
}

void matmul_bf16(const uint16_t* w, size_t ldw, const uint16_t* bias, const void* packed, int M, int K, float* y,
                 size_t ldy, int n0, int n1, bool accumulate) {
  const float* xp = static_cast<const float*>(packed);
  for_tiles(M, n0, n1, static_cast<size_t>(K) * 2, [&]<int MT, int NT>(int m, int n) {
    bf16_tile<MT, NT>(w + static_cast<size_t>(n) * ldw, ldw, xp + static_cast<size_t>(m) * K, K,
                      y + static_cast<size_t>(m) * ldy + n, ldy, bias ? bias + n : nullptr, accumulate);
  });
}

void matmul_mxfp4(const uint8_t* blocks, const uint8_t* scales, const uint16_t* bias, const void* packed, int M,
                  int K, float* y, size_t ldy, int n0, int n1, bool accumulate) {
  const float* xp = static_cast<const float*>(packed);
  const size_t nb = static_cast<size_t>(K / 32);
  for_tiles(M, n0, n1, nb * 17, [&]<int MT, int NT>(int m, int n) {
    fp4_tile<MT, NT>(blocks + static_cast<size_t>(n) * nb * 16, scales + static_cast<size_t>(n) * nb,
                     xp + static_cast<size_t>(m) * K, K, y + static_cast<size_t>(m) * ldy + n, ldy,
                     bias ? bias + n : nullptr, accumulate);
  });
}

}  // namespace gon::cpu::generic
