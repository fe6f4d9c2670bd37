"""The dense weight products (triton_kernels/linear.py) under Triton's
interpreter on the CPU, against float64 references, on fresh random inputs of
several shapes including odd ones. Every compiled variant of the module is run
with its own constexprs (tile sizes included), so what is checked here is what
build.py compiles. The cubins run in the GPU op harness on a GPU machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from triton_interp import kernels


def bf16(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)


def f64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy()


def variants(prefix):
    return [v for v in kernels().linear.VARIANTS if v.name.startswith(prefix)]


def variant_ids(prefix):
    return [v.name for v in variants(prefix)]


# (N, K): N not a multiple of any block, K from one 32-wide block to several BLOCK_K chunks with a tail
GEMV_SHAPES = [(37, 32), (9, 96), (13, 2080), (5, 2880)]


@pytest.mark.parametrize("shape", GEMV_SHAPES, ids=lambda s: f"N{s[0]}K{s[1]}")
@pytest.mark.parametrize("name", variant_ids("linear_gemv_"))
def test_linear_gemv(rng, name, shape):
    v = {x.name: x for x in variants("linear_gemv_")}[name]
    c = v.constexprs
    N, K = shape
    m_pad, bn = c["M_PAD"], c["BLOCK_N"]
    for M in sorted({1, m_pad, max(1, m_pad - 1)}):
        rows_n = M + 4 if c["HAS_ROWS"] else M
        x = torch.from_numpy((rng.standard_normal((rows_n, K)) * rng.uniform(0.5, 3)).astype(np.float32))
        rows = torch.from_numpy(rng.permutation(rows_n)[:M].astype(np.int32))
        g = bf16(1 + 0.1 * rng.standard_normal(K))
        w = bf16(0.02 * rng.standard_normal((N, K)))
        b = bf16(0.05 * rng.standard_normal(N))
        ldy = N + 3
        if c["ACCUMULATE"]:
            y0 = rng.standard_normal((M, ldy)).astype(np.float32)
        else:
            y0 = np.full((M, ldy), np.nan, dtype=np.float32)
        y = torch.from_numpy(y0.copy())
        eps = float(rng.uniform(1e-6, 1e-4))
        k = kernels().linear
        k.linear_gemv[((N + bn - 1) // bn,)](x, rows, g, w, b, y, M, N, K, ldy, eps, **c)
        src = f64(x)[rows.numpy()] if c["HAS_ROWS"] else f64(x)[:M]
        if c["NORM"]:
            src = src / np.sqrt((src ** 2).mean(axis=1, keepdims=True) + eps) * f64(g)
        ref = src @ f64(w).T
        if c["HAS_BIAS"]:
            ref = ref + f64(b)
        if c["ACCUMULATE"]:
            ref = ref + y0[:, :N].astype(np.float64)
        got = y.numpy().astype(np.float64)
        assert not np.isnan(got[:, :N]).any(), f"M={M}: outputs not written"
        np.testing.assert_allclose(got[:, :N], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max(), err_msg=f"M={M}")
        # the row padding beyond N is never touched
        np.testing.assert_array_equal(got[:, N:], y0[:, N:].astype(np.float64))


# (M, N, K): T = 1 and 3 tokens, a full and a ragged row tile, K with a BLOCK_K tail and K = 32
GEMM_SHAPES = [(1, 50, 64), (3, 130, 96), (70, 37, 32), (64, 129, 160), (2, 20, 2880)]


@pytest.mark.parametrize("shape", GEMM_SHAPES, ids=lambda s: f"M{s[0]}N{s[1]}K{s[2]}")
@pytest.mark.parametrize("name", variant_ids("linear_gemm"))
def test_linear_gemm(rng, name, shape):
    v = {x.name: x for x in variants("linear_gemm")}[name]
    c = v.constexprs
    M, N, K = shape
    ldx, ldy = K + 32, N + 5
    xs = 1.0 + 2 * rng.random()
    if c.get("X_F32"):  # fp32 activations, not bf16-representable
        x = torch.from_numpy((xs * rng.standard_normal((M, ldx))).astype(np.float32))
    else:
        x = bf16(xs * rng.standard_normal((M, ldx)))
    w = bf16(0.02 * rng.standard_normal((N, K)))
    b = bf16(0.05 * rng.standard_normal(N))
    if c["ACCUMULATE"]:
        y0 = rng.standard_normal((M, ldy)).astype(np.float32)
    else:
        y0 = np.full((M, ldy), np.nan, dtype=np.float32)
    y = torch.from_numpy(y0.copy())
    if c["OUT_BF16"]:
        y = y.to(torch.bfloat16)
    bm, bn = c["BLOCK_M"], c["BLOCK_N"]
    kernels().linear.linear_gemm[((M + bm - 1) // bm, (N + bn - 1) // bn)](x, w, b, y, M, N, K, ldx, ldy, **c)
    ref = f64(x)[:, :K] @ f64(w).T  # bf16 inputs are exact; fp32 ones reach the dot as two bf16 parts
    if c["HAS_BIAS"]:
        ref = ref + f64(b)
    if c["ACCUMULATE"]:
        ref = ref + y0[:, :N].astype(np.float64)
    got = f64(y)
    assert not np.isnan(got[:, :N]).any()
    tol = 8e-3 if c["OUT_BF16"] else 1e-5
    np.testing.assert_allclose(got[:, :N], ref, rtol=tol, atol=tol * np.abs(ref).max())
    np.testing.assert_array_equal(got[:, N:], f64(torch.from_numpy(y0).to(y.dtype))[:, N:])


@pytest.mark.parametrize("M,nq,nkv,hd,kv_bf16", [(1, 4, 2, 64, 1), (2, 3, 1, 40, 0), (1, 2, 2, 128, 0)])
def test_qkv_rope_gemv(rng, M, nq, nkv, hd, kv_bf16):
    """The qkv product with the RMSNorm fused and the rope / KV-cache store done by the programs of each rope pair,
    against rmsnorm -> W x + b -> rotate q and k heads -> k and v into the cache, in float64."""
    k = kernels().linear
    v = {x.name: x for x in k.VARIANTS}[f"qkv_rope_gemv_m{M}_{'bf16' if kv_bf16 else 'f32'}"]
    K = 96
    N = (nq + 2 * nkv) * hd
    S, cap = 3, 11
    x = (rng.standard_normal((M, K)) * 2).astype(np.float32)
    g = bf16(rng.uniform(0.5, 1.5, K))
    W = bf16(rng.standard_normal((N, K)) * 0.1)
    b = bf16(rng.standard_normal(N) * 0.1)
    eps = 1e-5
    positions = rng.choice(40, size=M, replace=False).astype(np.int32)
    seqs = rng.integers(0, S, size=M).astype(np.int32)
    inv_freq = (1.0 / 150000.0 ** (np.arange(hd // 2) * 2 / hd)).astype(np.float32)
    scaling = float(rng.uniform(1.0, 1.5))
    dt = torch.bfloat16 if kv_bf16 else torch.float32
    seq_stride = nkv * cap * hd
    kc = torch.full((S * seq_stride,), float("nan"), dtype=dt)
    vc = torch.full((S * seq_stride,), float("nan"), dtype=dt)

    x64 = x.astype(np.float64)
    xn = x64 / np.sqrt((x64 ** 2).mean(axis=1, keepdims=True) + eps) * f64(g)
    y = xn @ f64(W).T + f64(b)
    ang = positions.astype(np.float64)[:, None] * inv_freq.astype(np.float64)[None, :]
    c, s = np.cos(ang) * scaling, np.sin(ang) * scaling
    ref = y.copy()
    for h in range(nq + nkv):
        x1, x2 = y[:, h * hd:h * hd + hd // 2], y[:, h * hd + hd // 2:(h + 1) * hd]
        ref[:, h * hd:h * hd + hd // 2] = x1 * c - x2 * s
        ref[:, h * hd + hd // 2:(h + 1) * hd] = x2 * c + x1 * s
    kref = np.full(S * seq_stride, np.nan)
    vref = np.full(S * seq_stride, np.nan)
    for t in range(M):
        for gi in range(nkv):
            at = seqs[t] * seq_stride + (gi * cap + positions[t] % cap) * hd
            kref[at:at + hd] = ref[t, (nq + gi) * hd:(nq + gi + 1) * hd]
            vref[at:at + hd] = y[t, (nq + nkv + gi) * hd:(nq + nkv + gi + 1) * hd]
    written = ~np.isnan(kref)
    tol = 1e-2 if kv_bf16 else 1e-5
    c_ = v.constexprs
    for launch in range(2):
        qkv = torch.full((M, N), float("nan"))
        k.qkv_rope_gemv[((N + c_["BLOCK_N"] - 1) // c_["BLOCK_N"],)](
            torch.from_numpy(x), g, W, b, qkv, M, N, K, eps, torch.from_numpy(positions), torch.from_numpy(seqs),
            torch.from_numpy(inv_freq), kc, vc, seq_stride, cap, scaling, nq, nkv, hd, **c_)
        np.testing.assert_allclose(f64(qkv), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())
        np.testing.assert_allclose(f64(kc)[written], kref[written], rtol=tol, atol=tol * np.abs(ref).max())
        np.testing.assert_allclose(f64(vc)[written], vref[written], rtol=tol, atol=tol * np.abs(y).max())
        assert np.isnan(f64(kc)[~written]).all() and np.isnan(f64(vc)[~written]).all()
