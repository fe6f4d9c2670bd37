// Attention kernels of the CPU backend: the KV cache layout and the per-row
// kernel contract shared by the portable, the AVX2 and the AVX-512 implementation.
//
// Cache layout (one layer and sequence slot; `capacity` positions, position p
// in slot p % capacity, `slots` = capacity rounded up to a multiple of
// kKvBlock), kv head major so that one head's keys and values are two
// sequential streams; elements are fp32 or bf16 (the context's KV dtype):
//  * V: [num_kv_heads][slots][head_dim].
//  * K: [num_kv_heads][slots / kKvBlock][head_dim][kKvBlock]: blocks of
//    kKvBlock positions, transposed, so the keys of a block are read as one
//    vector per dimension.
// Sequence slots follow each other (KVCacheLayer::seq_stride elements apart).
//  A ring's capacity is a multiple of kKvBlock (or never wraps), so the aligned
//  positions [16b, 16b + 16) always share one slot block.
//
// The kernel (attend_rows) computes, for up to kAttnRows query rows of one kv
// head, softmax([sink, q.k_j * scale for j in lo..hi]) minus the sink, times
// V, walking the keys in blocks of kKvBlock positions aligned to absolute
// positions, with an online (running max) softmax. A row's result depends only
// on its own query, sink and key range, never on the other rows it is computed
// with or on how the tokens were batched: prefill, decode, any chunking and
// rewinds give bit-identical outputs (the runtime's tests rely on this).
#pragma once

#include <cstddef>
#include <cstdint>

#include "backend/cpu/matmul_impl.hpp"  // GON_HAVE_AVX512_KERNELS

namespace gon::cpu {

constexpr int kKvBlock = 16;   // positions per K block (one 16-lane fp32 vector)
constexpr int kAttnRows = 32;  // query rows per kernel call (scores: 8 rows at a time)

inline size_t kv_slots(int capacity) { return (static_cast<size_t>(capacity) + kKvBlock - 1) / kKvBlock * kKvBlock; }
// First float of the transposed K block holding `slot`, for kv head h.
inline size_t kt_block_offset(int slot, int h, int capacity, int hd) {
  return (static_cast<size_t>(h) * kv_slots(capacity) + static_cast<size_t>(slot / kKvBlock) * kKvBlock) * hd;
}
// First float of the value row of `slot`, for kv head h.
inline size_t v_row_offset(int slot, int h, int capacity, int hd) {
  return (static_cast<size_t>(h) * kv_slots(capacity) + static_cast<size_t>(slot)) * hd;
}

// One kv head's cache, as the kernel reads it. KV is float or uint16_t (bf16 bits).
template <typename KV>
struct AttnCache {
  const KV* k;  // the sequence slot's whole layer (layout above)
  const KV* v;
  int capacity;
  int nkv, hd, head;  // kv heads, head dim, this kernel call's kv head
  float scale;        // 1 / sqrt(head_dim)
};

// Up to kAttnRows query rows of one kv head.
struct AttnRows {
  int count = 0;
  const float* q[kAttnRows];  // head_dim floats each (already rotated)
  float* out[kAttnRows];      // head_dim floats each
  float sink[kAttnRows];      // sink logit of the row's query head
  int lo[kAttnRows];          // keys at positions lo..hi (inclusive) are visible
  int hi[kAttnRows];
};

// The vectorised kernels' e^x (exp512 in attention_avx512.cpp, exp256 in
// attention_avx2.cpp) take the same steps with these constants, so their
// results agree lane for lane: lanes below kExpMin give 0, inputs are clamped
// to kExpMax, x = n ln2 + r (ln2 as kLn2Hi + kLn2Lo), a degree-7 polynomial
// in r (Cephes' expf coefficients kExpPoly, highest first), then 2^n.
constexpr float kExpMin = -104.0f, kExpMax = 88.7f, kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpPoly[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                               4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};

// Scratch floats one kernel call needs (per thread).
inline size_t attend_scratch_floats(int hd) { return static_cast<size_t>(kAttnRows) * ((hd + 15) / 16 * 16) + 64; }

namespace generic {
template <typename KV>
void attend_rows(const AttnCache<KV>& c, const AttnRows& r, float* scratch);
}
#if GON_HAVE_AVX512_KERNELS
namespace avx512 {
template <typename KV>
void attend_rows(const AttnCache<KV>& c, const AttnRows& r, float* scratch);
// y[i] = the kernel's e^x[i] (exp512), for tests; n a multiple of 16.
void exp_lanes(const float* x, float* y, size_t n);
}
namespace avx2 {
template <typename KV>
void attend_rows(const AttnCache<KV>& c, const AttnRows& r, float* scratch);
// y[i] = the kernel's e^x[i] (exp256), for tests; n a multiple of 8.
void exp_lanes(const float* x, float* y, size_t n);
}
#endif

}  // namespace gon::cpu
