// Portable C++ implementation of the CPU matrix products (matmul.hpp).
//
// Used where the AVX-512 kernels cannot run (Apple Silicon, older x86), and as
// a reference for them. It is written so that a compiler at -O3 vectorizes it
// without reassociating any floating-point sum: every accumulator is an
// explicit array of 8 lanes, each lane summing its own products in a fixed
// order (with one explicit multiply-add operation, see mul_add), and the lanes
// are combined by one fixed tree at the end. Hence, as in the AVX-512 path, the
// operations behind an output element never depend on M, on [n0, n1) or on the
// tile shape, whatever the compiler and its flags (checked with gcc and clang,
// SSE2, AVX2 and -march=native, -ffp-contract=off/fast).
//
// Packed activations (this file's own layout): fp32 rows [M][K], each 32-element
// block stored as its 16 even elements, then its 16 odd ones -- the order in
// which an MXFP4 byte holds them (low nibble, high nibble) and in which a 32-bit
// load of two bf16 splits into halves. Weights are decoded one block of one row
// at a time into 32 fp32 values in that order: bf16 by shifting/masking 32-bit
// words, MXFP4 through a byte -> (2*FP4 low, 2*FP4 high) table and one multiply
// by 2^(scale-128).
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "backend/cpu/matmul_impl.hpp"

// The helpers below must be inlined into the tile functions so that the
// accumulators are visibly local arrays (otherwise clang does not vectorize).
#if defined(__GNUC__) || defined(__clang__)
#define GON_GENERIC_INLINE inline __attribute__((always_inline))
#define GON_RESTRICT __restrict__
#elif defined(_MSC_VER)
#define GON_GENERIC_INLINE __forceinline
#define GON_RESTRICT __restrict
#else
#define GON_GENERIC_INLINE inline
#define GON_RESTRICT
#endif

namespace gon::cpu::generic {

namespace {

// Accumulator width: 8 lanes (two 128-bit or one 256-bit register), so that a
// tile's accumulators and one row's decoded weights fit the 16 registers of
// SSE2/AVX2 (more lanes made the compilers spill).
constexpr int kLanes = 8;

GON_GENERIC_INLINE float bf16_to_float(uint16_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v) << 16); }

// Fixed summation tree over the 8 lanes: [i] + [i+4], then + [i+2], then + [i+1].
GON_GENERIC_INLINE float reduce8(const float* a) {
  float s4[4];
  for (int i = 0; i < 4; ++i) s4[i] = a[i] + a[i + 4];
  const float s0 = s4[0] + s4[2], s1 = s4[1] + s4[3];
  return s0 + s1;
}

// y[0..NT) of one activation row = sum (+ bias) (+ old y), in that order.
template <int NT>
GON_GENERIC_INLINE void finish_row(const float (*acc)[kLanes], float* y, const uint16_t* bias, bool accumulate) {
  for (int j = 0; j < NT; ++j) {
    float s = reduce8(acc[j]);
    if (bias) s = s + bf16_to_float(bias[j]);
    if (accumulate) s = y[j] + s;
    y[j] = s;
  }
}

// a * b + c for the accumulations. Where the target has a fast fused
// multiply-add (FP_FAST_FMAF: x86 with FMA, ARMv8, ...) it is used explicitly;
// elsewhere the compiler has no FMA to contract to. Either way every
// accumulation in a build is the same operation: leaving `acc += w * x` to the
// compiler's contraction (-ffp-contract=fast, GCC's default) fused it in some
// tile shapes and not in others, which broke the bit-identity of a row's result
// across batch sizes.
GON_GENERIC_INLINE float mul_add(float a, float b, float c) {
#if defined(FP_FAST_FMAF)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// Multiply-accumulate of one decoded weight block (w[0..16) even elements,
// w[16..32) odd ones, the packed order) into the accumulators of MT activation
// rows: lane l takes elements 2l, 2l+16, 2l+1, 2l+17 of the block, in that order.
template <int MT, int NT>
GON_GENERIC_INLINE void block_fma(float (&acc)[MT][NT][kLanes], int j, const float* GON_RESTRICT w,
                                  const float* GON_RESTRICT x, int K) {
  for (int i = 0; i < MT; ++i) {
    const float* GON_RESTRICT xi = x + static_cast<size_t>(i) * K;
    float* GON_RESTRICT a = acc[i][j];
    for (int h = 0; h < 4; ++h)
      for (int l = 0; l < kLanes; ++l) a[l] = mul_add(w[h * kLanes + l], xi[h * kLanes + l], a[l]);
  }
}

// ---- bf16 ----------------------------------------------------------------

// Decodes 32 bf16 weights into the packed order (16 even, then 16 odd).
GON_GENERIC_INLINE void decode_bf16(const uint16_t* GON_RESTRICT src, float* GON_RESTRICT w) {
  // As 16 words of 32 bits, elements 2l and 2l+1 are the low and high halves
  // on a little-endian machine.
  constexpr bool kLittle = std::endian::native == std::endian::little;
  for (int l = 0; l < 16; ++l) {
    uint32_t u;
    std::memcpy(&u, src + 2 * l, sizeof(u));
    w[l] = std::bit_cast<float>(kLittle ? u << 16 : u & 0xffff0000u);
    w[16 + l] = std::bit_cast<float>(kLittle ? u & 0xffff0000u : u << 16);
  }
}

// Outputs y[i * ldy + j], i < MT, j < NT; w: NT rows (stride ldw); x: MT packed rows.
template <int MT, int NT>
void bf16_tile(const uint16_t* w, size_t ldw, const float* x, int K, float* y, size_t ldy, const uint16_t* bias,
               bool accumulate) {
  float acc[MT][NT][kLanes] = {};
  for (int k = 0; k < K; k += 32) {
    for (int j = 0; j < NT; ++j) {
      float wd[32];
      decode_bf16(w + j * ldw + k, wd);
      block_fma<MT, NT>(acc, j, wd, x + k, K);
    }
  }
  for (int i = 0; i < MT; ++i) finish_row<NT>(acc[i], y + i * ldy, bias, accumulate);
}

// ---- MXFP4 ---------------------------------------------------------------

// 2^(s - 128) as fp32 (subnormal for s = 0 and 1).
GON_GENERIC_INLINE float half_scale(uint32_t s) {
  return std::bit_cast<float>(s >= 2 ? (s - 1) << 23 : uint32_t{0x200000} << s);
}

// For each byte, its two FP4 values (low nibble first) times 2, i.e. +-0, 1, 2,
// 3, 4, 6, 8, 12: small integers, exact in fp32. 2 KiB.
struct Fp4PairTable {
  float v[256][2];
};
constexpr Fp4PairTable make_fp4_pairs() {
  constexpr float kTwiceFp4[16] = {0.f,  1.f,  2.f,  3.f,  4.f,  6.f,  8.f,  12.f,
                                   -0.f, -1.f, -2.f, -3.f, -4.f, -6.f, -8.f, -12.f};
  Fp4PairTable t{};
  for (int b = 0; b < 256; ++b) {
    t.v[b][0] = kTwiceFp4[b & 15];
    t.v[b][1] = kTwiceFp4[b >> 4];
  }
  return t;
}
constexpr Fp4PairTable kFp4Pairs = make_fp4_pairs();

// Decodes one MXFP4 block (16 bytes; low nibble = even element) into the packed
// order: value = (2 * FP4) * 2^(s - 128). That one multiply rounds once, so the
// result is exact also where it is subnormal or overflows to infinity. (The
// byte -> pair table plus a vectorized multiply measured 1.1-2.4x faster than
// decoding the nibbles arithmetically, with gcc and clang.)
GON_GENERIC_INLINE void decode_fp4(const uint8_t* GON_RESTRICT block, uint32_t scale, float* GON_RESTRICT w) {
  const float h = half_scale(scale);
  float pairs[32];
  for (int l = 0; l < 16; ++l) {
    pairs[2 * l] = kFp4Pairs.v[block[l]][0];
    pairs[2 * l + 1] = kFp4Pairs.v[block[l]][1];
  }
  for (int l = 0; l < 16; ++l) {
    w[l] = pairs[2 * l] * h;
    w[16 + l] = pairs[2 * l + 1] * h;
  }
}

// Outputs y[i * ldy + j], i < MT, j < NT; blocks/scales: NT rows of K/32 blocks.
template <int MT, int NT>
void fp4_tile(const uint8_t* blocks, const uint8_t* scales, const float* x, int K, float* y, size_t ldy,
              const uint16_t* bias, bool accumulate) {
  const size_t nb = static_cast<size_t>(K / 32);
  float acc[MT][NT][kLanes] = {};
  for (size_t b = 0; b < nb; ++b) {
    for (int j = 0; j < NT; ++j) {
      float wd[32];
      decode_fp4(blocks + (j * nb + b) * 16, scales[j * nb + b], wd);
      block_fma<MT, NT>(acc, j, wd, x + b * 32, K);
    }
  }
  for (int i = 0; i < MT; ++i) finish_row<NT>(acc[i], y + i * ldy, bias, accumulate);
}

// ---- tiling --------------------------------------------------------------

constexpr int kMT = 2;   // activation rows per tile
constexpr int kNT = 4;   // weight rows per tile
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
      for (int l = 0; l < 16; ++l) {
        dst[k + l] = src[k + 2 * l];
        dst[k + 16 + l] = src[k + 2 * l + 1];
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
