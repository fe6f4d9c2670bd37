// Attention with sinks over the KV cache, for the CPU backend.
//
// One work unit is (token, kv head): its group of query heads reads the same
// cached keys and values. Scores for one query head go into a per-thread row
// of the workspace; the softmax includes the head's sink logit and then drops
// it, so a row's weights sum to less than one.
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.hpp"
#include "core/bf16.hpp"

namespace gon::cpu {

namespace {
inline float dot(const float* a, const float* b, int n) {
  constexpr int kLanes = 16;
  float acc[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[i + l] * b[i + l];
  float s = 0.f;
  for (; i < n; ++i) s += a[i] * b[i];
  for (int l = 0; l < kLanes; ++l) s += acc[l];
  return s;
}
}  // namespace

void CpuBackend::attention(const float* qkv, const uint16_t* sinks, const ModelConfig& c, const Batch& b,
                           const KVCacheLayer& cache, int window, float* out, void* workspace) {
  const int hd = c.head_dim, nq = c.num_heads, nkv = c.num_kv_heads, group = nq / nkv;
  const int width = c.qkv_rows();
  const size_t kv_width = static_cast<size_t>(nkv) * hd;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const size_t per_thread = attention_workspace_bytes(cache.capacity, 1);
  auto body = [&](int thread, int threads) {
    float* scores = reinterpret_cast<float*>(static_cast<char*>(workspace) + per_thread * thread);
    const int64_t units = static_cast<int64_t>(b.count) * nkv;
    const int64_t u0 = units * thread / threads, u1 = units * (thread + 1) / threads;
    for (int64_t u = u0; u < u1; ++u) {
      const int t = static_cast<int>(u / nkv), kvh = static_cast<int>(u % nkv);
      const int pos = b.first_position + t;
      const int lo = window > 0 ? std::max(0, pos - window + 1) : 0;
      const int n = pos - lo + 1;
      for (int g = 0; g < group; ++g) {
        const int h = kvh * group + g;
        const float* q = qkv + static_cast<size_t>(t) * width + static_cast<size_t>(h) * hd;
        const float sink = bf16_to_f32(sinks[h]);
        float mx = sink;
        for (int j = 0; j < n; ++j) {
          const int slot = (lo + j) % cache.capacity;
          float s = dot(q, cache.k + slot * kv_width + static_cast<size_t>(kvh) * hd, hd) * scale;
          scores[j] = s;
          mx = std::max(mx, s);
        }
        float sum = std::exp(sink - mx);
        for (int j = 0; j < n; ++j) {
          scores[j] = std::exp(scores[j] - mx);
          sum += scores[j];
        }
        const float inv = 1.0f / sum;
        float* o = out + static_cast<size_t>(t) * nq * hd + static_cast<size_t>(h) * hd;
        std::fill(o, o + hd, 0.f);
        for (int j = 0; j < n; ++j) {
          const int slot = (lo + j) % cache.capacity;
          const float* v = cache.v + slot * kv_width + static_cast<size_t>(kvh) * hd;
          const float p = scores[j];
          for (int i = 0; i < hd; ++i) o[i] += p * v[i];
        }
        for (int i = 0; i < hd; ++i) o[i] *= inv;
      }
    }
  };
  pool_.run(body);
}

}  // namespace gon::cpu
