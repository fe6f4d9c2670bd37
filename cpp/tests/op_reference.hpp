// Float64 references for the op harness (test_ops.cpp), written from the
// model's definition (gpt-oss-model.md) rather than from the runtime's code:
// random model weights at realistic scales, the fine operations and blocks of
// a gpt-oss layer, a whole forward step, and the previous implementation of
// the sampling rule with a measure of how close a draw came to a boundary.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "backend/executor.hpp"
#include "backend/weights.hpp"
#include "core/bf16.hpp"
#include "gpt_oss_native/config.hpp"

namespace gon_test::ops {

using gon::BF16Matrix;
using gon::LayerWeights;
using gon::ModelConfig;
using gon::ModelWeights;
using gon::SampleParams;

inline constexpr double kInf = std::numeric_limits<double>::infinity();

// A step's tokens: (sequence slot, position) pairs in batch order.
using Step = std::vector<std::pair<int, int>>;

// ---- random values --------------------------------------------------------------
inline std::vector<float> randn(std::mt19937_64& rng, size_t n, float sd, float mean = 0.f) {
  std::normal_distribution<float> d(mean, sd);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
inline std::vector<uint16_t> bf16_randn(std::mt19937_64& rng, size_t n, float sd, float mean = 0.f) {
  std::normal_distribution<float> d(mean, sd);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = gon::f32_to_bf16(d(rng));
  return v;
}
inline std::vector<uint8_t> bytes_uniform(std::mt19937_64& rng, size_t n, int lo, int hi) {
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<uint8_t> v(n);
  for (auto& x : v) x = static_cast<uint8_t>(d(rng));
  return v;
}

inline double bf(uint16_t h) { return gon::bf16_to_f32(h); }


// ---- model configurations and random host weights --------------------------------
struct Spec {
  const char* name;
  int hidden, intermediate, head_dim, heads, kv_heads, experts, top_k, window, vocab, layers;
};

// YaRN inverse frequencies and attention factor from gpt-oss-model.md, in double:
// low/high = (hd/2) ln(orig / (beta 2 pi)) / ln(theta) (not truncated), clamped
// to [0, hd - 1]; inv_freq = interpolation (1 - mask) + extrapolation mask with
// mask = 1 - clamp((i - low) / (high - low), 0, 1); factor 0.1 ln(s) + 1.
inline void yarn(const ModelConfig& c, std::vector<double>& inv_freq, double& concentration) {
  const int hd = c.head_dim, half = hd / 2;
  const double s = c.rope_scaling_factor, theta = c.rope_theta;
  auto corr = [&](double beta) {
    return (hd / 2.0) * std::log(c.rope_original_context / (beta * 2 * M_PI)) / std::log(theta);
  };
  double low = std::max(0.0, corr(c.rope_beta_fast));
  double high = std::min(static_cast<double>(hd - 1), corr(c.rope_beta_slow));
  if (low == high) high += 0.001;
  inv_freq.resize(half);
  for (int i = 0; i < half; ++i) {
    const double pos_freq = std::pow(theta, 2.0 * i / hd);
    const double extrapolation = 1.0 / pos_freq, interpolation = 1.0 / (s * pos_freq);
    const double mask = 1.0 - std::clamp((i - low) / (high - low), 0.0, 1.0);
    inv_freq[i] = interpolation * (1.0 - mask) + extrapolation * mask;
  }
  concentration = 0.1 * std::log(s) + 1.0;
}

struct HostLayer {
  std::vector<uint16_t> attn_norm, q, q_bias, k, k_bias, v, v_bias, out, out_bias, sinks, mlp_norm, router,
      router_bias, mlp1_bias, mlp2_bias;
  std::vector<uint8_t> mlp1_blocks, mlp1_scales, mlp2_blocks, mlp2_scales;
  std::vector<double> w1, w2;  // dequantized: [E][2I][H], [E][H][I]
};

struct HostModel {
  ModelConfig c;
  std::string name;
  std::vector<uint16_t> embedding, final_norm, unembedding;
  std::vector<HostLayer> layers;
  std::vector<float> inv_freq;
  ModelWeights w;  // pointers into the vectors above
};

inline constexpr double kFP4[16] = {0, .5, 1, 1.5, 2, 3, 4, 6, -0.0, -.5, -1, -1.5, -2, -3, -4, -6};

// Element k of row n (MXFP4, gpt-oss-model.md): block k/32, byte (k%32)/2, the
// low nibble the even element; times 2^(scale - 127).
inline std::vector<double> dequantize(const std::vector<uint8_t>& blocks, const std::vector<uint8_t>& scales,
                                      int experts, int rows, int cols) {
  std::vector<double> w(static_cast<size_t>(experts) * rows * cols);
  const int nb = cols / 32;
  for (size_t r = 0; r < static_cast<size_t>(experts) * rows; ++r)
    for (int k = 0; k < cols; ++k) {
      const uint8_t byte = blocks[(r * nb + k / 32) * 16 + (k % 32) / 2];
      const int nib = k % 2 == 0 ? byte & 15 : byte >> 4;
      w[r * cols + k] = kFP4[nib] * std::ldexp(1.0, static_cast<int>(scales[r * nb + k / 32]) - 127);
    }
  return w;
}

inline std::unique_ptr<HostModel> make_model(const Spec& s, uint64_t seed) {
  auto m = std::make_unique<HostModel>();
  m->name = s.name;
  ModelConfig& c = m->c;
  c.num_layers = s.layers;
  c.num_experts = s.experts;
  c.experts_per_token = s.top_k;
  c.vocab_size = s.vocab;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.intermediate;
  c.head_dim = s.head_dim;
  c.num_heads = s.heads;
  c.num_kv_heads = s.kv_heads;
  c.sliding_window = s.window;
  c.layer_is_sliding.assign(s.layers, 0);
  for (int l = 0; l < s.layers; l += 2) c.layer_is_sliding[l] = 1;
  std::mt19937_64 rng(seed);
  const size_t H = s.hidden, I = s.intermediate, E = s.experts, V = s.vocab;
  const size_t q = size_t(s.heads) * s.head_dim, kv = size_t(s.kv_heads) * s.head_dim;
  // Realistic scales: bf16 matrices with std 0.02..0.1, norms near 1, sinks O(1),
  // MXFP4 scales 2^-3..2^0 with random nibbles.
  m->embedding = bf16_randn(rng, V * H, 0.1f);
  m->unembedding = bf16_randn(rng, V * H, 0.05f);
  m->final_norm = bf16_randn(rng, H, 0.1f, 1.0f);
  m->layers.resize(s.layers);
  for (auto& L : m->layers) {
    L.attn_norm = bf16_randn(rng, H, 0.1f, 1.0f);
    L.q = bf16_randn(rng, q * H, 0.1f);
    L.q_bias = bf16_randn(rng, q, 0.1f);
    L.k = bf16_randn(rng, kv * H, 0.1f);
    L.k_bias = bf16_randn(rng, kv, 0.1f);
    L.v = bf16_randn(rng, kv * H, 0.1f);
    L.v_bias = bf16_randn(rng, kv, 0.1f);
    L.out = bf16_randn(rng, H * q, 0.05f);
    L.out_bias = bf16_randn(rng, H, 0.05f);
    L.sinks = bf16_randn(rng, s.heads, 1.0f);
    L.mlp_norm = bf16_randn(rng, H, 0.1f, 1.0f);
    L.router = bf16_randn(rng, E * H, 0.1f);
    L.router_bias = bf16_randn(rng, E, 0.1f);
    L.mlp1_blocks = bytes_uniform(rng, E * 2 * I * (H / 32) * 16, 0, 255);
    L.mlp1_scales = bytes_uniform(rng, E * 2 * I * (H / 32), 124, 127);
    L.mlp1_bias = bf16_randn(rng, E * 2 * I, 0.1f);
    L.mlp2_blocks = bytes_uniform(rng, E * H * (I / 32) * 16, 0, 255);
    L.mlp2_scales = bytes_uniform(rng, E * H * (I / 32), 124, 127);
    L.mlp2_bias = bf16_randn(rng, E * H, 0.1f);
    L.w1 = dequantize(L.mlp1_blocks, L.mlp1_scales, s.experts, 2 * s.intermediate, s.hidden);
    L.w2 = dequantize(L.mlp2_blocks, L.mlp2_scales, s.experts, s.hidden, s.intermediate);
  }
  std::vector<double> inv;
  double conc = 1.0;
  yarn(c, inv, conc);
  m->inv_freq.assign(inv.begin(), inv.end());
  ModelWeights& w = m->w;
  w.embedding = m->embedding.data();
  w.final_norm = m->final_norm.data();
  w.unembedding = {m->unembedding.data(), nullptr, s.vocab, s.hidden};
  w.rope_inv_freq = m->inv_freq.data();
  w.rope_scaling = static_cast<float>(conc);
  w.layers.resize(s.layers);
  for (int l = 0; l < s.layers; ++l) {
    HostLayer& L = m->layers[l];
    LayerWeights& o = w.layers[l];
    o.attn_norm = L.attn_norm.data();
    o.q = {L.q.data(), L.q_bias.data(), int(q), s.hidden};
    o.k = {L.k.data(), L.k_bias.data(), int(kv), s.hidden};
    o.v = {L.v.data(), L.v_bias.data(), int(kv), s.hidden};
    o.out = {L.out.data(), L.out_bias.data(), s.hidden, int(q)};
    o.sinks = L.sinks.data();
    o.mlp_norm = L.mlp_norm.data();
    o.router = {L.router.data(), L.router_bias.data(), s.experts, s.hidden};
    o.mlp1 = {L.mlp1_blocks.data(), L.mlp1_scales.data(), L.mlp1_bias.data(), s.experts, 2 * s.intermediate, s.hidden};
    o.mlp2 = {L.mlp2_blocks.data(), L.mlp2_scales.data(), L.mlp2_bias.data(), s.experts, s.hidden, s.intermediate};
    o.sliding = c.layer_is_sliding[l] != 0;
  }
  return m;
}


// ---- float64 references from the model's definition --------------------------------
// RMSNorm: x / sqrt(mean(x^2) + eps) * weight.
template <typename X>
void ref_rmsnorm(const X* x, int width, const uint16_t* w, double eps, double* y) {
  double ss = 0;
  for (int i = 0; i < width; ++i) ss += double(x[i]) * double(x[i]);
  const double inv = 1.0 / std::sqrt(ss / width + eps);
  for (int i = 0; i < width; ++i) y[i] = double(x[i]) * inv * bf(w[i]);
}

// y[n] = sum_k W[n, k] x[k] + b[n].
template <typename X>
void ref_matvec(const uint16_t* W, const uint16_t* b, int rows, int cols, const X* x, double* y) {
  for (int n = 0; n < rows; ++n) {
    double acc = b ? bf(b[n]) : 0.0;
    const uint16_t* row = W + static_cast<size_t>(n) * cols;
    for (int k = 0; k < cols; ++k) acc += bf(row[k]) * double(x[k]);
    y[n] = acc;
  }
}

// RoPE on the q and k heads of one qkv row: half-split rotation by
// angle = position * inv_freq[i], cos and sin times the YaRN concentration.
// The angle is an fp32 product, as in the reference implementations (both
// torch ones multiply fp32 positions by fp32 frequencies); cos and sin of it
// are taken in double. (An exact product would differ by up to half an ulp of
// the angle: 4e-3 rad near position 131072.)
template <typename X>
void ref_rope(const HostModel& m, const X* in, int position, double* out) {
  const ModelConfig& c = m.c;
  const int hd = c.head_dim, half = hd / 2, width = c.qkv_rows();
  for (int i = 0; i < width; ++i) out[i] = double(in[i]);
  const double conc = m.w.rope_scaling;
  for (int h = 0; h < c.num_heads + c.num_kv_heads; ++h) {
    double* v = out + h * hd;
    for (int i = 0; i < half; ++i) {
      const float angle = static_cast<float>(position) * m.inv_freq[i];
      const double a = angle;
      const double cs = std::cos(a) * conc, sn = std::sin(a) * conc;
      const double x1 = v[i], x2 = v[i + half];
      v[i] = x1 * cs - x2 * sn;
      v[i + half] = x2 * cs + x1 * sn;
    }
  }
}

// The keys and values a layer's cache should hold, per (sequence, position).
// With a bf16 cache the stored values are the fp32 ones rounded to bf16 (to
// nearest even): the reference keeps what that option defines the cache to hold.
struct RefKV {
  bool bf16 = false;
  std::map<std::pair<int, int>, std::pair<std::vector<double>, std::vector<double>>> at;
  void store(const HostModel& m, int seq, int pos, const double* roped_qkv) {
    const int hd = m.c.head_dim, nq = m.c.num_heads, nkv = m.c.num_kv_heads;
    auto& e = at[{seq, pos}];
    e.first.assign(roped_qkv + nq * hd, roped_qkv + (nq + nkv) * hd);
    e.second.assign(roped_qkv + (nq + nkv) * hd, roped_qkv + (nq + 2 * nkv) * hd);
    if (bf16)
      for (auto* v : {&e.first, &e.second})
        for (double& x : *v) x = gon::bf16_to_f32(gon::f32_to_bf16(static_cast<float>(x)));
  }
};

// Attention with sinks of one token (gpt-oss-model.md): per query head h (kv head
// h / (nq / nkv)), softmax over [sink_h, q.k_j / sqrt(hd) for j in the window]
// with the sink column dropped, times v_j. Window W > 0: keys p-W < j <= p.
inline void ref_attention(const HostModel& m, const double* q, int seq, int pos, const RefKV& kv, const uint16_t* sinks,
                   int window, double* out) {
  const ModelConfig& c = m.c;
  const int hd = c.head_dim, nq = c.num_heads, group = nq / c.num_kv_heads;
  const int lo = window > 0 ? std::max(0, pos - window + 1) : 0;
  std::vector<const std::pair<std::vector<double>, std::vector<double>>*> keys;
  for (int j = lo; j <= pos; ++j) {
    auto it = kv.at.find({seq, j});
    if (it == kv.at.end()) {
      std::printf("test harness error: reference key (%d, %d) missing\n", seq, j);
      std::abort();
    }
    keys.push_back(&it->second);
  }
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<double> s(keys.size());
  for (int h = 0; h < nq; ++h) {
    const int g = h / group;
    const double sink = bf(sinks[h]);
    double mx = sink;
    for (size_t j = 0; j < keys.size(); ++j) {
      double d = 0;
      for (int i = 0; i < hd; ++i) d += q[h * hd + i] * keys[j]->first[g * hd + i];
      s[j] = d * scale;
      mx = std::max(mx, s[j]);
    }
    double denom = std::exp(sink - mx);
    for (double& x : s) denom += (x = std::exp(x - mx));
    for (int i = 0; i < hd; ++i) {
      double acc = 0;
      for (size_t j = 0; j < keys.size(); ++j) acc += s[j] * keys[j]->second[g * hd + i];
      out[h * hd + i] = acc / denom;
    }
  }
}

// Router: logits = W x + b; top-k by value (ties: lower id first); softmax over
// the k. Returns whether the choice is a near tie (the k-th logit and the
// largest one below it within `near_tie` of each other, relative to the largest
// |logit|); *exact_tie: whether the k-th and the next are equal.
template <typename X>
bool ref_router(const BF16Matrix& r, const X* x, int k, int* ids, double* weights, bool* exact_tie,
                double near_tie) {
  const int E = r.rows;
  std::vector<double> logits(E);
  ref_matvec(r.data, r.bias, E, r.cols, x, logits.data());
  std::vector<int> order(E);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return logits[a] > logits[b]; });
  double mx = 0;
  for (double l : logits) mx = std::max(mx, std::fabs(l));
  for (int j = 0; j < k; ++j) ids[j] = order[j];
  const double top = logits[order[0]];
  double sum = 0;
  for (int j = 0; j < k; ++j) sum += (weights[j] = std::exp(logits[order[j]] - top));
  for (int j = 0; j < k; ++j) weights[j] /= sum;
  if (exact_tie) *exact_tie = k < E && logits[order[k - 1]] == logits[order[k]];
  if (k >= E) return false;
  // The nearest logit below the k-th: those exactly equal to it are decided by id (and checked so), but one
  // that is only near it may come out above it (and above its exact twins) in another rounding.
  const double v = logits[order[k - 1]];
  int j = k;
  while (j < E && logits[order[j]] == v) ++j;
  if (j < E && v - logits[order[j]] < near_tie * mx) return true;
  // When exact twins straddle the k-th place (one chosen by id, one not), a chosen logit only near above them
  // may come out below both in another rounding, and then both twins are chosen.
  if (logits[order[k]] == v) {
    int i = k - 1;
    while (i >= 0 && logits[order[i]] == v) --i;
    if (i >= 0 && logits[order[i]] - v < near_tie * mx) return true;
  }
  return false;
}

// One expert: mlp2(swiglu(mlp1(x))) with mlp1's rows interleaved (gate = even
// rows, up = odd rows); gate = min(g, limit), up = clamp(u, -limit, limit),
// act = (up + 1) gate sigmoid(alpha gate).
template <typename X>
void ref_expert(const HostModel& m, const HostLayer& L, int e, const X* x, double* y) {
  const ModelConfig& c = m.c;
  const int H = c.hidden_size, I = c.intermediate_size;
  std::vector<double> act(I);
  const double limit = c.swiglu_limit, alpha = c.swiglu_alpha;
  for (int i = 0; i < I; ++i) {
    double g = bf(L.mlp1_bias[size_t(e) * 2 * I + 2 * i]), u = bf(L.mlp1_bias[size_t(e) * 2 * I + 2 * i + 1]);
    const double* wg = &L.w1[(size_t(e) * 2 * I + 2 * i) * H];
    const double* wu = wg + H;
    for (int k = 0; k < H; ++k) {
      g += wg[k] * double(x[k]);
      u += wu[k] * double(x[k]);
    }
    g = std::min(g, limit);
    u = std::clamp(u, -limit, limit);
    act[i] = (u + 1.0) * g / (1.0 + std::exp(-alpha * g));
  }
  for (int n = 0; n < H; ++n) {
    double acc = bf(L.mlp2_bias[size_t(e) * H + n]);
    const double* w = &L.w2[(size_t(e) * H + n) * I];
    for (int i = 0; i < I; ++i) acc += w[i] * act[i];
    y[n] = acc;
  }
}

// The attention block on x [T, H] in place (stores k and v in kv).
inline void ref_attention_block(const HostModel& m, int layer, std::vector<double>& x, const std::vector<int>& pos,
                         const std::vector<int>& seq, RefKV& kv) {
  const ModelConfig& c = m.c;
  const HostLayer& L = m.layers[layer];
  const LayerWeights& W = m.w.layers[layer];
  const int T = static_cast<int>(pos.size()), H = c.hidden_size, hd = c.head_dim, nq = c.num_heads,
            nkv = c.num_kv_heads, width = c.qkv_rows();
  std::vector<double> xn(H), qkv(width), roped(size_t(T) * width), att(size_t(nq) * hd), o(H);
  for (int t = 0; t < T; ++t) {
    ref_rmsnorm(&x[size_t(t) * H], H, L.attn_norm.data(), c.rms_norm_eps, xn.data());
    ref_matvec(W.q.data, W.q.bias, nq * hd, H, xn.data(), qkv.data());
    ref_matvec(W.k.data, W.k.bias, nkv * hd, H, xn.data(), qkv.data() + nq * hd);
    ref_matvec(W.v.data, W.v.bias, nkv * hd, H, xn.data(), qkv.data() + (nq + nkv) * hd);
    ref_rope(m, qkv.data(), pos[t], &roped[size_t(t) * width]);
    kv.store(m, seq[t], pos[t], &roped[size_t(t) * width]);
  }
  const int window = c.layer_is_sliding[layer] ? c.sliding_window : 0;
  for (int t = 0; t < T; ++t) {
    ref_attention(m, &roped[size_t(t) * width], seq[t], pos[t], kv, L.sinks.data(), window, att.data());
    ref_matvec(W.out.data, W.out.bias, H, nq * hd, att.data(), o.data());
    for (int i = 0; i < H; ++i) x[size_t(t) * H + i] += o[i];
  }
}

// The MoE block on x [T, H] in place. near_tie[t]: token t's expert choice is a near tie.
inline void ref_moe_block(const HostModel& m, int layer, std::vector<double>& x, std::vector<char>* near_tie,
                   double near_tie_rel) {
  const ModelConfig& c = m.c;
  const HostLayer& L = m.layers[layer];
  const int T = static_cast<int>(x.size() / c.hidden_size), H = c.hidden_size, k = c.experts_per_token;
  std::vector<double> xn(H), y(H), w(k);
  std::vector<int> ids(k);
  if (near_tie) near_tie->assign(T, 0);
  for (int t = 0; t < T; ++t) {
    ref_rmsnorm(&x[size_t(t) * H], H, L.mlp_norm.data(), c.rms_norm_eps, xn.data());
    const bool tie = ref_router(m.w.layers[layer].router, xn.data(), k, ids.data(), w.data(), nullptr, near_tie_rel);
    if (near_tie && tie) (*near_tie)[t] = 1;
    for (int j = 0; j < k; ++j) {
      ref_expert(m, L, ids[j], xn.data(), y.data());
      for (int i = 0; i < H; ++i) x[size_t(t) * H + i] += w[j] * y[i];
    }
  }
}

// logits = unembedding rmsnorm(x) for one row.
template <typename X>
void ref_logits(const HostModel& m, const X* x, double* logits) {
  const ModelConfig& c = m.c;
  std::vector<double> xn(c.hidden_size);
  ref_rmsnorm(x, c.hidden_size, m.final_norm.data(), c.rms_norm_eps, xn.data());
  ref_matvec(m.unembedding.data(), nullptr, c.vocab_size, c.hidden_size, xn.data(), logits);
}

// ---- the sampling rule's reference ----------------------------------------------------
namespace previous_rule {

// The previous implementation of the sampling rule: core/sampler.cpp at commit
// e8c1975 (sample_token and uniform_from), before sampling became a backend
// operation; copied unchanged apart from this namespace and the masked argmax
// (there NaN logits no longer win: see core/sampler.hpp). Every backend's
// sample op must give the same tokens.
struct SamplerScratch {
  float* probs = nullptr;     // [vocab]
  int32_t* order = nullptr;   // [vocab]
};

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

inline double uniform_from(uint64_t seed, uint64_t counter) {
  const uint64_t bits = splitmix64(splitmix64(seed) ^ (counter * 0xd1b54a32d192ed03ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

inline int32_t sample_token(const float* logits, int vocab, float temperature, float top_p, double uniform,
                     const SamplerScratch& scratch, const uint8_t* allowed, float* logprob) {
  // Max and log-sum-exp at temperature 1 over all tokens (for the logprob);
  // NaN logits are treated as -inf so a broken row cannot select them.
  int32_t argmax = 0;
  float mx = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < vocab; ++i) {
    if (logits[i] > mx) {
      mx = logits[i];
      argmax = i;
    }
  }
  double sum1 = 0.0;
  for (int i = 0; i < vocab; ++i)
    if (logits[i] == logits[i]) sum1 += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum1);
  auto logprob_of = [&](int32_t t) { return static_cast<float>(static_cast<double>(logits[t]) - lse); };

  // The same among the allowed tokens.
  float amx = mx;
  if (allowed != nullptr) {
    // The rule as it stands since the sampler became a backend operation: NaN
    // logits never win; with no allowed logit above -inf, the first allowed token.
    amx = -std::numeric_limits<float>::infinity();
    int32_t best = -1, first = -1;
    for (int i = 0; i < vocab; ++i) {
      if (!allowed[i]) continue;
      if (first < 0) first = i;
      if (logits[i] > amx) {
        amx = logits[i];
        best = i;
      }
    }
    if (first < 0) {  // nothing allowed: fall back to the unrestricted argmax
      *logprob = logprob_of(argmax);
      return argmax;
    }
    argmax = best >= 0 ? best : first;
  }

  if (temperature == 0.0f || !std::isfinite(amx)) {
    *logprob = logprob_of(argmax);
    return argmax;
  }

  // Unnormalised probabilities at the temperature; the max has probability 1.
  float* p = scratch.probs;
  const double inv_t = 1.0 / temperature;
  double total = 0.0;
  for (int i = 0; i < vocab; ++i) {
    const float l = logits[i];
    const bool ok = (l == l) && (allowed == nullptr || allowed[i]);
    p[i] = ok ? static_cast<float>(std::exp((static_cast<double>(l) - amx) * inv_t)) : 0.0f;
    total += p[i];
  }

  int32_t chosen = argmax;
  if (top_p >= 1.0f) {
    double target = uniform * total, acc = 0.0;
    chosen = -1;
    for (int i = 0; i < vocab; ++i) {
      acc += p[i];
      if (acc > target && p[i] > 0.0f) {
        chosen = i;
        break;
      }
    }
    if (chosen < 0) chosen = argmax;  // rounding at the very end of the scan
  } else {
    // The nucleus: tokens in decreasing probability until their mass reaches
    // top_p. Find a threshold whose candidate set surely covers it, then sort
    // only the candidates.
    const double need = static_cast<double>(top_p) * total;
    float threshold = 0.5f;
    for (;;) {
      double mass = 0.0;
      for (int i = 0; i < vocab; ++i)
        if (p[i] >= threshold) mass += p[i];
      if (mass >= need || threshold < 1e-30f) break;
      threshold *= 0.25f;
    }
    if (threshold < 1e-30f) threshold = 0.0f;
    int32_t* order = scratch.order;
    int n = 0;
    for (int i = 0; i < vocab; ++i)
      if (p[i] >= threshold && p[i] > 0.0f) order[n++] = i;
    std::sort(order, order + n, [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
    double mass = 0.0;
    int keep = 0;
    while (keep < n) {
      mass += p[order[keep++]];
      if (mass >= need) break;
    }
    const double target = uniform * mass;
    double acc = 0.0;
    chosen = order[0];
    for (int j = 0; j < keep; ++j) {
      acc += p[order[j]];
      if (acc > target) {
        chosen = order[j];
        break;
      }
    }
  }
  *logprob = logprob_of(chosen);
  return chosen;
}

}  // namespace previous_rule

struct RuleResult {
  int32_t token;
  float logprob;
};

// The previous rule for one row with SampleParams (mask: the executor's flags, applied with use_mask).
inline RuleResult rule_sample(const float* logits, int V, const SampleParams& p, const uint8_t* mask) {
  std::vector<float> probs(V);
  std::vector<int32_t> order(V);
  previous_rule::SamplerScratch s{probs.data(), order.data()};
  RuleResult r;
  const double u = previous_rule::uniform_from(p.seed, p.counter);
  r.token = previous_rule::sample_token(logits, V, p.temperature, p.top_p, u, s, p.use_mask ? mask : nullptr,
                                        &r.logprob);
  return r;
}

// How close the draw came to another answer under the previous rule: the
// smallest relative distance between u * mass and the running sums on either
// side of `token` (in the rule's order), and between top_p * total and the sums
// on either side of the nucleus boundary. Recomputes the rule's sums.
inline double draw_margin(const float* logits, int V, const SampleParams& prm, const uint8_t* mask_in, int32_t token) {
  const uint8_t* mask = prm.use_mask ? mask_in : nullptr;
  if (prm.temperature == 0.0f) return kInf;
  float amx = -std::numeric_limits<float>::infinity();
  bool any = false;
  for (int i = 0; i < V; ++i)
    if ((mask == nullptr || mask[i]) && logits[i] == logits[i]) {
      amx = std::max(amx, logits[i]);
      any = true;
    }
  if (!any || !std::isfinite(amx)) return kInf;
  std::vector<float> p(V);
  double total = 0;
  for (int i = 0; i < V; ++i) {
    const bool ok = logits[i] == logits[i] && (mask == nullptr || mask[i]);
    p[i] = ok ? static_cast<float>(std::exp((double(logits[i]) - amx) / double(prm.temperature))) : 0.0f;
    total += p[i];
  }
  const double u = previous_rule::uniform_from(prm.seed, prm.counter);
  auto rel = [](double a, double b) { return std::fabs(a - b) / std::max(std::fabs(b), 1e-300); };
  if (prm.top_p >= 1.0f) {
    const double target = u * total;
    double acc = 0;
    for (int i = 0; i < V; ++i) {
      const double before = acc;
      acc += p[i];
      if (i == token) return std::min(rel(before, target), rel(acc, target));
    }
    return kInf;
  }
  std::vector<int32_t> order;
  for (int i = 0; i < V; ++i)
    if (p[i] > 0) order.push_back(i);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  const double need = double(prm.top_p) * total;
  std::vector<double> cum(order.size());
  double acc = 0;
  size_t keep = order.size();
  double margin = kInf;
  for (size_t j = 0; j < order.size(); ++j) {
    const double before = acc;
    acc += p[order[j]];
    cum[j] = acc;
    if (acc >= need && keep == order.size()) {
      keep = j + 1;
      margin = std::min(rel(before, need), rel(acc, need));
    }
  }
  const double mass = keep > 0 ? cum[keep - 1] : 0;
  const double target = u * mass;
  for (size_t j = 0; j < keep; ++j)
    if (order[j] == token) {
      const double before = j > 0 ? cum[j - 1] : 0.0;
      return std::min({margin, rel(before, target), rel(cum[j], target)});
    }
  return margin;
}

// The whole model in float64 for one step; `kv` persists across steps.
// Returns the logits of every row; near_tie[t] is set when token t's expert
// choice in some layer is a near tie.
inline std::vector<double> ref_forward(const HostModel& m, std::vector<RefKV>& kv, const std::vector<int32_t>& tokens,
                                       const Step& step, double near_tie_rel, std::vector<char>* near_tie) {
  const ModelConfig& c = m.c;
  const int T = static_cast<int>(step.size()), H = c.hidden_size, V = c.vocab_size;
  std::vector<double> x(size_t(T) * H);
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < H; ++i) x[size_t(t) * H + i] = bf(m.embedding[size_t(tokens[t]) * H + i]);
  std::vector<int> pos, seqs;
  for (auto& [q, p] : step) {
    seqs.push_back(q);
    pos.push_back(p);
  }
  near_tie->assign(T, 0);
  for (int l = 0; l < c.num_layers; ++l) {
    ref_attention_block(m, l, x, pos, seqs, kv[l]);
    std::vector<char> tie;
    ref_moe_block(m, l, x, &tie, near_tie_rel);
    for (int t = 0; t < T; ++t) (*near_tie)[t] |= tie[t];
  }
  std::vector<double> logits(size_t(T) * V);
  for (int t = 0; t < T; ++t) ref_logits(m, &x[size_t(t) * H], &logits[size_t(t) * V]);
  return logits;
}

}  // namespace gon_test::ops
