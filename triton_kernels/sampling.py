"""Sampling at the end of the forward pass: the exact rule of
cpp/src/core/sampler.hpp on the GPU (argmax, temperature, exact top-p, the
allowed-token mask, counter-based uniforms), so only token ids cross to the host.

SampleParams (32 bytes per row, passed as three views of one buffer):
temperature fp32 at params_f32[8r], top_p fp32 at params_f32[8r + 1], seed u64
at params_u64[4r + 1], counter u64 at params_u64[4r + 2], use_mask i32 at
params_i32[8r + 6]. uniform = uniform_from(seed, counter) (splitmix64, see
cpp/src/core/sampler.cpp), computed in the kernel.

Contracts (R rows of V logits, row stride V):
  sample_reduce(logits, params_f32, params_i32, mask, partial, R, V)    grid (R, NUM_CHUNKS)
  sample_pick(logits, params_f32, params_u64, params_i32, mask, partial, probs,
              tokens, logprobs, R, V)                                  grid (R,)
      tokens i32 [R], logprobs fp32 [R]; partial, probs: scratch whose sizes
      (in elements per row) are given by this module's SCRATCH (fp32).
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant

VARIANTS = []
