"""The mixture-of-experts kernels (triton_kernels/moe.py) under Triton's
interpreter on the CPU, against float64 references computed from the MXFP4
weights by an independent NumPy decoder of the checkpoint layout, on fresh
random inputs: odd shapes, T = 1 and 3, uneven expert loads, experts without
tokens, every token on one expert. Each kernel runs with its compiled
variant's constexprs. The cubins run in the GPU op harness on a GPU machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from test_kernels_elementwise import xg_decode
from triton_interp import kernels

FP4 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6])
LIMIT, ALPHA = 7.0, 1.702


def variant(name):
    return {v.name: v for v in kernels().moe.VARIANTS}[name]


def bf16(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.bfloat16)


def f64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy()


def decode_mxfp4(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """[E, N, K/32, 16] u8 blocks + [E, N, K/32] u8 scales -> float64 [E, N, K]: element k of a row is
    nibble (k % 32) % 2 (low first) of byte (k % 32) // 2 of block k // 32, times 2^(scale - 127)."""
    nib = np.stack([blocks & 0xF, blocks >> 4], axis=-1).reshape(*blocks.shape[:-1], 32)
    vals = FP4[nib] * np.ldexp(1.0, scales.astype(np.int64) - 127)[..., None]
    return vals.reshape(*blocks.shape[:-2], -1)


def random_expert_weights(rng, E, N, K):
    blocks = rng.integers(0, 256, size=(E, N, K // 32, 16), dtype=np.uint8)
    scales = rng.integers(127 - 8, 128, size=(E, N, K // 32), dtype=np.uint8)
    bias = bf16(0.1 * rng.standard_normal((E, N)))
    return torch.from_numpy(blocks), torch.from_numpy(scales), bias


def swiglu(h: np.ndarray) -> np.ndarray:
    g = np.minimum(h[..., 0::2], LIMIT)
    u = np.clip(h[..., 1::2], -LIMIT, LIMIT)
    return (u + 1) * g / (1 + np.exp(-ALPHA * g))


def routing(rng, T, E, K_TOP, mode="random"):
    """ids [T, K_TOP] (distinct experts per token) and weights [T, K_TOP] summing to 1."""
    if mode == "one":          # every token on the same experts (expert 0 first)
        ids = np.tile(np.arange(K_TOP), (T, 1))
    elif mode == "skewed":     # uneven loads; expert E - 1 never chosen when E > K_TOP + 1
        ids = np.stack([rng.choice(E - 1 if E > K_TOP + 1 else E, K_TOP, replace=False,
                                   p=None) for _ in range(T)])
        ids[: T // 2 + 1, 0] = 0
        for t in range(T):     # keep the experts of a token distinct after forcing expert 0
            row = list(dict.fromkeys(ids[t].tolist()))
            extra = [e for e in range(E) if e not in row]
            ids[t] = (row + extra)[:K_TOP]
    else:
        ids = np.stack([rng.choice(E, K_TOP, replace=False) for _ in range(T)])
    w = rng.random((T, K_TOP)) + 0.1
    return ids.astype(np.int32), (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


# T, H, I, E, K_TOP: the long axis (K = H for mlp1, K = I for mlp2) once at the real 2880 (three BLOCK_KB chunks,
# the last one partial), rows not a multiple of the block, K_TOP above and below the mlp2 kernel's J slots
MLP1_SHAPES = [(1, 64, 40, 4, 2), (3, 96, 32, 5, 4), (2, 2880, 8, 3, 2)]
MLP2_SHAPES = [(1, 64, 96, 4, 2), (3, 18, 64, 6, 5), (2, 8, 2880, 3, 2)]


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
@pytest.mark.parametrize("name", ["moe_mlp1_gemv", "moe_mlp1_gemv1"])
@pytest.mark.parametrize("T,H,I,E,K_TOP", MLP1_SHAPES)
def test_moe_mlp1_gemv(rng, T, H, I, E, K_TOP, name):
    v = variant(name)
    bn = v.constexprs["BLOCK_N"]
    xn = torch.from_numpy((rng.standard_normal((T, H)) * rng.uniform(0.5, 2)).astype(np.float32))
    ids, _ = routing(rng, T, E, K_TOP)
    blocks, scales, bias = random_expert_weights(rng, E, 2 * I, H)
    act = torch.full((T * K_TOP, I), float("nan"))
    getattr(kernels().moe, name)[(T * K_TOP, (2 * I + bn - 1) // bn)](
        xn, torch.from_numpy(ids.reshape(-1)), blocks, scales, bias, act, T, H, I, K_TOP, LIMIT, ALPHA, **v.constexprs)
    W = decode_mxfp4(blocks.numpy(), scales.numpy())
    ref = np.stack([swiglu(W[e] @ f64(xn)[p // K_TOP] + f64(bias)[e]) for p, e in enumerate(ids.reshape(-1))])
    got = act.numpy().astype(np.float64)
    assert not np.isnan(got).any()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["moe_mlp2_gemv", "moe_mlp2_gemv1"])
@pytest.mark.parametrize("T,H,I,E,K_TOP", MLP2_SHAPES)
def test_moe_mlp2_gemv(rng, T, H, I, E, K_TOP, name):
    v = variant(name)
    bn = v.constexprs["BLOCK_N"]
    act = torch.from_numpy(rng.standard_normal((T * K_TOP, I)).astype(np.float32))
    ids, wts = routing(rng, T, E, K_TOP)
    blocks, scales, bias = random_expert_weights(rng, E, H, I)
    x0 = rng.standard_normal((T, H)).astype(np.float32)
    x = torch.from_numpy(x0.copy())
    getattr(kernels().moe, name)[(T, (H + bn - 1) // bn)](
        act, torch.from_numpy(ids.reshape(-1)), torch.from_numpy(wts.reshape(-1)), blocks, scales, bias, x,
        T, H, I, K_TOP, **v.constexprs)
    W = decode_mxfp4(blocks.numpy(), scales.numpy())
    ref = x0.astype(np.float64).copy()
    for t in range(T):
        for j in range(K_TOP):
            e = ids[t, j]
            ref[t] += float(wts[t, j]) * (W[e] @ f64(act)[t * K_TOP + j] + f64(bias)[e])
    delta = x.numpy().astype(np.float64) - x0
    np.testing.assert_allclose(delta, ref - x0, rtol=1e-5, atol=1e-5 * np.abs(ref - x0).max())



@pytest.mark.parametrize("name", ["moe_mlp2_gemv", "moe_mlp2_gemv1"])
def test_moe_gemv_scale_range(rng, name):
    """Block scales far from 2^0: every E8M0 byte from 20 to 192 is decoded exactly (rows of one scale each,
    checked against their own magnitude), zero weights included."""
    v = variant(name)
    bn = v.constexprs["BLOCK_N"]
    T, H, I, E, K_TOP = 1, 16, 64, 2, 2
    act = torch.from_numpy(rng.standard_normal((T * K_TOP, I)).astype(np.float32))
    ids = np.array([[1, 0]], dtype=np.int32)
    wts = np.array([[0.75, 0.25]], dtype=np.float32)
    blocks = rng.integers(0, 256, size=(E, H, I // 32, 16), dtype=np.uint8)
    blocks[0, 3] = 0x88                                       # a row of -0 and +0 (codes 8 and 0)
    blocks[0, 4] = 0
    row_scale = np.array([20, 40, 64, 90, 100, 110, 120, 127, 130, 140, 150, 160, 170, 180, 190, 192])
    scales = np.broadcast_to(row_scale[None, :, None], (E, H, I // 32)).astype(np.uint8).copy()
    bias = bf16(np.zeros((E, H)))
    x = torch.zeros((T, H))
    getattr(kernels().moe, name)[(T, (H + bn - 1) // bn)](
        act, torch.from_numpy(ids.reshape(-1)), torch.from_numpy(wts.reshape(-1)), torch.from_numpy(blocks),
        torch.from_numpy(scales), bias, x, T, H, I, K_TOP, **v.constexprs)
    W = decode_mxfp4(blocks, scales)
    terms = [float(wts[0, j]) * W[ids[0, j]] * f64(act)[j][None, :] for j in range(K_TOP)]
    ref = sum(t.sum(axis=1) for t in terms)
    mag = sum(np.abs(t).sum(axis=1) for t in terms)
    got = x.numpy()[0].astype(np.float64)
    assert np.isfinite(got).all()
    assert (np.abs(got - ref) <= 1e-6 * mag).all(), np.abs(got - ref) / mag


FAMILIES = ["m16", "m128"]  # the grouped kernels' tile families (triton_kernels/moe.py)


def run_sort(ids: np.ndarray, E: int, family: str = "m16"):
    """moe_sort on ids [P]; returns (pair_order, pair_pos, tiles [num_tiles, 3], max_tiles, BLOCK_M) after
    checking that the tiles past num_tiles were left alone."""
    v = variant(f"moe_sort_{family}")
    bm = v.constexprs["BLOCK_M"]
    P = ids.size
    max_tiles = (P + bm - 1) // bm + E
    order = torch.full((P,), -7, dtype=torch.int32)
    pos = torch.full((P,), -7, dtype=torch.int32)
    tiles = torch.full((max_tiles, 3), -7, dtype=torch.int32)
    num = torch.full((1,), -7, dtype=torch.int32)
    kernels().moe.moe_sort[(1,)](torch.from_numpy(ids.astype(np.int32)), P, E, order, pos, tiles, num,
                                 **v.constexprs)
    n = num.item()
    assert 0 < n <= max_tiles
    assert (tiles[n:] == -7).all()
    return order.numpy(), pos.numpy(), tiles[:n].numpy(), max_tiles, bm


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("T,E,K_TOP,mode", [(1, 32, 4, "random"), (3, 5, 2, "skewed"), (50, 128, 4, "skewed"),
                                            (70, 8, 2, "one"), (33, 4, 4, "random"), (130, 3, 1, "one")])
def test_moe_sort(rng, T, E, K_TOP, mode, family):
    ids, _ = routing(rng, T, E, K_TOP, mode)
    flat = ids.reshape(-1)
    P = flat.size
    order, pos, tiles, max_tiles, bm = run_sort(flat, E, family)
    assert sorted(order.tolist()) == list(range(P))
    np.testing.assert_array_equal(pos[order], np.arange(P))
    # a stable counting sort: the reference is numpy's stable argsort
    np.testing.assert_array_equal(order, np.argsort(flat, kind="stable"))
    counts = np.bincount(flat, minlength=E)
    assert len(tiles) == sum((c + bm - 1) // bm for c in counts)
    covered = np.zeros(P, dtype=int)
    for e, first, count in tiles:
        assert 1 <= count <= bm and 0 <= e < E
        assert (flat[order[first:first + count]] == e).all()
        covered[first:first + count] += 1
    assert (covered == 1).all()


GROUPED_SHAPES = [  # T, H, I, E, K_TOP, routing
    (1, 64, 32, 4, 2, "random"),
    (3, 96, 64, 5, 4, "skewed"),      # an expert without tokens, uneven loads, K with a masked half step
    (70, 64, 96, 4, 2, "one"),        # every token on experts 0 and 1: two tiles each, two output column tiles
    (40, 32, 32, 3, 1, "one"),        # every token on expert 0 alone
]


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
@pytest.mark.parametrize("T,H,I,E,K_TOP,mode", GROUPED_SHAPES)
@pytest.mark.parametrize("family", FAMILIES)
def test_moe_grouped(rng, T, H, I, E, K_TOP, mode, family):
    k = kernels().moe
    ids, wts = routing(rng, T, E, K_TOP, mode)
    flat = ids.reshape(-1)
    P = flat.size
    xn = bf16(rng.standard_normal((T, H)) * rng.uniform(0.5, 2))
    b1, s1, bias1 = random_expert_weights(rng, E, 2 * I, H)
    b2, s2, bias2 = random_expert_weights(rng, E, H, I)
    W1 = decode_mxfp4(b1.numpy(), s1.numpy())
    W2 = decode_mxfp4(b2.numpy(), s2.numpy())

    order, pos, tiles, max_tiles, bm = run_sort(flat, E, family)
    order_t, tiles_t = torch.from_numpy(order), torch.from_numpy(np.ascontiguousarray(tiles.reshape(-1)))
    num = torch.tensor([len(tiles)], dtype=torch.int32)
    # pad the tile table to max_tiles rows of garbage: programs past num_tiles must not read them
    tiles_full = torch.full((max_tiles * 3,), 1 << 30, dtype=torch.int32)
    tiles_full[:tiles_t.numel()] = tiles_t

    v1 = variant(f"moe_mlp1_gemm_{family}")
    act = torch.full((P, I), float("nan"), dtype=torch.bfloat16)
    k.moe_mlp1_gemm[(max_tiles, (2 * I + v1.constexprs["BLOCK_N"] - 1) // v1.constexprs["BLOCK_N"])](
        xn, order_t, tiles_full, num, b1, s1, bias1, act, H, I, K_TOP, LIMIT, ALPHA, **v1.constexprs)
    ref_act = np.stack([swiglu(W1[flat[p]] @ f64(xn)[p // K_TOP] + f64(bias1)[flat[p]]) for p in order])
    got_act = f64(act)
    assert not np.isnan(got_act).any()
    np.testing.assert_allclose(got_act, ref_act, rtol=1e-2, atol=1e-2 * np.abs(ref_act).max())

    v2 = variant(f"moe_mlp2_gemm_{family}")
    y2 = torch.full((P, H), float("nan"))
    k.moe_mlp2_gemm[(max_tiles, (H + v2.constexprs["BLOCK_N"] - 1) // v2.constexprs["BLOCK_N"])](
        act, tiles_full, num, b2, s2, bias2, y2, H, I, **v2.constexprs)
    ref_y2 = np.stack([W2[flat[p]] @ got_act[g] + f64(bias2)[flat[p]] for g, p in enumerate(order)])
    got_y2 = y2.numpy().astype(np.float64)
    assert not np.isnan(got_y2).any()
    np.testing.assert_allclose(got_y2, ref_y2, rtol=1e-5, atol=1e-5 * np.abs(ref_y2).max())

    vc = variant("moe_combine")
    bh = vc.constexprs["BLOCK_H"]
    x0 = rng.standard_normal((T, H)).astype(np.float32)
    x = torch.from_numpy(x0.copy())
    k.moe_combine[(T, (H + bh - 1) // bh)](y2, torch.from_numpy(pos), torch.from_numpy(wts.reshape(-1)), x, T, H,
                                           K_TOP, **vc.constexprs)
    ref_x = x0.astype(np.float64) + np.stack(
        [sum(float(wts[t, j]) * got_y2[pos[t * K_TOP + j]] for j in range(K_TOP)) for t in range(T)])
    np.testing.assert_allclose(x.numpy(), ref_x, rtol=1e-6, atol=1e-6 * np.abs(ref_x).max())
    # end to end against float64 from the bf16 input (bf16 activations between the two products)
    def expert(e, v):
        return W2[e] @ swiglu(W1[e] @ v + f64(bias1)[e]) + f64(bias2)[e]

    ref_moe = np.stack([sum(float(wts[t, j]) * expert(ids[t, j], f64(xn)[t]) for j in range(K_TOP)) for t in range(T)])
    delta = x.numpy().astype(np.float64) - x0
    np.testing.assert_allclose(delta, ref_moe, rtol=2e-2, atol=2e-2 * np.abs(ref_moe).max())


def topk_softmax_ref(logits: np.ndarray, K_TOP: int):
    """float64 reference of the router's top-k: NaN never chosen, the largest first, the lowest index among ties;
    weights = softmax over the chosen logits."""
    v = np.where(np.isnan(logits), -np.inf, logits.astype(np.float64))
    ids = np.stack([sorted(range(len(row)), key=lambda e: (-row[e], e))[:K_TOP] for row in v])
    chosen = np.take_along_axis(v, ids, axis=1)
    w = np.exp(chosen - v.max(axis=1, keepdims=True))
    return ids, w / w.sum(axis=1, keepdims=True)


ROUTE_SHAPES = [(1, 64, 64, 5, 2, 32), (2, 96, 32, 32, 4, 32), (1, 2880, 32, 100, 4, 128), (1, 64, 96, 7, 1, 32)]


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
@pytest.mark.parametrize("T,H,I,E,K_TOP,BE", ROUTE_SHAPES)
def test_moe_route_gemv1(rng, T, H, I, E, K_TOP, BE):
    """The routed one-token forms: top-k softmax of the router logits (ties and a NaN included) and the RMSNorm of
    x fused into the expert products, against rmsnorm -> top-k -> experts in float64."""
    eps = float(rng.uniform(1e-6, 1e-4))
    x = (rng.standard_normal((T, H)) * rng.uniform(0.5, 3)).astype(np.float32)
    g = bf16(rng.uniform(0.5, 1.5, H))
    logits = rng.standard_normal((T, E)).astype(np.float32)
    logits[0, E - 1] = logits[0, 0]                     # a tie: the lower index wins
    if E > 3:
        logits[-1, 2] = np.nan
    ids, wts = topk_softmax_ref(logits, K_TOP)
    b1, s1, bias1 = random_expert_weights(rng, E, 2 * I, H)
    b2, s2, bias2 = random_expert_weights(rng, E, H, I)
    W1, W2 = decode_mxfp4(b1.numpy(), s1.numpy()), decode_mxfp4(b2.numpy(), s2.numpy())
    x64 = x.astype(np.float64)
    xn = x64 / np.sqrt((x64 ** 2).mean(axis=1, keepdims=True) + eps) * f64(g)
    ref1 = np.stack([swiglu(W1[ids[t, j]] @ xn[t] + f64(bias1)[ids[t, j]]) for t in range(T) for j in range(K_TOP)])

    m = kernels().moe
    v1 = variant(f"moe_mlp1_route_gemv1_e{BE}")
    act = torch.full((T * K_TOP, I), float("nan"))
    m.moe_mlp1_route_gemv1[(T * K_TOP, (2 * I + v1.constexprs["BLOCK_N"] - 1) // v1.constexprs["BLOCK_N"])](
        torch.from_numpy(x), g, eps, torch.from_numpy(logits), E, b1, s1, bias1, act, T, H, I, K_TOP, LIMIT, ALPHA,
        **v1.constexprs)
    got1 = act.numpy().astype(np.float64)
    assert not np.isnan(got1).any()
    np.testing.assert_allclose(got1, ref1, rtol=1e-5, atol=1e-5 * np.abs(ref1).max())

    a = rng.standard_normal((T * K_TOP, I)).astype(np.float32)
    x2 = torch.from_numpy(x.copy())
    v2 = variant(f"moe_mlp2_route_gemv1_e{BE}")
    m.moe_mlp2_route_gemv1[(T, (H + v2.constexprs["BLOCK_N"] - 1) // v2.constexprs["BLOCK_N"])](
        torch.from_numpy(a), torch.from_numpy(logits), E, b2, s2, bias2, x2, T, H, I, K_TOP, **v2.constexprs)
    delta = np.stack([sum(wts[t, j] * (W2[ids[t, j]] @ a[t * K_TOP + j].astype(np.float64) + f64(bias2)[ids[t, j]])
                          for j in range(K_TOP)) for t in range(T)])
    got2 = x2.numpy().astype(np.float64) - x
    np.testing.assert_allclose(got2, delta, rtol=1e-5, atol=1e-5 * np.abs(delta).max())
    if T == 1:
        # the split form: K_TOP * SPLIT programs per row tile, the last one adds the partials; launched twice to
        # check that it leaves its counters at zero
        vs = variant(f"moe_mlp2_route_split_e{BE}")
        c = vs.constexprs
        tiles = (H + c["BLOCK_N"] - 1) // c["BLOCK_N"]
        part = torch.full((K_TOP * c["SPLIT"], H), float("nan"))
        count = torch.zeros(tiles, dtype=torch.int32)
        x3 = torch.from_numpy(x.copy())
        for launch in range(2):
            m.moe_mlp2_route_split[(K_TOP, tiles, c["SPLIT"])](
                torch.from_numpy(a), torch.from_numpy(logits), E, b2, s2, bias2, part, count, x3, H, I, K_TOP, **c)
            assert (count.numpy() == 0).all()
            got3 = x3.numpy().astype(np.float64) - x
            np.testing.assert_allclose(got3, (launch + 1) * delta, rtol=2e-5,
                                       atol=2e-5 * (launch + 1) * np.abs(delta).max())


# ---------------------------------------------------------------------------------------------------------------
# triton_kernels/moe_mma.py: the one-token block on the tensor cores. Under the interpreter its PTX loop is replaced
# by the same sums in plain Triton (x read back from the hilo form), so these tests check the hilo writers, the
# routing, the split of the K range between warps (ranges that end inside a unit of 4 blocks, empty ranges), the
# epilogues and the last-program combination; the loop itself runs in the GPU op harness.

def hilo_decode(h: np.ndarray, K: int) -> np.ndarray:
    """The hilo form (bf16 as uint16 bits; 64 per block of 32 elements: per word of 8, 8 hi then 8 lo, element
    8i + j at 2 (j % 4) + j // 4) -> 2^-64 (hi + lo) as float64 [K]."""
    f = (h.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    k = np.arange(K)
    e, j = k % 32, k % 8
    off = (k // 32) * 64 + (e // 8) * 16 + 2 * (j % 4) + j // 4
    return (f[off] + f[off + 8]) * 2.0 ** -64


def hilo_bytes(K: int) -> int:
    return (K // 32 + 3) // 4 * 512


MMA_SHAPES = [(96, 160, 5, 2, 32), (576, 64, 40, 4, 128), (64, 96, 7, 1, 32), (160, 288, 32, 4, 32)]


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
@pytest.mark.parametrize("H,I,E,K_TOP,BE,tile", [s + (None,) for s in MMA_SHAPES] +
                         [(160, 288, 6, 2, 32, (4, 1, 3, 1)), (96, 160, 5, 2, 32, (2, 2, 4, 1)),
                          (160, 288, 6, 2, 32, (2, 1, 4, 2)), (96, 160, 5, 3, 32, (1, 2, 6, 2)),
                          (96, 160, 9, 6, 32, (2, 2, 4, 1))])   # more experts per token than mlp2 loads at once
def test_moe_mma(rng, H, I, E, K_TOP, BE, tile):
    """moe_router_hilo -> moe_mlp1_route_mma -> moe_mlp2_route_mma against rmsnorm -> router -> top-k -> experts ->
    weighted sum in float64. x and the activations travel as bf16 hi + lo parts (16 significant bits): errors are
    bounded by 2^-15 of the sum of |w| |x| of each output, where the fp32 kernels have 1e-5 of the output."""
    mm = kernels().moe_mma
    vs = {v.name: v for v in mm.VARIANTS}
    eps = float(rng.uniform(1e-6, 1e-4))
    x = (rng.standard_normal(H) * rng.uniform(0.5, 3)).astype(np.float32)
    g = bf16(rng.uniform(0.5, 1.5, H))
    wr = bf16(0.2 * rng.standard_normal((E, H)))
    br = bf16(0.1 * rng.standard_normal(E))
    b1, s1, bias1 = random_expert_weights(rng, E, 2 * I, H)
    b2, s2, bias2 = random_expert_weights(rng, E, H, I)
    W1, W2 = decode_mxfp4(b1.numpy(), s1.numpy()), decode_mxfp4(b2.numpy(), s2.numpy())
    x64 = x.astype(np.float64)
    xn = x64 / np.sqrt((x64 ** 2).mean() + eps) * f64(g)
    logits_ref = f64(wr) @ xn + f64(br)

    # NaN everywhere the writers must write; zeros where nobody writes (the runtime clears those once)
    sentinel = 0x7FC0                                   # a bf16 NaN
    xh = torch.zeros(hilo_bytes(H) // 2, dtype=torch.int16)
    xh.view(-1)[: (H // 32) * 64] = sentinel
    xh = xh.view(torch.bfloat16)
    logits = torch.full((E,), float("nan"))
    vr = vs["moe_router_hilo"]
    mm.moe_router_hilo[((E + vr.constexprs["BLOCK_N"] - 1) // vr.constexprs["BLOCK_N"],)](
        torch.from_numpy(x), g, eps, wr, br, logits, xh, E, H, **vr.constexprs)
    lg = logits.numpy().astype(np.float64)
    np.testing.assert_allclose(lg, logits_ref, rtol=1e-5, atol=1e-5 * np.abs(logits_ref).max())
    xh_bits = xh.view(torch.int16).numpy().view(np.uint16)
    assert (xh_bits[(H // 32) * 64:] == 0).all()        # the padding blocks untouched
    got_xn = hilo_decode(xh_bits, H)
    np.testing.assert_allclose(got_xn, xn, rtol=2.0 ** -16, atol=1e-30)

    ids, wts = topk_softmax_ref(lg[None].astype(np.float32), K_TOP)    # from the kernel's own logits
    ids, wts = ids[0], wts[0]
    pre = np.stack([W1[e] @ xn + f64(bias1)[e] for e in ids])
    scale1 = np.stack([np.abs(W1[e]) @ np.abs(xn) for e in ids])
    ref_act = swiglu(pre)

    acth = torch.zeros(K_TOP * hilo_bytes(I) // 2, dtype=torch.int16)
    for j in range(K_TOP):
        acth.view(-1)[j * hilo_bytes(I) // 2: j * hilo_bytes(I) // 2 + (I // 32) * 64] = sentinel
    acth = acth.view(torch.bfloat16)
    # the compiled tiles, or other (W_R, W_K, STAGES, RT): programs whose last groups pass the end (H / 16 = 10
    # tiles in groups of 4, or 5 groups of 2 tiles in pairs), warps whose share of the units is empty (K = 96: one
    # unit for two warps)
    c1 = dict(vs[f"moe_mlp1_route_mma_e{BE}"].constexprs)
    c2 = dict(vs["moe_mlp2_route_mma"].constexprs)
    if tile:
        for c in (c1, c2):
            c.update(W_R=tile[0], W_K=tile[1], STAGES=tile[2], RT=tile[3])
    grid1 = (K_TOP, -(-2 * I // 16 // (c1["W_R"] * c1["RT"])))          # 16-row tiles per program: W_R x RT
    route_ids = torch.full((K_TOP,), -1, dtype=torch.int32)
    route_u = torch.full((K_TOP,), float("nan"))
    mm.moe_mlp1_route_mma[grid1](xh, logits, E, b1, s1, bias1, acth, route_ids, route_u, H, I, K_TOP, LIMIT, ALPHA,
                                 **c1)
    # the routing mlp2 reads: the experts in order, the softmax numerators relative to the largest logit
    assert (route_ids.numpy() == ids).all()
    np.testing.assert_allclose(route_u.numpy(), np.exp(lg[ids] - lg.max()), rtol=1e-6)
    np.testing.assert_allclose(route_u.numpy() / route_u.numpy().sum(), wts, rtol=1e-5)
    ah = acth.view(torch.int16).numpy().view(np.uint16)
    got_act = np.stack([hilo_decode(ah[j * hilo_bytes(I) // 2:], I) for j in range(K_TOP)])
    assert np.isfinite(got_act).all()
    # swiglu's slope is at most ~1.1 (gate) and 8 (up, times |gate| <= 7): the products' bound, amplified
    slope = np.maximum(np.abs(np.minimum(pre[:, 0::2], LIMIT)) + 1, 1.2 * (np.abs(pre[:, 1::2]) + 1))
    bound1 = 2.0 ** -15 * slope * (scale1[:, 0::2] + scale1[:, 1::2]) + 2.0 ** -16 * np.abs(ref_act)
    assert (np.abs(got_act - ref_act) <= bound1 + 1e-30).all(), np.max(np.abs(got_act - ref_act) / bound1)
    for j in range(K_TOP):
        assert (ah[j * hilo_bytes(I) // 2 + (I // 32) * 64: (j + 1) * hilo_bytes(I) // 2] == 0).all()

    # mlp2 on the kernel's own activations: the products alone are checked here
    out_ref = sum(wts[j] * (W2[e] @ got_act[j] + f64(bias2)[e]) for j, e in enumerate(ids))
    scale2 = sum(wts[j] * (np.abs(W2[e]) @ np.abs(got_act[j])) for j, e in enumerate(ids))
    part = torch.full((K_TOP, H), float("nan"))
    count = torch.zeros(H // 16, dtype=torch.int32)
    x2 = torch.from_numpy(x.copy())
    for launch in range(2):                              # twice: the counters go back to zero
        grid2 = (K_TOP, -(-H // 16 // (c2["W_R"] * c2["RT"])))
        mm.moe_mlp2_route_mma[grid2](acth, route_ids, route_u, b2, s2, bias2, part, count, x2, H, I, K_TOP, **c2)
        assert (count.numpy() == 0).all()
        got = x2.numpy().astype(np.float64) - x64
        err = np.abs(got - (launch + 1) * out_ref)
        assert (err <= (launch + 1) * (2.0 ** -15 * scale2 + 1e-6 * np.abs(out_ref)) + 1e-5 * np.abs(x64)).all(), \
            np.max(err / (2.0 ** -15 * scale2))


# triton_kernels/moe_gemm_mma.py: the grouped expert products of decode batches on the tensor cores, on moe_sort_m16's
# tiles, reading and writing the xg form. Under the interpreter the PTX loop is replaced by the same sums in plain
# Triton, so these tests check the token gathering, the lanes' rows and tokens, the epilogues (swiglu on each lane's
# gate/up pair, the xg writes, the fp32 rows) and the tiles past the end; the loop itself runs in the GPU op harness.

def xg_encode(x: np.ndarray) -> torch.Tensor:
    """float rows -> the xg form: bf16 of 2^64 x, each group of 8 in the order 0 4 1 5 2 6 3 7."""
    k = np.arange(x.shape[-1])
    j = k % 8
    out = np.empty_like(x, dtype=np.float64)
    out[..., k - j + 2 * (j % 4) + j // 4] = x * 2.0 ** 64
    return bf16(out)




GEMM_MMA_SHAPES = [  # T, H, I, E, K_TOP, routing
    (3, 96, 64, 5, 4, "skewed"),      # K of 3 and 2 blocks: one unit, partly past K; an expert without tokens
    (70, 64, 96, 4, 2, "one"),        # experts 0 and 1 with 70 tokens each: tiles of 16 and one of 6
    (9, 160, 32, 3, 1, "one"),        # one expert, 9 tokens (the second group of 8 holds one)
    (24, 160, 96, 16, 4, "random"),   # tiles of 1 to 16 tokens; mlp2 rows in 10 tiles of 16 (the last program's
]                                     # warps past the end repeat the last tile)


@pytest.mark.filterwarnings("ignore:overflow encountered in exp")
@pytest.mark.parametrize("T,H,I,E,K_TOP,mode", GEMM_MMA_SHAPES)
def test_moe_gemm_mma(rng, T, H, I, E, K_TOP, mode):
    mm = kernels().moe_gemm_mma
    vs = {v.name: v for v in mm.VARIANTS}
    ids, wts = routing(rng, T, E, K_TOP, mode)
    flat = ids.reshape(-1)
    P = flat.size
    x = rng.standard_normal((T, H)) * rng.uniform(0.5, 2)
    xg = xg_encode(x)
    xb = xg_decode(xg)                                  # x as the kernels read it (bf16)
    b1, s1, bias1 = random_expert_weights(rng, E, 2 * I, H)
    b2, s2, bias2 = random_expert_weights(rng, E, H, I)
    W1 = decode_mxfp4(b1.numpy(), s1.numpy())
    W2 = decode_mxfp4(b2.numpy(), s2.numpy())

    order, pos, tiles, max_tiles, bm = run_sort(flat, E, "m16")
    assert bm == 16
    order_t = torch.from_numpy(order)
    num = torch.tensor([len(tiles)], dtype=torch.int32)
    tiles_full = torch.full((max_tiles * 3,), 1 << 30, dtype=torch.int32)   # garbage past num_tiles
    tiles_full[:tiles.size] = torch.from_numpy(np.ascontiguousarray(tiles.reshape(-1)))

    c1 = vs["moe_mlp1_gemm_mma"].constexprs
    actg = torch.full((P, I), float("nan"), dtype=torch.bfloat16)
    mm.moe_mlp1_gemm_mma[(max_tiles, -(-2 * I // 16 // c1["W"]))](
        xg, order_t, tiles_full, num, b1, s1, bias1, actg, H, I, K_TOP, LIMIT, ALPHA, **c1)
    pre = np.stack([W1[flat[p]] @ xb[p // K_TOP] + f64(bias1)[flat[p]] for p in order])
    ref_act = swiglu(pre)
    got_act = xg_decode(actg)
    assert not np.isnan(got_act).any()
    np.testing.assert_allclose(got_act, ref_act, rtol=1e-2, atol=1e-2 * np.abs(ref_act).max())

    c2 = vs["moe_mlp2_gemm_mma"].constexprs
    y2 = torch.full((P, H), float("nan"))
    mm.moe_mlp2_gemm_mma[(max_tiles, -(-H // 16 // c2["W"]))](
        actg, tiles_full, num, b2, s2, bias2, y2, H, I, **c2)
    ref_y2 = np.stack([W2[flat[p]] @ got_act[g] + f64(bias2)[flat[p]] for g, p in enumerate(order)])
    got_y2 = y2.numpy().astype(np.float64)
    assert not np.isnan(got_y2).any()
    np.testing.assert_allclose(got_y2, ref_y2, rtol=1e-5, atol=1e-5 * np.abs(ref_y2).max())


# The PTX loop of moe_gemm_mma.py itself, run by a lock-step emulator of one warp (tests/ptx_emu.py: mma.sync and
# ldmatrix fragment layouts, cp.async whose destinations hold garbage until their group is waited for, bounds checks
# on every global read and shared write), against float64 sums of the decoded weights times the bf16 activations.

@pytest.mark.parametrize("stages,warps,warp,KB,count,smax", [
    (4, 4, 1, 3, 5, 140),      # one unit, its last block past K; one group of 8 tokens (3 lanes' tokens repeated)
    (4, 4, 3, 9, 16, 140),     # three units, the last one partial; two groups
    (2, 4, 0, 5, 9, 192),      # a shallow ring; the second group holds one token; scale bytes up to 192
    (3, 4, 2, 13, 12, 140),
    (8, 2, 1, 8, 8, 140),      # units that end exactly at K; eight tokens: one group
    (4, 4, 0, 90, 16, 140),    # the 20b's K = 2880
])
def test_moe_gemm_mma_ptx(rng, stages, warps, warp, KB, count, smax):
    from ptx_emu import Warp, b2f, bf16_to_f, f2b, global_memory

    mm = kernels().moe_gemm_mma
    K = 32 * KB
    blocks = rng.integers(0, 256, (16, KB * 16), dtype=np.uint8)
    scales = rng.integers(110, smax + 1, (16, KB), dtype=np.uint8)
    x = rng.standard_normal((count, K)) * 2.0 ** float(rng.integers(-8, 4))
    xbits = (f2b((x * 2.0 ** 64).astype(np.float32)) >> 16).astype(np.uint16)   # bf16 of 2^64 x (truncated)
    k = np.arange(K)
    xg = np.empty_like(xbits)
    xg[:, k - k % 8 + 2 * (k % 4) + (k % 8) // 4] = xbits                          # the xg order
    xval = bf16_to_f(xbits) / 2.0 ** 64
    gmem, at, valid = global_memory(rng, {"w": blocks, "s": scales, "x": xg})
    g = np.arange(32) >> 2
    params = {8: at["w"], 9: at["s"], 10: at["x"] + np.minimum(g, count - 1) * K * 2,
              11: at["x"] + np.minimum(g + 8, count - 1) * K * 2, 12: KB, 13: int(count > 8)}
    w = Warp(mm._group_loop_ptx(stages, warps), warp, gmem, params, rng, valid=valid)
    w.run()
    got = np.stack([b2f(w.r[f"${i}"]).astype(np.float64) for i in range(8)], 1)    # [lane, accumulator]
    Wd = decode_mxfp4(blocks.reshape(1, 16, KB, 16), scales[None])[0]
    ref = np.zeros((32, 8))
    mag = np.ones((32, 8))
    for lane in range(32):
        G, T = lane >> 2, lane & 3
        for n in range(2 if count > 8 else 1):    # group 1 is not computed for 8 tokens or fewer: its sums stay 0
            for i, (row, col) in enumerate([(2 * G, 2 * T), (2 * G, 2 * T + 1), (2 * G + 1, 2 * T),
                                            (2 * G + 1, 2 * T + 1)]):
                xr = xval[min(8 * n + col, count - 1)]
                ref[lane, 4 * n + i] = Wd[row] @ xr
                mag[lane, 4 * n + i] = np.abs(Wd[row]) @ np.abs(xr)
    assert (np.abs(got - ref) <= 1e-6 * mag).all(), np.max(np.abs(got - ref) / mag)


@pytest.mark.parametrize("E,BE,case", [(5, 32, "ties"), (9, 32, "nan"), (32, 32, "ties"), (40, 128, "ties"),
                                         (128, 128, "random"), (7, 32, "inf")])
def test_moe_mma_routing(rng, E, BE, case):
    """moe_mlp1_route_mma's routing (the j-th expert and its softmax numerator, which mlp2 reads) on logits with
    ties, NaN and -inf, against the rule of moe.py's routed kernels: larger logit first, lower index first among
    equal ones, NaN as -inf."""
    mm = kernels().moe_mma
    K_TOP = min(E, 6)
    lg = rng.standard_normal(E).astype(np.float32)
    if case == "ties":                                   # runs of equal logits, the top ones included
        lg = rng.integers(0, 3, E).astype(np.float32)
    elif case == "nan":
        lg[rng.choice(E, 3, replace=False)] = np.nan
    elif case == "inf":
        lg[rng.choice(E, 2, replace=False)] = -np.inf
    key = np.where(np.isnan(lg), -np.inf, lg)
    order = sorted(range(E), key=lambda e: (-key[e], e))[:K_TOP]
    H, I = 64, 32
    b1, s1, bias1 = random_expert_weights(rng, E, 2 * I, H)
    xh = torch.zeros(hilo_bytes(H) // 2, dtype=torch.bfloat16)
    acth = torch.zeros(K_TOP * hilo_bytes(I) // 2, dtype=torch.bfloat16)
    ids = torch.full((K_TOP,), -1, dtype=torch.int32)
    u = torch.full((K_TOP,), float("nan"))
    c1 = dict({v.name: v for v in mm.VARIANTS}[f"moe_mlp1_route_mma_e{BE}"].constexprs)
    mm.moe_mlp1_route_mma[(K_TOP, 1)](xh, torch.from_numpy(lg), E, b1, s1, bias1, acth, ids, u, H, I, K_TOP, LIMIT,
                                      ALPHA, **c1)
    assert ids.numpy().tolist() == order
    with np.errstate(invalid="ignore"):
        want = np.exp(key[order].astype(np.float64) - key.max())
    np.testing.assert_allclose(u.numpy(), want, rtol=1e-6)


# moe_mma.py's one-token loop, a CTA of W_R x W_K warps on the same emulator (the warps share x in shared memory
# behind a bar.sync): each 16-row tile's sums over the lanes and the W_K warps of its group against float64.

@pytest.mark.parametrize("stages,w_r,w_k,rt,ntiles,KB", [
    (4, 4, 1, 1, 4, 90),       # mlp1's compiled tile at K = 2880
    (4, 2, 2, 1, 2, 9),        # mlp2's compiled tile: two warps along K, the last unit partial
    (3, 1, 2, 2, 2, 5),        # two tiles per warp sharing B
    (6, 2, 1, 2, 3, 13),       # the last group's second tile past the end (repeats the first)
    (2, 2, 2, 1, 2, 3),        # one unit for two warps: the second warp's share is empty
])
def test_moe_mma_ptx(rng, stages, w_r, w_k, rt, ntiles, KB):
    from ptx_emu import Warp, b2f, bf16_to_f, f2b, global_memory, run_cta

    mm = kernels().moe_mma
    W = w_r * w_k
    R, K = 16 * ntiles, 32 * KB
    blocks = rng.integers(0, 256, (R, KB * 16), dtype=np.uint8)
    scales = rng.integers(110, 141, (R, KB), dtype=np.uint8)
    xs = (rng.standard_normal(K) * 2.0 ** 64).astype(np.float32)
    hi = (f2b(xs) >> 16).astype(np.uint16)
    lo = (f2b((xs - bf16_to_f(hi)).astype(np.float32)) >> 16).astype(np.uint16)
    xval = (bf16_to_f(hi) + bf16_to_f(lo)) / 2.0 ** 64
    xh = np.zeros(hilo_bytes(K) // 2, np.uint16)             # blocks past K up to a multiple of 4 stay zero
    k = np.arange(K)
    pos = (k // 32) * 64 + (k % 32 // 8) * 16 + 2 * (k % 4) + k % 8 // 4
    xh[pos], xh[pos + 8] = hi, lo
    gmem, at, valid = global_memory(rng, {"w": blocks, "s": scales, "x": xh})
    ptx = mm._mma_loop_ptx(stages, W, rt)
    smem = rng.integers(0, 256, mm._smem_bytes(stages, W, rt)).astype(np.uint8)
    no, ngroups, warps, tiles = 2 * rt, -(-ntiles // rt), [], []
    for w in range(W):
        tile = min(w // w_k, ngroups - 1) * rt
        tile2 = min(tile + 1, ntiles - 1)
        tiles.append((tile, tile2))
        params = {no: at["w"] + tile * 16 * KB * 16, no + 1: at["s"] + tile * 16 * KB, no + 2: at["x"],
                  no + 3: w_k, no + 4: KB, no + 5: w % w_k, no + 6: (KB + 3) // 4, no + 7: 16 * (tile2 - tile)}
        warps.append(Warp(ptx, w, gmem, params, rng, valid=valid, smem=smem, warps=W))
    run_cta(warps)
    Wd = decode_mxfp4(blocks.reshape(1, R, KB, 16), scales[None])[0]
    for grp in range(w_r):
        members = range(grp * w_k, (grp + 1) * w_k)
        tile, tile2 = tiles[grp * w_k]
        for i in range(no):                                   # acc i: rows g (+ 8 for odd i) of tile (or tile2)
            got = sum(b2f(warps[w].r[f"${i}"]).astype(np.float64).reshape(8, 4).sum(axis=1) for w in members)
            rows = (tile if i < 2 else tile2) * 16 + np.arange(8) + 8 * (i % 2)
            ref = Wd[rows] @ xval
            mag = np.abs(Wd[rows]) @ np.abs(xval)
            assert (np.abs(got - ref) <= 1e-6 * mag).all(), (grp, i, np.max(np.abs(got - ref) / mag))
