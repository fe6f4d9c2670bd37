// Attention with sinks over the KV cache, for the CPU backend: the work split
// and the portable kernel (attention.hpp has the cache layout and the kernel
// contract; attention_avx512.cpp and attention_avx2.cpp the vectorised kernels).
//
// A work unit is one kv head and a few consecutive tokens whose query heads
// (the head's group) make up kAttnRows rows, so the cached keys and values of
// the head are read once for all of them (tokens of different sequences in one
// unit make separate kernel calls). Units are handed out dynamically, latest
// tokens first: under a causal mask they have the most keys.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/attention.hpp"
#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"
#include "core/bf16.hpp"

namespace gon::cpu {

namespace generic {

inline float kv_value(float x) { return x; }
inline float kv_value(uint16_t x) { return bf16_to_f32(x); }

// Same steps as the vectorised kernels, one lane at a time.
template <typename KV>
void attend_rows(const AttnCache<KV>& c, const AttnRows& r, float* scratch) {
  const int hd = c.hd, hdp = (hd + 15) / 16 * 16;
  float* O = scratch;  // [count][hdp]
  float m[kAttnRows], l[kAttnRows][kKvBlock];
  int lo = r.lo[0], hi = r.hi[0];
  for (int i = 0; i < r.count; ++i) {
    m[i] = r.sink[i];
    std::fill(l[i], l[i] + kKvBlock, 0.f);
    l[i][0] = 1.f;  // the sink's weight exp(sink - m)
    std::fill(O + i * hdp, O + i * hdp + hd, 0.f);
    lo = std::min(lo, r.lo[i]);
    hi = std::max(hi, r.hi[i]);
  }
  const float neg_inf = -std::numeric_limits<float>::infinity();
  for (int j0 = lo / kKvBlock * kKvBlock; j0 <= hi; j0 += kKvBlock) {
    const int slot0 = j0 % c.capacity;
    const KV* kt = c.k + kt_block_offset(slot0, c.head, c.capacity, hd);
    const KV* v0 = c.v + v_row_offset(slot0, c.head, c.capacity, hd);
    for (int i = 0; i < r.count; ++i) {
      const int a = std::max(r.lo[i], j0), b = std::min(r.hi[i], j0 + kKvBlock - 1);
      if (a > b) continue;  // no visible key here: the block would change nothing
      float s[kKvBlock] = {}, p[kKvBlock];
      for (int d = 0; d < hd; ++d) {  // a row of the transposed block at a time (vectorises)
        const float qd = r.q[i][d];
        for (int e = 0; e < kKvBlock; ++e) s[e] += qd * kv_value(kt[d * kKvBlock + e]);
      }
      float mx = neg_inf;
      for (int e = 0; e < kKvBlock; ++e) {
        s[e] = (j0 + e >= a && j0 + e <= b) ? s[e] * c.scale : neg_inf;
        mx = std::max(mx, s[e]);
      }
      const float mnew = std::max(m[i], mx);
      const float alpha = std::exp(m[i] - mnew);
      for (int e = 0; e < kKvBlock; ++e) {
        p[e] = s[e] == neg_inf ? 0.f : std::exp(s[e] - mnew);
        l[i][e] = l[i][e] * alpha + p[e];
      }
      float* o = O + i * hdp;
      for (int d = 0; d < hd; ++d) o[d] *= alpha;
      for (int j = a; j <= b; ++j) {
        const KV* v = v0 + static_cast<size_t>(j - j0) * hd;
        const float pj = p[j - j0];
        for (int d = 0; d < hd; ++d) o[d] += pj * kv_value(v[d]);
      }
      m[i] = mnew;
    }
  }
  for (int i = 0; i < r.count; ++i) {
    float sum = 0.f;
    for (int e = 0; e < kKvBlock; ++e) sum += l[i][e];
    const float inv = 1.0f / sum;
    for (int d = 0; d < hd; ++d) r.out[i][d] = O[i * hdp + d] * inv;
  }
}

template void attend_rows<float>(const AttnCache<float>&, const AttnRows&, float*);
template void attend_rows<uint16_t>(const AttnCache<uint16_t>&, const AttnRows&, float*);

}  // namespace generic

namespace {
// The split of one layer's attention into work units (see the top of this file).
template <typename KV>
void attention_units(const MatmulKernels& mm, ThreadPool& pool, const ModelConfig& c, const float* qkv, const int32_t* positions,
                     const int32_t* seqs, int count, const uint16_t* sinks, const KVCacheLayer& cache, int window,
                     float* out, void* workspace) {
  const int hd = c.head_dim, nq = c.num_heads, nkv = c.num_kv_heads, group = nq / nkv;
  const int width = c.qkv_rows();
  // Tokens per unit: as many as fill kAttnRows rows with whole groups (at least one).
  const int tokens_per_unit = std::max(1, kAttnRows / group);
  const int64_t tiles = (count + tokens_per_unit - 1) / tokens_per_unit;
  const int64_t units = tiles * nkv;
  const size_t per_thread = attend_scratch_floats(hd) * sizeof(float) + 64;
  // The kernel of the matrix products' set: avx512bf16 and avx512amx take the AVX-512 one, avx2 the AVX2 one.
  auto kernel = &generic::attend_rows<KV>;
#if GON_HAVE_AVX512_KERNELS
  if (std::strncmp(mm.name, "avx512", 6) == 0) kernel = &avx512::attend_rows<KV>;
  if (std::strcmp(mm.name, "avx2") == 0) kernel = &avx2::attend_rows<KV>;
#endif
  const KV* kbase = static_cast<const KV*>(cache.k);
  const KV* vbase = static_cast<const KV*>(cache.v);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  std::atomic<int64_t> next{0};
  auto body = [&](int thread, int) {
    float* scratch = reinterpret_cast<float*>(
        (reinterpret_cast<uintptr_t>(workspace) + per_thread * static_cast<size_t>(thread) + 63) & ~uintptr_t{63});
    for (;;) {
      const int64_t u = next.fetch_add(1, std::memory_order_relaxed);
      if (u >= units) break;
      const int64_t tile = tiles - 1 - u / nkv;  // latest tokens first
      const int head = static_cast<int>(u % nkv);
      const int t0 = static_cast<int>(tile * tokens_per_unit), t1 = std::min(count, t0 + tokens_per_unit);
      AttnCache<KV> kc{nullptr, nullptr, cache.capacity, nkv, hd, head, scale};
      int seq = -1;
      AttnRows rows;
      auto flush = [&] {
        if (rows.count > 0) kernel(kc, rows, scratch);
        rows.count = 0;
      };
      for (int t = t0; t < t1; ++t) {
        if (seqs[t] != seq) {  // another sequence's cache: its rows go to a call of their own
          flush();
          seq = seqs[t];
          kc.k = kbase + static_cast<size_t>(seq) * cache.seq_stride;
          kc.v = vbase + static_cast<size_t>(seq) * cache.seq_stride;
        }
        const int pos = positions[t];
        const int lo = window > 0 ? std::max(0, pos - window + 1) : 0;
        for (int g = 0; g < group; ++g) {
          const int h = head * group + g;
          const int i = rows.count++;
          rows.q[i] = qkv + static_cast<size_t>(t) * width + static_cast<size_t>(h) * hd;
          rows.out[i] = out + static_cast<size_t>(t) * nq * hd + static_cast<size_t>(h) * hd;
          rows.sink[i] = bf16_to_f32(sinks[h]);
          rows.lo[i] = lo;
          rows.hi[i] = pos;
          if (rows.count == kAttnRows) flush();
        }
      }
      flush();
    }
  };
  pool.run(body);
}
}  // namespace

size_t attention_workspace_bytes(const ModelConfig& c, int threads) {
  return static_cast<size_t>(threads) * (attend_scratch_floats(c.head_dim) * sizeof(float) + 64);
}

void CpuExecutor::attention(const float* qkv, const int32_t* positions, const int32_t* seqs, int count,
                            const uint16_t* sinks, const KVCacheLayer& cache, int window, float* out) {
  if (count <= 0) return;
  if (cache.dtype == KVDType::kBF16) {
    attention_units<uint16_t>(mm_, pool_, config_, qkv, positions, seqs, count, sinks, cache, window, out, workspace());
  } else {
    attention_units<float>(mm_, pool_, config_, qkv, positions, seqs, count, sinks, cache, window, out, workspace());
  }
}

}  // namespace gon::cpu
