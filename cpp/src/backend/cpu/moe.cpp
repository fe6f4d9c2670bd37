// The mixture of experts for the CPU backend: only the selected experts run.
//
// The batch's (token, slot) pairs are grouped by expert (a counting sort), so
// each expert's MXFP4 weights are decoded once for all the tokens that chose
// it. Phases, each split across the pool:
//   1. pack the tokens' activations per expert group
//   2. mlp1: [2I, H] x tokens   -> y1 (gate/up interleaved)
//   3. swiglu(y1)                -> packed activations of width I
//   4. mlp2: [H, I] x tokens     -> y2
//   5. y[t] += sum_j weight[t, j] * y2[(t, j)], in slot order
// A token's result is the same whichever other tokens share its batch.
#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"
#include "core/check.hpp"

namespace gon::cpu {

namespace {
// Packed storage for `rows` activation rows split into at most `groups`
// groups: generous enough for any per-group padding of the packed format.
size_t grouped_packed_bytes(const MatmulKernels& mm, int rows, int groups, int K) {
  return mm.packed_bytes(rows, K) + static_cast<size_t>(groups) * (mm.packed_bytes(1, K) + 64);
}

struct MoeScratch {
  int* offsets;      // [E + 1] start of each expert's group (in pair order)
  int* active;       // [E] experts with at least one pair
  int* pair_token;   // [T*k] token of the g-th grouped pair
  int* pair_of;      // [T*k] grouped position of pair (t, j)
  size_t* packed1_at;  // [E] byte offset of each group in packed1
  size_t* packed2_at;  // [E] byte offset of each group in packed2
  char* packed1;     // grouped packed activations, width H
  char* packed2;     // grouped packed activations, width I
  float* y1;         // [T*k, 2I]
  float* act;        // [T*k, I]
  float* y2;         // [T*k, H]
};

MoeScratch carve_scratch(const MatmulKernels& mm, void* workspace, const ModelConfig& c, int T) {
  const int E = c.num_experts, P = T * c.experts_per_token, H = c.hidden_size, I = c.intermediate_size;
  WorkspaceCarver carve(workspace);
  MoeScratch s;
  s.offsets = carve.take<int>(E + 1);
  s.active = carve.take<int>(E);
  s.pair_token = carve.take<int>(P);
  s.pair_of = carve.take<int>(P);
  s.packed1_at = carve.take<size_t>(E);
  s.packed2_at = carve.take<size_t>(E);
  s.packed1 = static_cast<char*>(carve.take_bytes(grouped_packed_bytes(mm, P, E, H)));
  s.packed2 = static_cast<char*>(carve.take_bytes(grouped_packed_bytes(mm, P, E, I)));
  s.y1 = carve.take<float>(static_cast<size_t>(P) * 2 * I);
  s.act = carve.take<float>(static_cast<size_t>(P) * I);
  s.y2 = carve.take<float>(static_cast<size_t>(P) * H);
  return s;
}

inline float swiglu(float gate, float up, float limit, float alpha) {
  gate = std::min(gate, limit);
  up = std::min(std::max(up, -limit), limit);
  return (up + 1.0f) * (gate / (1.0f + std::exp(-alpha * gate)));
}
}  // namespace

size_t moe_workspace_bytes(const MatmulKernels& mm, const ModelConfig& c, int max_tokens) {
  const int E = c.num_experts, P = max_tokens * c.experts_per_token, H = c.hidden_size, I = c.intermediate_size;
  size_t bytes = 0;
  auto add = [&](size_t b) { bytes += (b + 63) & ~size_t{63}; };
  add((E + 1) * sizeof(int));
  add(E * sizeof(int));
  add(P * sizeof(int));
  add(P * sizeof(int));
  add(E * sizeof(size_t));
  add(E * sizeof(size_t));
  add(grouped_packed_bytes(mm, P, E, H));
  add(grouped_packed_bytes(mm, P, E, I));
  add(static_cast<size_t>(P) * 2 * I * sizeof(float));
  add(static_cast<size_t>(P) * I * sizeof(float));
  add(static_cast<size_t>(P) * H * sizeof(float));
  return bytes;
}

void CpuExecutor::moe(const float* x, int count, const int32_t* ids, const float* weights, int k,
                      const LayerWeights& layer, float* y) {
  if (count <= 0) return;
  const ModelConfig& c = config_;
  const int T = count, E = c.num_experts, H = c.hidden_size, I = c.intermediate_size, P = T * k;
  MoeScratch s = carve_scratch(mm_, workspace(), c, T);
  const MatmulKernels& mm = mm_;

  // Group the (token, slot) pairs by expert, tokens in order within a group.
  std::fill(s.offsets, s.offsets + E + 1, 0);
  for (int p = 0; p < P; ++p) ++s.offsets[ids[p] + 1];
  for (int e = 0; e < E; ++e) s.offsets[e + 1] += s.offsets[e];
  // Stable placement: walk pairs in order and append each to its expert's
  // group; packed1_at serves as the groups' fill cursors until it is filled.
  for (int e = 0; e < E; ++e) s.packed1_at[e] = static_cast<size_t>(s.offsets[e]);
  for (int p = 0; p < P; ++p) {
    const int e = ids[p];
    const int g = static_cast<int>(s.packed1_at[e]++);
    s.pair_token[g] = p / k;
    s.pair_of[p] = g;
  }
  size_t at1 = 0, at2 = 0;
  for (int e = 0; e < E; ++e) {
    const int m = s.offsets[e + 1] - s.offsets[e];
    s.packed1_at[e] = at1;
    s.packed2_at[e] = at2;
    if (m > 0) {
      at1 += (mm.packed_bytes(m, H) + 63) & ~size_t{63};
      at2 += (mm.packed_bytes(m, I) + 63) & ~size_t{63};
    }
  }
  GON_CHECK(at1 <= grouped_packed_bytes(mm, P, E, H) && at2 <= grouped_packed_bytes(mm, P, E, I), kInternal,
            "moe: grouped packed activations exceed their workspace");

  // Phase 1: pack each group's token rows (split over all grouped pairs).
  pool_.parallel_for(P, std::max<int64_t>(1, 16384 / H), [&](int64_t p0, int64_t p1) {
    for (int e = 0; e < E; ++e) {
      const int g0 = s.offsets[e], g1 = s.offsets[e + 1];
      const int a = std::max<int>(g0, static_cast<int>(p0)), z = std::min<int>(g1, static_cast<int>(p1));
      if (a < z)
        mm.pack(x, H, s.pair_token + g0, g1 - g0, H, a - g0, z - g0, s.packed1 + s.packed1_at[e]);
    }
  });

  // Phases 2 and 4 split the rows of all active experts, flattened, across threads.
  auto expert_rows = [&](const MXFP4Experts& w, const char* packed, const size_t* packed_at, int K, float* out,
                         int ld) {
    const int rows = w.rows;
    int* active = s.active;
    int num_active = 0;
    for (int e = 0; e < E; ++e)
      if (s.offsets[e + 1] > s.offsets[e]) active[num_active++] = e;
    const int64_t total = static_cast<int64_t>(num_active) * rows;
    pool_.parallel_chunks(total, mxfp4_balanced_unit_rows(K, total, pool_.size()), [&](int64_t r0, int64_t r1) {
      for (int i = 0; i < num_active; ++i) {
        const int64_t base = static_cast<int64_t>(i) * rows;
        const int64_t n0 = std::max<int64_t>(r0 - base, 0), n1 = std::min<int64_t>(r1 - base, rows);
        if (n0 >= n1) continue;
        const int e = active[i];
        const int g0 = s.offsets[e], m = s.offsets[e + 1] - g0;
        const size_t row_blocks = static_cast<size_t>(K / 32);
        mm.mxfp4(w.blocks + static_cast<size_t>(e) * rows * row_blocks * 16,
                     w.scales + static_cast<size_t>(e) * rows * row_blocks,
                     w.bias + static_cast<size_t>(e) * rows, packed + packed_at[e], m, K,
                     out + static_cast<size_t>(g0) * ld, ld, static_cast<int>(n0), static_cast<int>(n1), false);
      }
    });
  };

  // Phase 2: mlp1.
  expert_rows(layer.mlp1, s.packed1, s.packed1_at, H, s.y1, 2 * I);

  // Phase 3: swiglu, then pack per group.
  const float limit = c.swiglu_limit, alpha = c.swiglu_alpha;
  pool_.parallel_for(P, 1, [&](int64_t p0, int64_t p1) {
    for (int64_t g = p0; g < p1; ++g) {
      const float* row = s.y1 + g * 2 * I;
      float* a = s.act + g * I;
      for (int i = 0; i < I; ++i) a[i] = swiglu(row[2 * i], row[2 * i + 1], limit, alpha);
    }
    for (int e = 0; e < E; ++e) {
      const int g0 = s.offsets[e], g1 = s.offsets[e + 1];
      const int a = std::max<int>(g0, static_cast<int>(p0)), z = std::min<int>(g1, static_cast<int>(p1));
      if (a < z) mm.pack(s.act + static_cast<size_t>(g0) * I, I, nullptr, g1 - g0, I, a - g0, z - g0,
                                  s.packed2 + s.packed2_at[e]);
    }
  });

  // Phase 4: mlp2.
  expert_rows(layer.mlp2, s.packed2, s.packed2_at, I, s.y2, H);

  // Phase 5: weighted sum in slot order, added to the residual stream.
  pool_.parallel_for(static_cast<int64_t>(T) * H, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / H, d = i % H;
      float acc = 0.f;
      for (int j = 0; j < k; ++j) acc += weights[t * k + j] * s.y2[static_cast<size_t>(s.pair_of[t * k + j]) * H + d];
      y[i] += acc;
    }
  });
}

}  // namespace gon::cpu
