"""The device-side decoding loop: a CUDA graph whose WHILE conditional node
repeats one decoding step (forward pass and sampling of R sequences, one token
each) until a step budget is spent or every sequence has met a stop id, so
the host launches once for many tokens (cpp/src/backend/cuda/cuda_executor.cpp,
decode_loop).

Contracts (R rows, the step's sequences; state laid out as
[count, budget, stop count, go, stops[MAX_STOPS], done[BLOCK_R]]):
  decode_loop_step(sampled[R] i32, logprobs[R] fp32, tokens[R] i32, positions[R] i32,
                   params[R, 4] u64, state i32, out_tokens[budget, R] i32,
                   out_logprobs[budget, R] fp32, R)                 grid (1,)
      runs after the step's sampling; with n = state[0]: out_tokens[n, r] =
      sampled[r], out_logprobs[n, r] = logprobs[r]; the next step's inputs:
      tokens[r] = sampled[r], positions[r] += 1 and the sampling counter
      (SampleParams.counter: params[r, 2]) += 1; done[r] |= sampled[r] is one of
      the stop ids state[4 .. 4 + stop count); state[0] = n + 1; state[3] = 1
      while the loop goes on (n + 1 < budget and some row is not done), else 0.
  graph_set_condition(handle u64, flag *i32)                     grid (1,), 1 warp
      cudaGraphSetConditional(handle, *flag) from thread 0: hand-written PTX
      (graph_condition.ptx), since Triton cannot call the device runtime.
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant, pdl_begin


@triton.jit
def decode_loop_step(sampled_ptr, logprobs_ptr, tokens_ptr, positions_ptr, params_ptr, state_ptr, out_tokens_ptr,
                     out_logprobs_ptr, R, MAX_STOPS: tl.constexpr, BLOCK_R: tl.constexpr):
    pdl_begin()
    rows = tl.arange(0, BLOCK_R)
    m = rows < R
    tok = tl.load(sampled_ptr + rows, mask=m, other=0)
    lp = tl.load(logprobs_ptr + rows, mask=m, other=0.0)
    n = tl.load(state_ptr)
    budget = tl.load(state_ptr + 1)
    n_stop = tl.load(state_ptr + 2)
    tl.store(out_tokens_ptr + n * R + rows, tok, mask=m)
    tl.store(out_logprobs_ptr + n * R + rows, lp, mask=m)
    tl.store(tokens_ptr + rows, tok, mask=m)
    tl.store(positions_ptr + rows, tl.load(positions_ptr + rows, mask=m, other=0) + 1, mask=m)
    counter = params_ptr + rows * 4 + 2
    tl.store(counter, tl.load(counter, mask=m, other=0) + 1, mask=m)
    s = tl.arange(0, MAX_STOPS)
    stops = tl.load(state_ptr + 4 + s, mask=s < n_stop, other=-1)
    hit = tl.sum((tok[:, None] == stops[None, :]).to(tl.int32), axis=1) > 0
    done_ptr = state_ptr + 4 + MAX_STOPS + rows
    done = (tl.load(done_ptr, mask=m, other=1) != 0) | hit
    tl.store(done_ptr, done.to(tl.int32), mask=m)
    live = tl.sum((m & (done == 0)).to(tl.int32), axis=0)
    go = ((n + 1) < budget) & (live > 0)
    tl.store(state_ptr + 3, go.to(tl.int32))
    tl.store(state_ptr, n + 1)


MAX_STOPS = 16  # stop ids the loop checks on the device (cuda_executor.cpp kLoopMaxStops)
BLOCK_R = 64    # rows of a looped step at most (cuda_executor.cpp kMaxGraphTokens)

VARIANTS = [
    Variant(name="decode_loop_step", kernel=decode_loop_step,
            signature={"sampled_ptr": "*i32", "logprobs_ptr": "*fp32", "tokens_ptr": "*i32", "positions_ptr": "*i32",
                       "params_ptr": "*u64", "state_ptr": "*i32", "out_tokens_ptr": "*i32",
                       "out_logprobs_ptr": "*fp32", "R": "i32"},
            constexprs={"MAX_STOPS": MAX_STOPS, "BLOCK_R": BLOCK_R}, num_warps=1, num_stages=1),
    Variant(name="graph_set_condition", kernel=None, ptx="graph_condition.ptx",
            signature={"handle": "u64", "flag_ptr": "*i32"}, constexprs={}, num_warps=1, num_stages=1),
]
