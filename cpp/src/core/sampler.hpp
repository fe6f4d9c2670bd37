// Sampling rule shared by every backend, and its random numbers.
//
// For a row of logits l and SampleParams (backend/executor.hpp):
//  * tokens the allowed-token mask excludes (with use_mask) are never chosen;
//    if it excludes every token, the unrestricted argmax is returned. Tokens
//    with NaN logits are never chosen, with two exceptions kept from the
//    first version of the rule (both need broken weights): a row with no
//    logit that is a number gives token 0, and with a mask whose first
//    allowed token has a NaN logit, that token is returned (logprob NaN);
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
