// The bf16 weight products of the CPU backend: linear (q/k/v, attention
// output), router (with its top-k and softmax) and unembed.
//
// Each packs the activations once, then splits the output rows across the
// pool; the per-element sum order does not depend on the split (matmul.hpp).
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"

namespace gon::cpu {

namespace {
void pack_rows(const MatmulKernels& mm, ThreadPool& pool, const float* x, size_t ldx, int M, int K, void* packed) {
  int64_t grain = std::max<int64_t>(1, 32768 / std::max(K, 1));
  pool.parallel_for(M, grain, [&](int64_t m0, int64_t m1) {
    mm.pack(x, ldx, nullptr, M, K, static_cast<int>(m0), static_cast<int>(m1), packed);
  });
}
}  // namespace

void CpuExecutor::linear(const float* x, int count, const BF16Matrix* mats, int num_mats, float* y, size_t ldy,
                         bool accumulate) {
  if (count <= 0) return;
  const int K = mats[0].cols, M = count;
  void* packed = workspace();
  pack_rows(mm_, pool_, x, K, M, K, packed);
  int64_t total = 0;
  for (int i = 0; i < num_mats; ++i) total += mats[i].rows;
  pool_.parallel_chunks(total, bf16_unit_rows(K), [&](int64_t r0, int64_t r1) {
    int64_t offset = 0;
    for (int i = 0; i < num_mats; ++i) {
      const BF16Matrix& w = mats[i];
      int64_t n0 = std::max<int64_t>(r0 - offset, 0), n1 = std::min<int64_t>(r1 - offset, w.rows);
      if (n0 < n1)
        mm_.bf16(w.data, w.cols, w.bias, packed, M, K, y + offset, ldy, static_cast<int>(n0),
                    static_cast<int>(n1), accumulate);
      offset += w.rows;
    }
  });
}

void CpuExecutor::unembed(const float* x, int num_rows, float* logits) {
  if (num_rows <= 0) return;
  const BF16Matrix& u = weights_.unembedding;
  const int width = u.cols;
  void* packed = workspace();
  pack_rows(mm_, pool_, x, width, num_rows, width, packed);
  pool_.parallel_chunks(u.rows, bf16_unit_rows(width), [&](int64_t n0, int64_t n1) {
    mm_.bf16(u.data, u.cols, u.bias, packed, num_rows, width, logits, u.rows, static_cast<int>(n0),
                static_cast<int>(n1), false);
  });
}

void CpuExecutor::router(const float* x, int count, const BF16Matrix& r, int k, int32_t* ids, float* weights) {
  if (count <= 0) return;
  const int M = count, E = r.rows, K = r.cols;
  WorkspaceCarver carve(workspace());
  float* logits = carve.take<float>(static_cast<size_t>(M) * E);
  void* packed = carve.take_bytes(mm_.packed_bytes(M, K));
  pack_rows(mm_, pool_, x, K, M, K, packed);
  pool_.parallel_for(E, 8, [&](int64_t n0, int64_t n1) {
    mm_.bf16(r.data, r.cols, r.bias, packed, M, K, logits, E, static_cast<int>(n0), static_cast<int>(n1), false);
  });
  // Top-k by value (ties: lower expert id first), then softmax over the k.
  for (int t = 0; t < M; ++t) {
    const float* row = logits + static_cast<size_t>(t) * E;
    int32_t* id = ids + static_cast<size_t>(t) * k;
    float* wt = weights + static_cast<size_t>(t) * k;
    for (int j = 0; j < k; ++j) {
      int best = -1;
      for (int e = 0; e < E; ++e) {
        bool taken = false;
        for (int i = 0; i < j; ++i) taken |= id[i] == e;
        if (taken) continue;
        if (best < 0 || row[e] > row[best]) best = e;
      }
      id[j] = best;
      wt[j] = row[best];
    }
    float mx = wt[0], sum = 0.f;
    for (int j = 0; j < k; ++j) {
      wt[j] = std::exp(wt[j] - mx);
      sum += wt[j];
    }
    for (int j = 0; j < k; ++j) wt[j] /= sum;
  }
}

}  // namespace gon::cpu
