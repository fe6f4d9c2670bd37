"""The device loop's step kernel (triton_kernels/loop.py, decode_loop_step)
under Triton's interpreter, against its contract written out in Python, on
fresh random states: the results land at the loop's count, the next step's
inputs advance, and the go flag falls exactly when the budget is spent or a
stop id comes. (graph_set_condition is PTX: it runs on a GPU only, through
tests/test_cuda.py.)"""

from __future__ import annotations

import numpy as np
import torch

from triton_interp import kernels

MAX_STOPS = 16


def test_decode_loop_step(rng):
    k = kernels().loop
    assert k.MAX_STOPS == MAX_STOPS
    for trial in range(40):
        budget = int(rng.integers(1, 300))
        n = int(rng.integers(0, budget))
        n_stop = int(rng.integers(0, MAX_STOPS + 1))
        stops = rng.integers(0, 50, size=n_stop)
        tok = int(stops[rng.integers(n_stop)]) if n_stop and rng.random() < 0.4 else int(rng.integers(50, 1 << 30))
        if trial % 7 == 0:
            n = budget - 1  # the budget's last step
        lp = np.float32(-rng.exponential())
        state = np.full(4 + MAX_STOPS, -7, np.int32)
        state[:3] = (n, budget, n_stop)
        state[4:4 + n_stop] = stops
        out_tok = np.full(budget, -5, np.int32)
        out_lp = np.full(budget, np.nan, np.float32)
        position = int(rng.integers(0, 1 << 20))
        counter = int(rng.integers(0, 1 << 63))
        params = torch.tensor([0, 0, counter, 0], dtype=torch.uint64)
        t_state, t_tok, t_lp = torch.from_numpy(state.copy()), torch.from_numpy(out_tok), torch.from_numpy(out_lp)
        tokens = torch.tensor([-1], dtype=torch.int32)
        positions = torch.tensor([position], dtype=torch.int32)
        k.decode_loop_step[(1,)](torch.tensor([tok], dtype=torch.int32), torch.tensor([lp]), tokens, positions,
                                 params, t_state, t_tok, t_lp, MAX_STOPS=MAX_STOPS)
        want_state = state.copy()
        want_state[0] = n + 1
        want_state[3] = int(n + 1 < budget and tok not in stops.tolist())
        np.testing.assert_array_equal(t_state.numpy(), want_state)
        want_tok = np.full(budget, -5, np.int32)
        want_tok[n] = tok
        np.testing.assert_array_equal(t_tok.numpy(), want_tok)
        assert t_lp.numpy()[n] == lp and np.isnan(np.delete(t_lp.numpy(), n)).all()
        assert tokens.item() == tok and positions.item() == position + 1
        assert int(params[2]) == counter + 1 and int(params[0]) == 0 and int(params[3]) == 0
