"""The device-side decoding loop: a CUDA graph whose WHILE conditional node
repeats one decoding step (forward pass and sampling of one sequence) until a
token budget is spent or a stop token comes, so the host launches once for
many tokens (cpp/src/backend/cuda/cuda_executor.cpp, decode_loop).

Contracts:
  decode_loop_step(sampled[1] i32, logprobs[1] fp32, tokens[1] i32, positions[1] i32,
                   params[4] u64, state[4 + MAX_STOPS] i32, out_tokens[max] i32,
                   out_logprobs[max] fp32)                         grid (1,)
      runs after the step's sampling; with n = state[0]: out_tokens[n] = sampled[0],
      out_logprobs[n] = logprobs[0], state[0] = n + 1; then the next step's
      inputs: tokens[0] = sampled[0], positions[0] += 1, and the sampling
      counter (SampleParams.counter: params[2] as u64) += 1. state[3] = 1 while
      the loop goes on (n + 1 < state[1], the budget, and sampled[0] is not one
      of the state[2] stop ids state[4 .. 4 + state[2])), else 0.
  graph_set_condition(handle u64, flag *i32)                     grid (1,), 1 warp
      cudaGraphSetConditional(handle, *flag): hand-written PTX
      (graph_condition.ptx), since Triton cannot call the device runtime.
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant, pdl_begin


@triton.jit
def decode_loop_step(sampled_ptr, logprobs_ptr, tokens_ptr, positions_ptr, params_ptr, state_ptr, out_tokens_ptr,
                     out_logprobs_ptr, MAX_STOPS: tl.constexpr):
    pdl_begin()
    tok = tl.load(sampled_ptr)
    lp = tl.load(logprobs_ptr)
    n = tl.load(state_ptr)
    budget = tl.load(state_ptr + 1)
    n_stop = tl.load(state_ptr + 2)
    tl.store(out_tokens_ptr + n, tok)
    tl.store(out_logprobs_ptr + n, lp)
    tl.store(state_ptr, n + 1)
    tl.store(tokens_ptr, tok)
    tl.store(positions_ptr, tl.load(positions_ptr) + 1)
    tl.store(params_ptr + 2, tl.load(params_ptr + 2) + 1)
    offs = tl.arange(0, MAX_STOPS)
    stops = tl.load(state_ptr + 4 + offs, mask=offs < n_stop, other=-1)
    hit = tl.sum((stops == tok).to(tl.int32), axis=0)
    go = ((n + 1) < budget) & (hit == 0)
    tl.store(state_ptr + 3, go.to(tl.int32))


MAX_STOPS = 16  # stop ids the loop checks on the device (cuda_executor.cpp kLoopMaxStops)

VARIANTS = [
    Variant(name="decode_loop_step", kernel=decode_loop_step,
            signature={"sampled_ptr": "*i32", "logprobs_ptr": "*fp32", "tokens_ptr": "*i32", "positions_ptr": "*i32",
                       "params_ptr": "*u64", "state_ptr": "*i32", "out_tokens_ptr": "*i32",
                       "out_logprobs_ptr": "*fp32"},
            constexprs={"MAX_STOPS": MAX_STOPS}, num_warps=1, num_stages=1),
    Variant(name="graph_set_condition", kernel=None, ptx="graph_condition.ptx",
            signature={"handle": "u64", "flag_ptr": "*i32"}, constexprs={}, num_warps=1, num_stages=1),
]
