"""The device loop's step kernel (triton_kernels/loop.py, decode_loop_step)
under Triton's interpreter, against its contract written out in Python, on
fresh random states of 1 to 64 rows: the results land at the loop's count,
the next step's inputs advance, rows meeting a stop id are marked done, and
the go flag falls exactly when the budget is spent or every row is done.
(graph_set_condition is PTX: it runs on a GPU only, through tests/test_cuda.py.)"""

from __future__ import annotations

import numpy as np
import torch

from triton_interp import kernels

MAX_STOPS = 16
BLOCK_R = 64


def test_decode_loop_step(rng):
    k = kernels().loop
    assert (k.MAX_STOPS, k.BLOCK_R) == (MAX_STOPS, BLOCK_R)
    for trial in range(60):
        R = int(rng.choice([1, 1, 2, 5, 33, 64]))
        budget = int(rng.integers(1, 60))
        n = budget - 1 if trial % 7 == 0 else int(rng.integers(0, budget))  # sometimes the budget's last step
        n_stop = int(rng.integers(0, MAX_STOPS + 1))
        stops = rng.integers(0, 50, size=n_stop)
        hit = rng.random(R) < (0.5 if trial % 3 else 1.0)
        tok = np.where(hit & (n_stop > 0), stops[rng.integers(max(n_stop, 1), size=R)] if n_stop else 0,
                       rng.integers(50, 1 << 30, size=R)).astype(np.int32)
        done0 = (rng.random(R) < 0.3).astype(np.int32)
        lp = (-rng.exponential(size=R)).astype(np.float32)
        state = np.full(4 + MAX_STOPS + BLOCK_R, -7, np.int32)
        state[:3] = (n, budget, n_stop)
        state[4:4 + n_stop] = stops
        state[4 + MAX_STOPS: 4 + MAX_STOPS + R] = done0
        out_tok = np.full((budget, R), -5, np.int32)
        out_lp = np.full((budget, R), np.nan, np.float32)
        positions = rng.integers(0, 1 << 20, size=R).astype(np.int32)
        counters = rng.integers(0, 1 << 63, size=R, dtype=np.uint64)
        params = np.zeros((R, 4), np.uint64)
        params[:, 2] = counters
        params[:, 0] = 0x3F80000000000000  # the other fields stay as they are
        t_state, t_tok, t_lp = (torch.from_numpy(a.copy()) for a in (state, out_tok, out_lp))
        t_tokens = torch.full((R,), -1, dtype=torch.int32)
        t_pos = torch.from_numpy(positions.copy())
        t_params = torch.from_numpy(params.copy())
        k.decode_loop_step[(1,)](torch.from_numpy(tok), torch.from_numpy(lp), t_tokens, t_pos, t_params, t_state,
                                 t_tok, t_lp, R, MAX_STOPS=MAX_STOPS, BLOCK_R=BLOCK_R)
        want = state.copy()
        done = done0 | np.isin(tok, stops[:n_stop]).astype(np.int32)
        want[0] = n + 1
        want[3] = int(n + 1 < budget and not done.all())
        want[4 + MAX_STOPS: 4 + MAX_STOPS + R] = done
        np.testing.assert_array_equal(t_state.numpy(), want)
        want_tok = out_tok.copy()
        want_tok[n] = tok
        np.testing.assert_array_equal(t_tok.numpy(), want_tok)
        np.testing.assert_array_equal(t_lp.numpy()[n], lp)
        assert np.isnan(np.delete(t_lp.numpy(), n, axis=0)).all()
        np.testing.assert_array_equal(t_tokens.numpy(), tok)
        np.testing.assert_array_equal(t_pos.numpy(), positions + 1)
        want_params = params.copy()
        want_params[:, 2] += np.uint64(1)
        np.testing.assert_array_equal(t_params.numpy(), want_params)
