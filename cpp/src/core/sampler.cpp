// Token sampling (see sampler.hpp).
#include "core/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace gon {

namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
}  // namespace

double uniform_from(uint64_t seed, uint64_t counter) {
  const uint64_t bits = splitmix64(splitmix64(seed) ^ (counter * 0xd1b54a32d192ed03ull));
  return static_cast<double>(bits >> 11) * 0x1.0p-53;
}

int32_t sample_token(const float* logits, int vocab, float temperature, float top_p, double uniform,
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
    amx = -std::numeric_limits<float>::infinity();
    int32_t best = -1;
    for (int i = 0; i < vocab; ++i) {
      if (allowed[i] && (best < 0 || logits[i] > amx)) {
        amx = logits[i];
        best = i;
      }
    }
    if (best < 0) {  // nothing allowed: fall back to the unrestricted argmax
      *logprob = logprob_of(argmax);
      return argmax;
    }
    argmax = best;
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

}  // namespace gon
