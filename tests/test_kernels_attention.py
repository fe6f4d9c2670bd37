"""The attention kernels (triton_kernels/attention.py) under Triton's interpreter
on the CPU, against float64 references written here in numpy: softmax over
[sink, scores] with the sink column dropped, sliding windows, rings smaller
than the context, GQA, several sequence slots in one batch. Cache entries no
query may see are NaN, so a stray read shows; outputs start as NaN, so an
unwritten element shows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from triton_interp import kernels


def bf16_round(a: np.ndarray) -> np.ndarray:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16).to(torch.float64).numpy()


def to_dev(a: np.ndarray, bf16: bool) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    return t.to(torch.bfloat16) if bf16 else t


def f64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy()


def visible(p: int, window: int) -> range:
    return range(max(0, p - window + 1) if window > 0 else 0, p + 1)


class Cache:
    """Keys/values of every (slot, kv head, position) and their ring layout;
    ring entries no listed query sees stay NaN."""

    def __init__(self, rng, S, nkv, hd, cap, queries, window, kv_bf16):
        # queries: (slot, position) pairs that will attend.
        maxpos = max(p for _, p in queries)
        self.k = rng.standard_normal((S, nkv, maxpos + 1, hd))
        self.v = rng.standard_normal((S, nkv, maxpos + 1, hd))
        if kv_bf16:
            self.k, self.v = bf16_round(self.k), bf16_round(self.v)
        self.seq_stride = nkv * cap * hd
        kc = np.full((S, nkv, cap, hd), np.nan)
        vc = np.full((S, nkv, cap, hd), np.nan)
        seen = {}
        for s, p in queries:
            for j in visible(p, window):
                at = seen.setdefault((s, j % cap), j)
                assert at == j, "the test's queries need a larger ring"
                kc[s, :, j % cap] = self.k[s, :, j]
                vc[s, :, j % cap] = self.v[s, :, j]
        self.kc = to_dev(kc.reshape(-1), kv_bf16)
        self.vc = to_dev(vc.reshape(-1), kv_bf16)


def reference(q, sinks, cache, slot, p, window, nq, nkv, hd, scale):
    """Output row [nq * hd] of one query token (q: [nq, hd] float64)."""
    out = np.empty((nq, hd))
    js = list(visible(p, window))
    for h in range(nq):
        g = h // (nq // nkv)
        k = cache.k[slot, g, js]
        v = cache.v[slot, g, js]
        s = np.concatenate([[sinks[h]], k @ q[h] * scale])
        w = np.exp(s - s.max())
        w /= w.sum()
        out[h] = w[1:] @ v
    return out.reshape(-1)


def decode_case(rng, window, cap, S, T):
    """T decode queries in S slots. A slot's ring holds positions top - cap + 1..top
    (top: its latest position); its queries see ranges inside that span, so with a
    window the context may be far longer than the ring (wrapped positions)."""
    tops = [int(rng.integers(0, 3 * cap)) if window > 0 else int(rng.integers(0, cap)) for _ in range(S)]
    queries = []
    for _ in range(T):
        s = int(rng.integers(0, S))
        lo = max(0, tops[s] - cap + window) if window > 0 else 0
        queries.append((s, int(rng.integers(lo, tops[s] + 1))))
    return queries


@pytest.mark.parametrize("kv_bf16", [0, 1])
@pytest.mark.parametrize("out_bf16", [0, 1])
@pytest.mark.parametrize("num_splits", [1, 4, 16, 64])
@pytest.mark.parametrize("nq,nkv,hd,window,cap,S,T", [
    (4, 2, 16, 0, 70, 2, 3),      # full attention, two slots
    (8, 1, 40, 5, 13, 3, 4),      # one kv head, head_dim 40, window 5, ring of 13 wrapped
    (6, 3, 32, 0, 200, 1, 2),     # more keys than a block, group of 2
    (20, 1, 16, 33, 40, 2, 3),    # a group larger than BLOCK_G, ring wrapped
])
def test_decode_combine(rng, kv_bf16, out_bf16, num_splits, nq, nkv, hd, window, cap, S, T):
    k = kernels().attention
    queries = decode_case(rng, window, cap, S, T)
    cache = Cache(rng, S, nkv, hd, cap, queries, window, kv_bf16)
    qkv_w = (nq + 2 * nkv) * hd + 3  # a stride that is not the packed width
    qkv = rng.standard_normal((T, qkv_w)) * 2.0
    qkv_t = torch.from_numpy(qkv.astype(np.float32))
    positions = torch.tensor([p for _, p in queries], dtype=torch.int32)
    seqs = torch.tensor([s for s, _ in queries], dtype=torch.int32)
    sinks = to_dev(rng.standard_normal(nq) * 2.0, True)
    scale = 1.0 / np.sqrt(hd)
    part_ml = torch.full((T, nq, num_splits, 2), float("nan"))
    part_o = torch.full((T, nq, num_splits, hd), float("nan"))
    bd = 64 if hd <= 64 else 128
    k.attention_decode[(T, nkv, num_splits)](qkv_t, positions, seqs, cache.kc, cache.vc, part_ml, part_o, T, qkv_w,
                                             cache.seq_stride, cap, window, scale, nq, nkv, hd,
                                             NUM_SPLITS=num_splits, KV_BF16=kv_bf16, BLOCK_G=16, BLOCK_N=64,
                                             BLOCK_D=bd)
    assert not torch.isnan(part_ml).any() and not torch.isnan(part_o).any()
    # Splits with no keys: m = -inf, l = 0, o = 0.
    ml = part_ml.numpy()
    empty = np.isneginf(ml[..., 0])
    assert (ml[..., 1][empty] == 0).all() and (part_o.numpy()[empty] == 0).all()
    if num_splits > 1 and any(p - (max(0, p - window + 1) if window > 0 else 0) + 1 < num_splits
                              for _, p in queries):
        assert empty.any()
    out_stride = nq * hd + 5
    out = torch.full((T, out_stride), float("nan"), dtype=torch.bfloat16 if out_bf16 else torch.float32)
    k.attention_combine[(T, nq)](part_ml, part_o, sinks, out, T, nq, hd, out_stride, NUM_SPLITS=num_splits,
                                 OUT_BF16=out_bf16, BLOCK_D=16)
    got = f64(out)
    assert np.isnan(got[:, nq * hd:]).all()  # nothing written past the heads
    got = got[:, :nq * hd]
    q64 = f64(qkv_t)
    for t, (s, p) in enumerate(queries):
        ref = reference(q64[t, :nq * hd].reshape(nq, hd), f64(sinks), cache, s, p, window, nq, nkv, hd, scale)
        tol = 8e-3 if out_bf16 else 2e-5
        np.testing.assert_allclose(got[t], ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("kv_bf16", [0, 1])
@pytest.mark.parametrize("out_bf16", [0, 1])
@pytest.mark.parametrize("nq,nkv,hd,window,cap,S,T", [
    (4, 2, 16, 0, 70, 2, 3),      # full attention, two slots
    (8, 1, 40, 5, 13, 3, 4),      # one kv head, head_dim 40, window 5, ring of 13 wrapped
    (20, 1, 16, 33, 40, 2, 3),    # a group larger than BLOCK_G, ring wrapped
])
def test_decode_direct(rng, kv_bf16, out_bf16, nq, nkv, hd, window, cap, S, T):
    """attention_decode_direct (one split, normalised in the same launch) against the float64 reference,
    and bitwise against attention_decode with one split followed by attention_combine."""
    k = kernels().attention
    queries = decode_case(rng, window, cap, S, T)
    cache = Cache(rng, S, nkv, hd, cap, queries, window, kv_bf16)
    qkv_w = (nq + 2 * nkv) * hd + 3
    qkv_t = torch.from_numpy((rng.standard_normal((T, qkv_w)) * 2.0).astype(np.float32))
    positions = torch.tensor([p for _, p in queries], dtype=torch.int32)
    seqs = torch.tensor([s for s, _ in queries], dtype=torch.int32)
    sinks = to_dev(rng.standard_normal(nq) * 2.0, True)
    scale = 1.0 / np.sqrt(hd)
    bd = 64 if hd <= 64 else 128
    out_stride = nq * hd + 5
    dtype = torch.bfloat16 if out_bf16 else torch.float32
    out = torch.full((T, out_stride), float("nan"), dtype=dtype)
    k.attention_decode_direct[(T, nkv)](qkv_t, positions, seqs, cache.kc, cache.vc, sinks, out, T, qkv_w, out_stride,
                                        cache.seq_stride, cap, window, scale, nq, nkv, hd, KV_BF16=kv_bf16,
                                        OUT_BF16=out_bf16, BLOCK_G=16, BLOCK_N=64, BLOCK_D=bd)
    part_ml = torch.full((T, nq, 1, 2), float("nan"))
    part_o = torch.full((T, nq, 1, hd), float("nan"))
    k.attention_decode[(T, nkv, 1)](qkv_t, positions, seqs, cache.kc, cache.vc, part_ml, part_o, T, qkv_w,
                                    cache.seq_stride, cap, window, scale, nq, nkv, hd, NUM_SPLITS=1, KV_BF16=kv_bf16,
                                    BLOCK_G=16, BLOCK_N=64, BLOCK_D=bd)
    two = torch.full((T, out_stride), float("nan"), dtype=dtype)
    k.attention_combine[(T, nq)](part_ml, part_o, sinks, two, T, nq, hd, out_stride, NUM_SPLITS=1,
                                 OUT_BF16=out_bf16, BLOCK_D=16)
    got = f64(out)
    assert np.isnan(got[:, nq * hd:]).all()
    np.testing.assert_array_equal(got[:, :nq * hd], f64(two)[:, :nq * hd])
    q64 = f64(qkv_t)
    for t, (s, p) in enumerate(queries):
        ref = reference(q64[t, :nq * hd].reshape(nq, hd), f64(sinks), cache, s, p, window, nq, nkv, hd, scale)
        tol = 8e-3 if out_bf16 else 2e-5
        np.testing.assert_allclose(got[t, :nq * hd], ref, rtol=tol, atol=tol * np.abs(ref).max())


def prefill_case(rng, S, lengths, starts, block_m):
    """Rows of S sequences (slot s: lengths[s] tokens from position starts[s]), shuffled
    slot order, cut into tiles of at most block_m rows (some shorter)."""
    order = rng.permutation(S)
    rows, tiles = [], []
    for s in order:
        n, p0 = lengths[s], starts[s]
        i = 0
        while i < n:
            c = int(min(n - i, block_m if rng.random() < 0.6 else rng.integers(1, block_m + 1)))
            tiles.append((len(rows), c, int(s), p0 + i))
            rows += [(int(s), p0 + i + j) for j in range(c)]
            i += c
    return rows, tiles


@pytest.mark.parametrize("kv_bf16", [0, 1])
@pytest.mark.parametrize("out_bf16", [0, 1])
@pytest.mark.parametrize("nq,nkv,hd,window,cap,lengths,starts,block_m", [
    (4, 2, 16, 0, 200, [37, 21], [0, 90], 16),       # full attention, a prompt and a continued chunk
    (8, 1, 40, 7, 40, [30], [45], 32),               # window 7 < sequence, ring of 40 wrapped
    (6, 3, 32, 20, 64, [40, 9, 33], [100, 0, 5], 32),  # three slots, window, wrapped ring
    (4, 4, 64, 0, 300, [130], [0], 128),             # head_dim 64, a full tile of 128 rows and a short one
])
def test_prefill(rng, kv_bf16, out_bf16, nq, nkv, hd, window, cap, lengths, starts, block_m):
    k = kernels().attention
    S = len(lengths)
    rows, tiles = prefill_case(rng, S, lengths, starts, block_m)
    T = len(rows)
    cache = Cache(rng, S, nkv, hd, cap, rows, window, kv_bf16)
    qkv_w = (nq + 2 * nkv) * hd
    qkv = torch.from_numpy((rng.standard_normal((T, qkv_w)) * 2.0).astype(np.float32))
    sinks = to_dev(rng.standard_normal(nq) * 2.0, True)
    scale = 1.0 / np.sqrt(hd)
    tiles_t = torch.tensor(tiles, dtype=torch.int32).reshape(-1, 4)
    out_stride = nq * hd + 7
    out = torch.full((T, out_stride), float("nan"), dtype=torch.bfloat16 if out_bf16 else torch.float32)
    bd = 64 if hd <= 64 else 128
    k.attention_prefill[(len(tiles), nq)](qkv, tiles_t, cache.kc, cache.vc, sinks, out, len(tiles), qkv_w,
                                          out_stride, cache.seq_stride, cap, window, scale, nq, nkv, hd,
                                          KV_BF16=kv_bf16, OUT_BF16=out_bf16, BLOCK_M=block_m, BLOCK_N=16,
                                          BLOCK_D=bd)
    got = f64(out)
    assert np.isnan(got[:, nq * hd:]).all()
    got = got[:, :nq * hd]
    assert not np.isnan(got).any()
    # The kernel multiplies bf16-rounded q and k on the tensor cores: so does the reference, which
    # leaves the bf16 rounding of the probabilities (and of the output) as the difference.
    q64 = bf16_round(f64(qkv))
    kref = cache.k if kv_bf16 else bf16_round(cache.k)
    exact = Cache.__new__(Cache)
    exact.k, exact.v = kref, cache.v
    for t, (s, p) in enumerate(rows):
        ref = reference(q64[t, :nq * hd].reshape(nq, hd), f64(sinks), exact, s, p, window, nq, nkv, hd, scale)
        np.testing.assert_allclose(got[t], ref, rtol=1e-2, atol=1e-2 * np.abs(ref).max())
