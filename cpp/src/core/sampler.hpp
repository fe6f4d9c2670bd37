// Sampling rule shared by every backend, and its random numbers.
//
// For a row of logits l and SampleParams (backend/executor.hpp):
//  * tokens the allowed-token mask excludes (with use_mask) are never chosen;
//    if it excludes every token, the unrestricted argmax is returned;
//  * tokens with NaN logits are never chosen, except when no candidate has a
//    logit above -inf: then the argmax is token 0 (no mask) or the first
//    allowed token (only broken weights get there; the logprob may be NaN);
//  * temperature 0 (or no finite allowed logit): the argmax among the allowed
//    tokens (the first index on ties);
//  * otherwise p_i = exp((l_i - max) / temperature) (max over the allowed
//    tokens), and with top_p < 1 only the nucleus is kept: tokens in order of
//    decreasing p (ties: lower index first) until their mass reaches
//    top_p * sum(p). A uniform u = uniform_from(seed, counter) picks the first
//    token (in index order for top_p = 1, in nucleus order otherwise) at which
//    the running mass exceeds u * (mass of the candidates).
//  * logprob = log softmax(l)[token] at temperature 1 over all tokens.
// uniform_from() is a counter-based generator, so a (seed, counter) pair gives
// the same draw on every run, machine and backend.
#pragma once

#include <cstdint>

namespace gon {

// A uniform double in [0, 1) from (seed, counter): splitmix64 mixing.
double uniform_from(uint64_t seed, uint64_t counter);

}  // namespace gon
