// The op harness's timing mode (`test_ops --time`): each fine operation and
// block on every backend at gpt-oss-20b shapes (hidden 2880, 64/8 heads of 64,
// 32 experts top-4, intermediate 2880, vocabulary 201088) for 1 and 16 tokens,
// with synthetic weights (about 1.7 GB: one layer's weights shared by a sliding
// and a full layer, the unembedding doubling as the embedding). Prints the
// median time of repeated calls with the bytes of weights (or keys and values)
// read per second and the arithmetic rate.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <new>
#include <set>

#include "backend/composed.hpp"
#include "op_harness.hpp"
#include "op_reference.hpp"

namespace gon_test::ops {

using gon::ComposedExecutor;
using gon::ExecutorOptions;
using gon::KVCacheLayer;
using gon::KVDType;
using gon::StepInputs;
using gon::StepShape;

namespace timing {

inline uint64_t g_state = 0x1234567;
inline uint64_t next_u64() {
  g_state += 0x9e3779b97f4a7c15ull;
  uint64_t z = g_state;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
// Random bf16 values of magnitude 2^-7..2^-5 (std about 0.02), both signs.
inline void fill_bf16(uint16_t* p, size_t n) {
  for (size_t i = 0; i < n; i += 4) {
    uint64_t r = next_u64();
    for (size_t j = i; j < std::min(n, i + 4); ++j, r >>= 16) {
      const uint16_t sign = r & 0x8000, mant = r & 0x7f, exp = 120 + ((r >> 7) & 1) + ((r >> 8) & 1);
      p[j] = static_cast<uint16_t>(sign | (exp << 7) | mant);
    }
  }
}
inline void fill_bytes(uint8_t* p, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t r = next_u64();
    std::memcpy(p + i, &r, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<uint8_t>(next_u64());
}

struct Timing {
  double median_us, min_us;
};

struct Timed {
  std::string op, shape;
  int tokens;
  Timing t;
  double gbytes, gflop;  // per call
};

// Median and fastest of repeated calls (at least 5, for at least 0.4 s, at most
// 200). On a machine shared with other work the fastest is the steadier figure.
template <typename F>
inline Timing time_calls(Executor& ex, F&& f) {
  f();  // warm-up
  ex.synchronize();
  std::vector<double> t;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) {
    const auto a = std::chrono::steady_clock::now();
    f();
    ex.synchronize();
    const auto z = std::chrono::steady_clock::now();
    t.push_back(std::chrono::duration<double, std::micro>(z - a).count());
    const double total = std::chrono::duration<double>(z - start).count();
    if (t.size() >= 5 && total > 0.4) break;
  }
  std::sort(t.begin(), t.end());
  return {t[t.size() / 2], t[0]};
}

inline int run_timing(int threads) {
  // gpt-oss-20b shapes: one sliding and one full layer sharing their weights.
  ModelConfig c;
  c.num_layers = 2;
  c.num_experts = 32;
  c.experts_per_token = 4;
  c.vocab_size = 201088;
  c.hidden_size = 2880;
  c.intermediate_size = 2880;
  c.head_dim = 64;
  c.num_heads = 64;
  c.num_kv_heads = 8;
  c.sliding_window = 128;
  c.layer_is_sliding = {1, 0};
  const size_t H = c.hidden_size, I = c.intermediate_size, E = c.num_experts, hd = c.head_dim;
  const size_t Q = size_t(c.num_heads) * hd, KV = size_t(c.num_kv_heads) * hd;
  std::printf("synthetic gpt-oss-20b weights (one layer's, shared by a sliding and a full layer)...\n");
  std::vector<uint16_t> q(Q * H), k(KV * H), v(KV * H), out(H * Q), qb(Q), kb(KV), vb(KV), ob(H), sinks(c.num_heads),
      norm(H), router(E * H), rb(E), b1(E * 2 * I), b2(E * H);
  std::vector<uint8_t> blocks1(E * 2 * I * H / 32 * 16), scales1(E * 2 * I * H / 32), blocks2(E * H * I / 32 * 16),
      scales2(E * H * I / 32);
  for (auto* vec : {&q, &k, &v, &out, &qb, &kb, &vb, &ob, &router, &rb, &b1, &b2}) fill_bf16(vec->data(), vec->size());
  for (auto& x : norm) x = gon::f32_to_bf16(1.0f);
  for (auto& x : sinks) x = gon::f32_to_bf16(0.5f);
  fill_bytes(blocks1.data(), blocks1.size());
  fill_bytes(blocks2.data(), blocks2.size());
  for (auto& s : scales1) s = static_cast<uint8_t>(118 + next_u64() % 4);
  for (auto& s : scales2) s = static_cast<uint8_t>(118 + next_u64() % 4);
  // The unembedding (1.16 GB), also used as the embedding (same shape).
  std::vector<uint16_t> unemb;
  bool have_vocab = true;
  try {
    unemb.resize(size_t(c.vocab_size) * H);
    fill_bf16(unemb.data(), unemb.size());
  } catch (const std::bad_alloc&) {
    std::printf("cannot allocate the 201088-token unembedding: unembed, sample and output_block not timed\n");
    have_vocab = false;
    c.vocab_size = 1024;
    unemb.assign(size_t(c.vocab_size) * H, 0);
    fill_bf16(unemb.data(), unemb.size());
  }
  const int Vt = c.vocab_size;
  std::vector<double> invd;
  double conc = 1;
  yarn(c, invd, conc);
  std::vector<float> inv(invd.begin(), invd.end());
  ModelWeights w;
  w.embedding = unemb.data();
  w.final_norm = norm.data();
  w.unembedding = {unemb.data(), nullptr, Vt, int(H)};
  w.rope_inv_freq = inv.data();
  w.rope_scaling = static_cast<float>(conc);
  for (int l = 0; l < 2; ++l) {
    LayerWeights L;
    L.attn_norm = norm.data();
    L.q = {q.data(), qb.data(), int(Q), int(H)};
    L.k = {k.data(), kb.data(), int(KV), int(H)};
    L.v = {v.data(), vb.data(), int(KV), int(H)};
    L.out = {out.data(), ob.data(), int(H), int(Q)};
    L.sinks = sinks.data();
    L.mlp_norm = norm.data();
    L.router = {router.data(), rb.data(), int(E), int(H)};
    L.mlp1 = {blocks1.data(), scales1.data(), b1.data(), int(E), int(2 * I), int(H)};
    L.mlp2 = {blocks2.data(), scales2.data(), b2.data(), int(E), int(H), int(I)};
    L.sliding = l == 0;
    w.layers.push_back(L);
  }

  std::vector<BackendUnderTest> list = usable_backends(threads);
  const int context = 4096;
  for (auto& b : list) {
    Backend& be = *b.backend;
    std::printf("\n%s: %s\n", b.name.c_str(), be.description().c_str());
    std::unique_ptr<ModelWeights> pw;
    try {
      pw = be.prepare_weights(w, c, {});
    } catch (const gon::Error& e) {
      std::printf("  cannot prepare the weights: %s\n", e.what());
      continue;
    }
    ExecutorOptions o;
    o.max_tokens = o.max_outputs = o.logits_rows = 16;
    o.context_length = context;
    const int block = be.kv_block_positions();
    o.ring_capacity = (c.sliding_window + 15 + block - 1) / block * block;
    o.kv_dtype = be.default_kv_dtype();
    std::unique_ptr<Executor> ex = be.create_executor(*pw, c, o);
    auto* ce = dynamic_cast<ComposedExecutor*>(ex.get());
    const double kv_elem = o.kv_dtype == KVDType::kBF16 ? 2 : 4;
    // Fill the caches with small finite values (any layout): keys of every position.
    if (ce)
      for (int l = 0; l < 2; ++l) {
        const KVCacheLayer& L = ce->kv_layer(l);
        const size_t n = size_t(L.seq_stride);
        if (L.dtype == KVDType::kBF16) {
          std::vector<uint16_t> r(n);
          fill_bf16(r.data(), n);
          be.copy_to_device(L.k, r.data(), n * 2);
          be.copy_to_device(L.v, r.data(), n * 2);
        } else {
          std::vector<float> r(n);
          for (auto& x : r) x = float(int(next_u64() % 2001) - 1000) * 1e-3f;
          be.copy_to_device(L.k, r.data(), n * 4);
          be.copy_to_device(L.v, r.data(), n * 4);
        }
      }
    std::vector<Timed> rows;
    for (int T : {1, 16}) {
      std::mt19937_64 rng(T);
      // Step inputs: the last T positions of the context.
      StepInputs& in = ex->inputs();
      std::vector<int32_t> tokens = random_tokens(rng, T, Vt), pos(T), seqs(T, 0), orows(T);
      for (int t = 0; t < T; ++t) {
        pos[t] = context - T + t;
        orows[t] = t;
        in.tokens[t] = tokens[t];
        in.positions[t] = pos[t];
        in.seqs[t] = 0;
        in.output_rows[t] = t;
        in.params[t] = SampleParams{0.7f, 0.9f, rng(), uint64_t(t), 0, 0};
      }
      auto x = randn(rng, size_t(T) * H, 1.0f);
      const double wq = double(Q + 2 * KV) * H * 2, wo = double(H) * Q * 2, wr = double(E) * H * 2,
                   wu = double(Vt) * H * 2;
      const double expert_bytes = double(2 * I) * H / 32 * 17 + 2 * I * 2 + double(H) * I / 32 * 17 + H * 2;
      auto add = [&](const std::string& op, const std::string& shape, Timing tm, double bytes, double flop) {
        rows.push_back({op, shape, T, tm, bytes / 1e9, flop / 1e9});
      };
      if (ce) {
        auto dtok = to_device(be, tokens);
        auto dpos = to_device(be, pos);
        auto dseq = to_device(be, seqs);
        auto dx = to_device(be, x);
        auto dxn = to_device(be, std::vector<float>(size_t(T) * H, 0.f));
        auto dqkv = to_device(be, randn(rng, size_t(T) * c.qkv_rows(), 1.0f));
        auto datt = to_device(be, randn(rng, size_t(T) * Q, 1.0f));
        auto dy = to_device(be, std::vector<float>(size_t(T) * H, 0.f));
        auto dids = to_device(be, std::vector<int32_t>(size_t(T) * 4, 0));
        auto dwts = to_device(be, std::vector<float>(size_t(T) * 4, 0.25f));
        auto dparams = to_device(be, std::vector<SampleParams>(in.params, in.params + T));
        const LayerWeights& L = pw->layers[0];
        add("embed", "", time_calls(*ex, [&] { ce->embed(dtok->as<int32_t>(), T, dx->as<float>()); }), T * H * 2.0, 0);
        add("rmsnorm", "", time_calls(*ex, [&] {
              ce->rmsnorm(dx->as<float>(), nullptr, T, int(H), L.attn_norm, c.rms_norm_eps, dxn->as<float>());
            }), T * H * 8.0 + H * 2, 0);
        const BF16Matrix qkvm[3] = {L.q, L.k, L.v};
        add("linear", "qkv 5120x2880", time_calls(*ex, [&] {
              ce->linear(dxn->as<float>(), T, qkvm, 3, dqkv->as<float>(), c.qkv_rows(), false);
            }), wq, 2.0 * T * (Q + 2 * KV) * H);
        add("linear", "out 2880x4096", time_calls(*ex, [&] {
              ce->linear(datt->as<float>(), T, &L.out, 1, dy->as<float>(), H, true);
            }), wo, 2.0 * T * H * Q);
        add("rope_kv_store", "", time_calls(*ex, [&] {
              ce->rope_kv_store(dqkv->as<float>(), dpos->as<int32_t>(), dseq->as<int32_t>(), T, ce->kv_layer(1));
            }), T * c.qkv_rows() * 4.0, 0);
        for (int l : {0, 1}) {
          const int window = l == 0 ? c.sliding_window : 0;
          const double keys = l == 0 ? c.sliding_window + T - 1 : context;
          add("attention", l == 0 ? "window 128" : "context 4096", time_calls(*ex, [&] {
                ce->attention(dqkv->as<float>(), dpos->as<int32_t>(), dseq->as<int32_t>(), T, pw->layers[l].sinks,
                              ce->kv_layer(l), window, datt->as<float>());
              }), keys * 2 * KV * kv_elem, 4.0 * T * Q * (l == 0 ? c.sliding_window : context));
        }
        add("router", "", time_calls(*ex, [&] {
              ce->router(dxn->as<float>(), T, L.router, 4, dids->as<int32_t>(), dwts->as<float>());
            }), wr, 2.0 * T * E * H);
        const auto ids = dids->download<int32_t>(size_t(T) * 4);
        const double used = std::set<int32_t>(ids.begin(), ids.end()).size();
        add("moe", fmt("%g experts", used), time_calls(*ex, [&] {
              ce->moe(dxn->as<float>(), T, dids->as<int32_t>(), dwts->as<float>(), 4, L, dy->as<float>());
            }), used * expert_bytes, 2.0 * T * 4 * (2 * I * H + H * I));
        if (have_vocab) {
          const float* logits = ex->logits().data;
          add("unembed", "201088x2880", time_calls(*ex, [&] {
                ce->unembed(dxn->as<float>(), T, const_cast<float*>(logits));
              }), wu, 2.0 * T * Vt * H);
          add("sample", "T 0.7, top_p 0.9", time_calls(*ex, [&] {
                ce->sample(logits, T, dparams->as<SampleParams>(), nullptr, dids->as<int32_t>(), dwts->as<float>());
              }), T * Vt * 4.0, 0);
        }
      }
      // Blocks through execute().
      auto time_block = [&](const std::string& op, const std::string& shape, double bytes, double flop, auto&& fwd,
                            StepShape sh) {
        set_residual(be, *ex, x);
        add(op, shape, time_calls(*ex, [&] { ex->execute(sh, fwd); }), bytes, flop);
      };
      StepShape sh;
      sh.num_tokens = T;
      for (int l : {0, 1})
        time_block("attention_block", l == 0 ? "window 128" : "context 4096",
                   wq + wo + (l == 0 ? c.sliding_window : context) * 2 * KV * kv_elem,
                   2.0 * T * ((Q + 2 * KV) * H + H * Q) + 4.0 * T * Q * (l == 0 ? c.sliding_window : context),
                   [l](Executor& e, const StepShape& s) { e.attention_block(l, s); }, sh);
      time_block("moe_block", "", wr + std::min<double>(E, 4.0 * T) * expert_bytes, 2.0 * T * 4 * (3 * I * H),
                 [](Executor& e, const StepShape& s) { e.moe_block(0, s); }, sh);
      if (have_vocab) {
        StepShape so = sh;
        so.num_outputs = T;
        so.sample = true;
        time_block("output_block", "with sampling", wu, 2.0 * T * Vt * H,
                   [](Executor& e, const StepShape& s) { e.output_block(s); }, so);
      }
    }
    // Rates from the median time (and from the fastest call).
    std::printf("  %-16s %-18s %3s %11s %10s %9s %7s %10s\n", "op", "shape", "T", "median us", "min us", "GB/s",
                "(best)", "GFLOP/s");
    for (const Timed& r : rows)
      std::printf("  %-16s %-18s %3d %11.1f %10.1f %9.2f %7.2f %10.2f\n", r.op.c_str(), r.shape.c_str(), r.tokens,
                  r.t.median_us, r.t.min_us, r.gbytes / (r.t.median_us * 1e-6), r.gbytes / (r.t.min_us * 1e-6),
                  r.gflop / (r.t.median_us * 1e-6));
  }
  return 0;
}

}  // namespace timing

using timing::run_timing;

}  // namespace gon_test::ops
