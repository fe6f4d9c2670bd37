"""The small Triton kernels (triton_kernels/elementwise.py) under Triton's
interpreter on the CPU, against float64 references, on fresh random inputs of
several shapes including odd ones. Their compiled cubins run in the GPU op
harness (cpp/tests/test_ops.cpp) on a GPU machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from triton_interp import kernels


def bf16(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)


def f64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy()


@pytest.mark.parametrize("T,H,V", [(1, 64, 50), (5, 96, 300), (3, 2880, 17)])
def test_embed(rng, T, H, V):
    k = kernels().elementwise
    emb = bf16(rng.standard_normal((V, H)))
    tokens = torch.from_numpy(rng.integers(0, V, size=T).astype(np.int32))
    x = torch.full((T, H), float("nan"))
    k.embed[(T, (H + 63) // 64)](tokens, emb, x, H, BLOCK_H=64)
    np.testing.assert_array_equal(x.numpy(), emb.float().numpy()[tokens.numpy()])


@pytest.mark.parametrize("rows", [0, 1])
@pytest.mark.parametrize("out_bf16", [0, 1])
@pytest.mark.parametrize("R,H", [(1, 64), (4, 96), (3, 2880)])
def test_rmsnorm(rng, rows, out_bf16, R, H):
    k = kernels().elementwise
    n = R + 3
    x = torch.from_numpy((rng.standard_normal((n, H)) * rng.uniform(0.1, 10)).astype(np.float32))
    w = bf16(rng.standard_normal(H))
    idx = torch.from_numpy(rng.permutation(n)[:R].astype(np.int32))
    y = torch.full((R, H), float("nan"), dtype=torch.bfloat16 if out_bf16 else torch.float32)
    eps = float(rng.uniform(1e-6, 1e-4))
    k.rmsnorm[(R,)](x, idx, w, y, R, H, eps, HAS_ROWS=rows, OUT_BF16=out_bf16, BLOCK_H=64)
    src = f64(x)[idx.numpy()] if rows else f64(x)[:R]
    ref = src / np.sqrt((src ** 2).mean(axis=1, keepdims=True) + eps) * f64(w)
    tol = 8e-3 if out_bf16 else 1e-5
    np.testing.assert_allclose(f64(y), ref, rtol=tol, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("kv_bf16", [0, 1])
@pytest.mark.parametrize("nq,nkv,hd", [(4, 2, 16), (8, 1, 40), (64, 8, 64)])
def test_rope_kv_store(rng, kv_bf16, nq, nkv, hd):
    k = kernels().elementwise
    T, S, cap = 5, 3, 11
    qkv_w = (nq + 2 * nkv) * hd
    qkv = torch.from_numpy(rng.standard_normal((T, qkv_w)).astype(np.float32))
    positions = torch.from_numpy(rng.integers(0, 40, size=T).astype(np.int32))
    seqs = torch.from_numpy(rng.integers(0, S, size=T).astype(np.int32))
    inv_freq = torch.from_numpy((1.0 / 150000.0 ** (np.arange(hd // 2) * 2 / hd)).astype(np.float32))
    scaling = float(rng.uniform(1.0, 1.5))
    dt = torch.bfloat16 if kv_bf16 else torch.float32
    seq_stride = nkv * cap * hd
    kc = torch.full((S * seq_stride,), float("nan"), dtype=dt)
    vc = torch.full((S * seq_stride,), float("nan"), dtype=dt)
    orig = f64(qkv).copy()
    half = max(16, 1 << (hd // 2 - 1).bit_length())
    k.rope_kv_store[(T, nq + nkv)](qkv, positions, seqs, inv_freq, kc, vc, T, qkv_w, seq_stride, cap, scaling,
                                   nq, nkv, hd, KV_BF16=kv_bf16, BLOCK_HALF=half)
    ang = positions.numpy().astype(np.float64)[:, None] * f64(inv_freq)[None, :]
    c, s = np.cos(ang) * scaling, np.sin(ang) * scaling
    ref = orig.copy()
    for h in range(nq + nkv):
        x1, x2 = orig[:, h * hd:h * hd + hd // 2], orig[:, h * hd + hd // 2:(h + 1) * hd]
        ref[:, h * hd:h * hd + hd // 2] = x1 * c - x2 * s
        ref[:, h * hd + hd // 2:(h + 1) * hd] = x2 * c + x1 * s
    np.testing.assert_allclose(f64(qkv), ref, rtol=1e-5, atol=1e-5)
    tol = 1e-2 if kv_bf16 else 1e-5
    kref = np.full(S * seq_stride, np.nan)
    vref = np.full(S * seq_stride, np.nan)
    for t in range(T):  # later tokens overwrite earlier ones in the same slot, as in the kernel's grid order
        for g in range(nkv):
            at = seqs[t].item() * seq_stride + (g * cap + positions[t].item() % cap) * hd
            kref[at:at + hd] = ref[t, (nq + g) * hd:(nq + g + 1) * hd]
            vref[at:at + hd] = orig[t, (nq + nkv + g) * hd:(nq + nkv + g + 1) * hd]
    written = ~np.isnan(kref)
    slots = {(seqs[t].item(), positions[t].item() % cap) for t in range(T)}
    if len(slots) == T:  # no two tokens share a slot: every written element is determined
        np.testing.assert_allclose(f64(kc)[written], kref[written], rtol=tol, atol=tol)
        np.testing.assert_allclose(f64(vc)[written], vref[written], rtol=tol, atol=tol)
        assert np.isnan(f64(kc)[~written]).all() and np.isnan(f64(vc)[~written]).all()


@pytest.mark.parametrize("T,E,K", [(1, 4, 2), (3, 32, 4), (2, 128, 4), (2, 7, 7)])
def test_topk_softmax(rng, T, E, K):
    k = kernels().elementwise
    logits = rng.standard_normal((T, E)).astype(np.float32)
    logits[0, 1] = logits[0, 0]  # a tie: the lower id first
    lt = torch.from_numpy(logits)
    ids = torch.full((T, K), -1, dtype=torch.int32)
    wts = torch.full((T, K), float("nan"))
    be = 32 if E <= 32 else 128
    k.topk_softmax[(T,)](lt, ids, wts, T, E, K, BLOCK_E=be)
    for t in range(T):
        order = sorted(range(E), key=lambda e: (-logits[t, e], e))[:K]
        assert ids[t].tolist() == order
        sel = logits[t, order].astype(np.float64)
        ref = np.exp(sel - sel.max()) / np.exp(sel - sel.max()).sum()
        np.testing.assert_allclose(wts[t].numpy(), ref, rtol=1e-5)


def xg_decode(y: torch.Tensor) -> np.ndarray:
    """The xg form (bf16 of 2^64 x, each group of 8 in the order 0 4 1 5 2 6 3 7) back to float64 x, by rows."""
    v = f64(y)
    k = np.arange(v.shape[-1])
    j = k % 8
    return v[..., k - j + 2 * (j % 4) + j // 4] / 2.0 ** 64


@pytest.mark.parametrize("form", ["f32", "bf16", "xg"])
@pytest.mark.parametrize("T,H,E,K,BE", [(1, 64, 4, 2, 32), (3, 2880, 32, 4, 32), (2, 96, 20, 4, 32),
                                        (2, 48, 7, 7, 32)])
def test_moe_route(rng, form, T, H, E, K, BE):
    """RMSNorm, router product and top-k softmax in one program per token, against float64."""
    k = kernels().elementwise
    eps = float(rng.uniform(1e-6, 1e-4))
    x = (rng.standard_normal((T, H)) * rng.uniform(0.5, 3)).astype(np.float32)
    g = bf16(rng.uniform(0.5, 1.5, H))
    rw = bf16(rng.standard_normal((E, H)) / np.sqrt(H))
    rb = bf16(rng.standard_normal(E) * 0.1)
    if E > 1:  # a tie at token 0: expert 1's row and bias equal expert 0's, so the lower id must come first
        rw[1] = rw[0]
        rb[1] = rb[0]
    xn = torch.full((T, H), float("nan"), dtype=torch.float32 if form == "f32" else torch.bfloat16)
    ids = torch.full((T, K), -1, dtype=torch.int32)
    wts = torch.full((T, K), float("nan"))
    bk = 8192 // BE if H >= 8192 // BE else 16
    k.moe_route[(T,)](torch.from_numpy(x), g, eps, rw, rb, xn, ids, wts, H, E, K, OUT_BF16=int(form != "f32"),
                      BLOCK_E=BE, BLOCK_K=bk, XG=int(form == "xg"))
    x64 = x.astype(np.float64)
    ref_xn = x64 / np.sqrt((x64 ** 2).mean(axis=1, keepdims=True) + eps) * f64(g)
    tol = 1e-5 if form == "f32" else 8e-3
    got_xn = xg_decode(xn) if form == "xg" else f64(xn)
    np.testing.assert_allclose(got_xn, ref_xn, rtol=tol, atol=tol * np.abs(ref_xn).max())
    logits = ref_xn @ f64(rw).T + f64(rb)
    for t in range(T):
        order = sorted(range(E), key=lambda e: (-logits[t, e], e))
        got = ids[t].tolist()
        # the float64 order, except where two logits are within the fp32 rounding of each other
        for j in range(K):
            if got[j] != order[j]:
                assert abs(logits[t, got[j]] - logits[t, order[j]]) < 1e-5 * np.abs(logits[t]).max()
        if t == 0 and E > 1 and {0, 1} <= set(got):
            assert got.index(0) < got.index(1)
        sel = logits[t, got]
        ref = np.exp(sel - sel.max()) / np.exp(sel - sel.max()).sum()
        np.testing.assert_allclose(wts[t].numpy(), ref, rtol=1e-4)


@pytest.mark.parametrize("xg", [0, 1])
def test_cast_bf16(rng, xg):
    k = kernels().elementwise
    n = 2 * 1024 + (24 if xg else 13)   # the xg form permutes within groups of 8
    x = torch.from_numpy((rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, size=n)).astype(np.float32))
    y = torch.full((n,), float("nan"), dtype=torch.bfloat16)
    k.cast_bf16[((n + 1023) // 1024,)](x, y, n, BLOCK=1024, XG=xg)
    if xg:   # 2^64 x in the xg order: undo both, then the same check
        y = torch.from_numpy(xg_decode(y).astype(np.float32)).to(torch.bfloat16)
    # The GPU rounds to nearest even (as torch does); Triton's interpreter truncates: either way
    # the result is one of the two bf16 neighbours of x.
    bits = x.numpy().view(np.uint32)
    down = (bits & 0xFFFF0000).view(np.float32)
    up_bits = (bits & 0xFFFF0000) + 0x10000
    up = up_bits.astype(np.uint32).view(np.float32)
    got = y.float().numpy()
    assert np.all((got == down) | (got == up)) and not np.isnan(got).any()


def test_read_sum(rng):
    k = kernels().elementwise
    n = 3 * 1024 * 8 + 77
    x = torch.from_numpy(rng.integers(-1000, 1000, size=n).astype(np.int64))
    grid = (n + 1024 * 8 - 1) // (1024 * 8)
    out = torch.zeros(grid, dtype=torch.int64)
    k.read_sum[(grid,)](x, n, out, BLOCK=1024, ITERS=8)
    assert out.sum().item() == x.sum().item()
