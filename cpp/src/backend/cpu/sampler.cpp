// CPU sampling (see sampler.hpp for the method, core/sampler.hpp for the rule).
#include "backend/cpu/sampler.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/cpu_backend.hpp"
#include "backend/cpu/matmul.hpp"
#include "core/sampler.hpp"

namespace gon::cpu {

namespace generic {
float max_allowed(const float* l, int n, const uint8_t* mask) {
  float m = -std::numeric_limits<float>::infinity();
  for (int i = 0; i < n; ++i)
    if ((mask == nullptr || mask[i]) && l[i] > m) m = l[i];
  return m;
}

int first_equal(const float* l, int n, const uint8_t* mask, float value) {
  for (int i = 0; i < n; ++i)
    if ((mask == nullptr || mask[i]) && l[i] == value) return i;
  return -1;
}

double exp_sum(const float* l, int n, const uint8_t* mask, double shift, double inv_t, float* p) {
  double total = 0.0;
  for (int i = 0; i < n; ++i) {
    const bool ok = l[i] == l[i] && (mask == nullptr || mask[i]);
    const double e = ok ? std::exp((static_cast<double>(l[i]) - shift) * inv_t) : 0.0;
    if (p != nullptr) {
      p[i] = static_cast<float>(e);
      total += p[i];
    } else {
      total += e;
    }
  }
  return total;
}
}  // namespace generic

const SamplerKernels& sampler_kernels(const char* isa) {
  static const SamplerKernels portable{&generic::max_allowed, &generic::first_equal, &generic::exp_sum};
#if GON_HAVE_AVX512_KERNELS
  static const SamplerKernels vector{&avx512::max_allowed, &avx512::first_equal, &avx512::exp_sum};
  if (std::strncmp(isa, "avx512", 6) == 0) return vector;  // avx512bf16 and avx512amx
#endif
  (void)isa;
  return portable;
}

namespace {
constexpr int kBuckets = 2048;  // histogram levels: bits 30..20, 19..9, 8..0 of p's float
constexpr int kBlock = 512;     // block sums of the top_p = 1 scan

inline uint32_t bits_of(float f) { return std::bit_cast<uint32_t>(f); }

// Level l of a positive float's bits: its bucket at that level.
inline int bucket(uint32_t b, int level) {
  return level == 0 ? static_cast<int>(b >> 20) : level == 1 ? static_cast<int>((b >> 9) & 2047) : static_cast<int>(b & 511);
}

// The first token, in order of decreasing p (ties: lower index first), at which
// the running mass crosses x (strict: > x, else >= x); -1 if the mass never
// does. *through receives the running mass including that token. `level1` is
// the histogram of all mass by level-0 bucket.
int32_t descend(const float* p, int n, const double* level1, double x, bool strict, const SamplerScratch& s,
                double* through) {
  auto crosses = [&](double v) { return strict ? v > x : v >= x; };
  double cum = 0.0;
  int b = kBuckets - 1;
  for (; b >= 0; --b) {
    if (level1[b] > 0.0 && crosses(cum + level1[b])) break;
    cum += level1[b];
  }
  if (b < 0) return -1;
  // Tokens of that bucket, in index order.
  int32_t* list = s.list;
  int m = 0;
  for (int i = 0; i < n; ++i)
    if (p[i] > 0.0f && bucket(bits_of(p[i]), 0) == b) list[m++] = i;
  for (int level = 1; level <= 2; ++level) {
    double* mass = s.mass;
    std::fill(mass, mass + kBuckets, 0.0);
    for (int j = 0; j < m; ++j) mass[bucket(bits_of(p[list[j]]), level)] += p[list[j]];
    int c = kBuckets - 1, lowest = -1;
    for (; c >= 0; --c) {
      if (!(mass[c] > 0.0)) continue;
      lowest = c;
      if (crosses(cum + mass[c])) break;
      cum += mass[c];
    }
    if (c < 0) {  // rounding kept the walk short: the last tokens in order hold the answer
      c = lowest;
      cum -= mass[c];
    }
    int k = 0;
    for (int j = 0; j < m; ++j)
      if (bucket(bits_of(p[list[j]]), level) == c) list[k++] = list[j];
    m = k;
  }
  // Equal p from here on: index order.
  for (int j = 0; j < m; ++j) {
    cum += p[list[j]];
    if (crosses(cum) || j == m - 1) {
      *through = cum;
      return list[j];
    }
  }
  return -1;
}

// True when token a comes after token b in nucleus order.
inline bool after(const float* p, int32_t a, int32_t b) { return p[a] < p[b] || (p[a] == p[b] && a > b); }
}  // namespace

size_t sampler_scratch_bytes(int vocab) {
  return (static_cast<size_t>(vocab) * 4 + 63) / 64 * 64 * 2 + kBuckets * sizeof(double) + 64;
}

SamplerScratch carve_sampler_scratch(void* base, int vocab) {
  WorkspaceCarver carve(base);
  SamplerScratch s;
  s.probs = carve.take<float>(vocab);
  s.list = carve.take<int32_t>(vocab);
  s.mass = carve.take<double>(kBuckets);
  return s;
}

int32_t sample_row(const SamplerKernels& k, const float* logits, int V, const SampleParams& params,
                   const uint8_t* mask_in, const SamplerScratch& s, float* logprob) {
  const uint8_t* mask = params.use_mask ? mask_in : nullptr;
  // Unrestricted argmax (first index of the largest non-NaN logit; 0 if none)
  // and the log-sum-exp at temperature 1 for the logprob.
  const float mx = k.max_allowed(logits, V, nullptr);
  int32_t argmax = 0;
  if (mx > -std::numeric_limits<float>::infinity()) argmax = k.first_equal(logits, V, nullptr, mx);
  const double lse = mx + std::log(k.exp_sum(logits, V, nullptr, mx, 1.0, nullptr));
  auto logprob_of = [&](int32_t t) { return static_cast<float>(static_cast<double>(logits[t]) - lse); };

  // The same among the allowed tokens.
  float amx = mx;
  if (mask != nullptr) {
    int first = -1;
    for (int i = 0; i < V; ++i)
      if (mask[i]) {
        first = i;
        break;
      }
    if (first < 0) {  // nothing allowed: the unrestricted argmax
      *logprob = logprob_of(argmax);
      return argmax;
    }
    amx = k.max_allowed(logits, V, mask);
    argmax = amx > -std::numeric_limits<float>::infinity() ? k.first_equal(logits, V, mask, amx) : first;
  }
  if (params.temperature == 0.0f || !std::isfinite(amx)) {
    *logprob = logprob_of(argmax);
    return argmax;
  }

  const double u = uniform_from(params.seed, params.counter);
  float* p = s.probs;
  const double total = k.exp_sum(logits, V, mask, amx, 1.0 / params.temperature, p);
  int32_t chosen = argmax;
  if (params.top_p >= 1.0f) {
    // The first token (index order) at which the running mass exceeds u * total:
    // locate its block by block sums, then scan the block.
    const double target = u * total;
    double acc = 0.0;
    chosen = -1;
    for (int b0 = 0; b0 < V && chosen < 0; b0 += kBlock) {
      const int b1 = std::min(V, b0 + kBlock);
      double block = 0.0;
      for (int i = b0; i < b1; ++i) block += p[i];
      if (acc + block <= target) {
        acc += block;
        continue;
      }
      for (int i = b0; i < b1; ++i) {
        acc += p[i];
        if (acc > target && p[i] > 0.0f) {
          chosen = i;
          break;
        }
      }
    }
    if (chosen < 0) chosen = argmax;  // rounding at the very end of the scan
  } else {
    double hist[kBuckets];  // mass by level-0 bucket, shared by both descents
    std::fill(hist, hist + kBuckets, 0.0);
    for (int i = 0; i < V; ++i)
      if (p[i] > 0.0f) hist[bucket(bits_of(p[i]), 0)] += p[i];
    const double need = static_cast<double>(params.top_p) * total;
    double mass = 0.0;
    const int32_t boundary = descend(p, V, hist, need, false, s, &mass);
    if (boundary < 0) {
      mass = 0.0;
      for (int b = kBuckets - 1; b >= 0; --b) mass += hist[b];
    }
    double through = 0.0;
    chosen = descend(p, V, hist, u * mass, true, s, &through);
    if (chosen < 0) chosen = argmax;  // rounding: the first token of the nucleus
    if (boundary >= 0 && after(p, chosen, boundary)) chosen = boundary;
  }
  *logprob = logprob_of(chosen);
  return chosen;
}

size_t sampler_workspace_bytes(int vocab, int threads) {
  return static_cast<size_t>(threads) * (sampler_scratch_bytes(vocab) + 64);
}

void CpuExecutor::sample(const float* logits, int rows, const SampleParams* params, const uint8_t* mask,
                         int32_t* tokens, float* logprobs) {
  if (rows <= 0) return;
  const int V = config_.vocab_size;
  const size_t per_thread = sampler_scratch_bytes(V) + 64;
  const SamplerKernels& k = sampler_kernels(mm_.name);
  std::atomic<int> next{0};
  auto body = [&](int thread, int) {
    void* base = reinterpret_cast<void*>(
        (reinterpret_cast<uintptr_t>(workspace()) + per_thread * static_cast<size_t>(thread) + 63) & ~uintptr_t{63});
    const SamplerScratch s = carve_sampler_scratch(base, V);
    for (int r = next.fetch_add(1); r < rows; r = next.fetch_add(1))
      tokens[r] = sample_row(k, logits + static_cast<size_t>(r) * V, V, params[r], mask, s, &logprobs[r]);
  };
  if (rows == 1) {
    body(0, 1);
  } else {
    pool_.run(body);
  }
}

}  // namespace gon::cpu
