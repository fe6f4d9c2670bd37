// The MXFP4 decode tables shared by the x86 kernels (matmul_avx512.cpp,
// matmul_amx.cpp): both decode a 16-byte block with one vpsrlvw and one vpermw
// into 32 bf16 words in the kPerm element order, so both pack activations in
// that order. Plain constexpr data: no instruction-set flags are needed to
// include it.
#pragma once

#include <cstdint>

namespace gon::cpu::x86 {

// Element order inside a packed 32-element block. Word w (0..31) of a 16-byte
// MXFP4 block broadcast to all four 128-bit lanes holds bytes 2(w%8), 2(w%8)+1,
// i.e. the nibbles of elements 4(w%8) .. 4(w%8)+3; shifted right by 4*(w/8) its
// low nibble is element kPerm[w] = 4*(w%8) + w/8. The packed activations store a
// block as x[kPerm[0]], x[kPerm[2]], ..., x[kPerm[30]] (even words) followed by
// x[kPerm[1]], ..., x[kPerm[31]] (odd words), the order in which the words of a
// decoded block split into fp32 dwords (see the file comment).
constexpr int perm(int w) { return 4 * (w % 8) + w / 8; }
alignas(64) inline constexpr uint16_t kPerm[32] = {perm(0),  perm(1),  perm(2),  perm(3),  perm(4),  perm(5),  perm(6),
                                           perm(7),  perm(8),  perm(9),  perm(10), perm(11), perm(12), perm(13),
                                           perm(14), perm(15), perm(16), perm(17), perm(18), perm(19), perm(20),
                                           perm(21), perm(22), perm(23), perm(24), perm(25), perm(26), perm(27),
                                           perm(28), perm(29), perm(30), perm(31)};
// Right shift of word w that brings element kPerm[w]'s nibble to the bottom.
alignas(64) inline constexpr uint16_t kNibbleShift[32] = {0, 0, 0, 0, 0, 0, 0, 0, 4,  4,  4,  4,  4,  4,  4,  4,
                                                  8, 8, 8, 8, 8, 8, 8, 8, 12, 12, 12, 12, 12, 12, 12, 12};

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
alignas(64) inline constexpr ScaledFp4Tables kScaledFp4 = make_scaled_fp4_tables();

}  // namespace gon::cpu::x86
