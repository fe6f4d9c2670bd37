// Sampling the next token from a row of logits: argmax at temperature 0,
// otherwise softmax(logits / temperature) restricted to the top-p nucleus.
// Uses only caller-provided scratch (no allocation) and a counter-based
// generator, so a (seed, position) pair gives the same token on every run and
// every machine.
#pragma once

#include <cstdint>

namespace gon {

struct SamplerScratch {
  float* probs = nullptr;     // [vocab]
  int32_t* order = nullptr;   // [vocab]
};

// Returns the chosen token; *logprob receives log softmax(logits)[token] at
// temperature 1. `uniform` is a draw in [0, 1) used when temperature > 0.
// `allowed` (nullable, [vocab]) excludes tokens whose flag is 0; if it
// excludes every token, the unrestricted argmax is returned.
int32_t sample_token(const float* logits, int vocab, float temperature, float top_p, double uniform,
                     const SamplerScratch& scratch, const uint8_t* allowed, float* logprob);

// A uniform double in [0, 1) from (seed, counter): splitmix64 mixing.
double uniform_from(uint64_t seed, uint64_t counter);

}  // namespace gon
