"""Decode-kernel experiments on the GPU (Triton JIT, torch for data and
references): the project's gemv kernels under other tile settings, and simple
alternatives, timed on gpt-oss-20b decode shapes with triton.testing.do_bench
(median), each checked against torch first. Results go to stdout as a table
(GB/s of weights). Not part of the build: a lab whose winners move into
triton_kernels/.

    python bench/gpu/kernel_lab.py [--only dense|moe|gemm|moe_gemm|m16|gmma] [--gmma-tiles W,STAGES ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "triton_kernels"))
import linear  # noqa: E402
import moe  # noqa: E402
import moe_gemm_mma  # noqa: E402

dev = "cuda"
torch.manual_seed(0)


def bench(fn, bytes_):
    ms = triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")
    return ms * 1e3, bytes_ / (ms * 1e-3) / 1e9


@triton.jit
def gemv_simple(x_ptr, w_ptr, b_ptr, y_ptr, N, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pid = tl.program_id(0)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rows < N
    acc = tl.zeros([BLOCK_N, BLOCK_K], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        km = ks < K
        w = tl.load(w_ptr + rows[:, None].to(tl.int64) * K + ks[None, :], mask=rm[:, None] & km[None, :], other=0.0)
        x = tl.load(x_ptr + ks, mask=km, other=0.0)
        acc += w.to(tl.float32) * x[None, :]
    y = tl.sum(acc, 1) + tl.load(b_ptr + rows, mask=rm, other=0.0).to(tl.float32)
    tl.store(y_ptr + rows, y, mask=rm)


@triton.jit
def moe1_simple(x_ptr, ids_ptr, q_ptr, s_ptr, b_ptr, act_ptr, H, I, K_TOP, limit, alpha,
                BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    """act[p, n] for n in a block of BLOCK_N: rows 2n, 2n+1 of expert ids[p]'s mlp1."""
    p = tl.program_id(0)
    nb = tl.program_id(1)
    e = tl.load(ids_ptr + p).to(tl.int64)
    t = (p // K_TOP).to(tl.int64)
    KB = H // 32
    R = 2 * I
    rows = nb * (2 * BLOCK_N) + tl.arange(0, 2 * BLOCK_N)
    rm = rows < R
    grow = e * R + rows
    acc = tl.zeros([2 * BLOCK_N, BLOCK_B], tl.float32)
    for b0 in range(0, KB, BLOCK_B):
        bs = b0 + tl.arange(0, BLOCK_B)
        bm = bs < KB
        q = tl.load(q_ptr + grow[:, None, None] * (KB * 16) + bs[None, :, None] * 16 + tl.arange(0, 16)[None, None, :],
                    mask=rm[:, None, None] & bm[None, :, None], other=0).to(tl.int32)
        lo = q & 15
        hi = q >> 4
        flo = (((lo & 7) << 22) | ((lo & 8) << 28)).to(tl.float32, bitcast=True)
        fhi = (((hi & 7) << 22) | ((hi & 8) << 28)).to(tl.float32, bitcast=True)
        xv = tl.load(x_ptr + t * H + bs[:, None] * 32 + tl.arange(0, 32)[None, :], mask=bm[:, None], other=0.0)
        xe, xo = tl.split(tl.reshape(xv, [BLOCK_B, 16, 2]))
        d = tl.sum(flo * xe[None, :, :] + fhi * xo[None, :, :], axis=2)
        s = tl.load(s_ptr + grow[:, None] * KB + bs[None, :], mask=rm[:, None] & bm[None, :], other=0).to(tl.int32)
        scale = ((s + 126) << 23).to(tl.float32, bitcast=True)   # 2^(s-1): FP4 bits above carry 2^-126
        acc += d * scale
    y = tl.sum(acc, 1) + tl.load(b_ptr + grow, mask=rm, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N, 2]))
    gate = tl.minimum(gate, limit)
    up = tl.minimum(tl.maximum(up, -limit), limit)
    out = (up + 1.0) * gate * tl.sigmoid(alpha * gate)
    cols = nb * BLOCK_N + tl.arange(0, BLOCK_N)
    tl.store(act_ptr + p.to(tl.int64) * I + cols, out, mask=cols < I)


def dense_lab():
    rows = []
    for name, N, K in (("qkv 5120x2880", 5120, 2880), ("out 2880x4096", 2880, 4096), ("unembed", 201088, 2880)):
        w = (torch.randn(N, K, device=dev) * 0.02).to(torch.bfloat16)
        b = (torch.randn(N, device=dev) * 0.02).to(torch.bfloat16)
        x = torch.randn(K, device=dev)
        ref = w.float() @ x + b.float()
        y = torch.empty(N, device=dev)
        nbytes = N * K * 2
        # the project's kernel, its compiled settings and others
        for bn, bk, warps, stages in ((4, 1024, 2, 3), (2, 1024, 1, 3), (2, 512, 1, 4), (4, 512, 2, 4),
                                      (4, 1024, 2, 2), (2, 1024, 2, 3), (4, 1024, 1, 3), (8, 512, 4, 4),
                                      (4, 512, 1, 6)):
            def run():
                linear.linear_gemv[(triton.cdiv(N, bn),)](x, x, w, w, b, y, 1, N, K, N, 1e-5, M_PAD=1, NORM=0,
                                                          HAS_ROWS=0, HAS_BIAS=1, ACCUMULATE=0, BLOCK_N=bn,
                                                          BLOCK_K=bk, STAGES=stages, X_AHEAD=1, num_warps=warps)
            run()
            ok = torch.allclose(y, ref, rtol=1e-3, atol=1e-3)
            us, gbs = bench(run, nbytes)
            rows.append((name, f"linear_gemv bn{bn} bk{bk} w{warps} s{stages}", ok, us, gbs))
        for bn, bk, warps, stages in ((16, 256, 4, 4), (32, 256, 4, 4), (16, 512, 8, 4), (64, 128, 4, 4),
                                      (32, 128, 4, 5), (8, 512, 4, 4), (16, 256, 8, 3), (32, 256, 8, 4)):
            def run():
                gemv_simple[(triton.cdiv(N, bn),)](x, w, b, y, N, K, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps,
                                                   num_stages=stages)
            run()
            ok = torch.allclose(y, ref, rtol=1e-3, atol=1e-3)
            us, gbs = bench(run, nbytes)
            rows.append((name, f"simple bn{bn} bk{bk} w{warps} s{stages}", ok, us, gbs))
    return rows


def gemm_lab():
    """linear_gemm at decode batch sizes: tile shapes with more programs than the compiled 64x128."""
    rows = []
    for name, N, K in (("qkv 5120x2880", 5120, 2880), ("out 2880x4096", 2880, 4096)):
        w = (torch.randn(N, K, device=dev) * 0.02).to(torch.bfloat16)
        b = (torch.randn(N, device=dev) * 0.02).to(torch.bfloat16)
        for M in (16, 32, 64):
            x = torch.randn(M, K, device=dev).to(torch.bfloat16)
            ref = x.float() @ w.float().T + b.float()
            y = torch.empty(M, N, device=dev)
            nbytes = N * K * 2
            for bm, bn, bk, warps, stages in ((64, 128, 64, 4, 4), (16, 64, 128, 4, 4), (16, 32, 128, 4, 4),
                                              (32, 64, 128, 4, 4), (64, 64, 64, 4, 4), (16, 128, 64, 4, 4),
                                              (64, 32, 128, 4, 3), (32, 32, 128, 4, 4), (64, 32, 64, 4, 4),
                                              (64, 16, 128, 4, 4), (32, 16, 256, 4, 3)):
                if bm > M and bm != 64:
                    continue

                def run():
                    linear.linear_gemm[(triton.cdiv(M, bm), triton.cdiv(N, bn))](
                        x, w, b, y, M, N, K, K, N, HAS_BIAS=1, ACCUMULATE=0, OUT_BF16=0, BLOCK_M=bm, BLOCK_N=bn,
                        BLOCK_K=bk, num_warps=warps, num_stages=stages)
                tile = f"linear_gemm bm{bm} bn{bn} bk{bk} w{warps} s{stages}"
                try:
                    run()
                    ok = torch.allclose(y, ref, rtol=2e-2, atol=2e-2)
                    us, gbs = bench(run, nbytes)
                    rows.append((f"{name} M={M}", tile, ok, us, gbs))
                except Exception as exc:  # a tile shape that does not compile or fit
                    rows.append((f"{name} M={M}", f"{tile}: {type(exc).__name__}", False, 0.0, 0.0))
    return rows


FP4 = torch.tensor([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], device=dev)


def mxfp4_weights(E, R, K):
    q = torch.randint(0, 256, (E, R, K // 32, 16), dtype=torch.uint8, device=dev)
    s = torch.randint(119, 128, (E, R, K // 32), dtype=torch.uint8, device=dev)
    lo = FP4[(q & 15).long()]
    hi = FP4[(q >> 4).long()]
    w = torch.stack([lo, hi], -1).reshape(E, R, K // 32, 32) * torch.exp2(s.float() - 127)[..., None]
    return q, s, w.reshape(E, R, K)


def moe_lab():
    rows = []
    E, H, I, KT = 32, 2880, 2880, 4
    q1, s1, w1 = mxfp4_weights(E, 2 * I, H)
    b1 = (torch.randn(E, 2 * I, device=dev) * 0.02).to(torch.bfloat16)
    x = torch.randn(1, H, device=dev)
    ids = torch.tensor([3, 17, 8, 30], dtype=torch.int32, device=dev)
    u = torch.stack([w1[e] @ x[0] + b1[e].float() for e in ids.tolist()])
    gate, up = u[:, 0::2].clamp(max=7.0), u[:, 1::2].clamp(-7.0, 7.0)
    ref = (up + 1) * gate * torch.sigmoid(1.702 * gate)
    act = torch.empty(KT, I, device=dev)
    nbytes = KT * 2 * I * (H // 32) * 17
    for bn, bkb, warps, stages in ((16, 32, 1, 3), (16, 32, 2, 3), (32, 32, 2, 3), (32, 32, 4, 3), (64, 32, 4, 3),
                                   (16, 32, 4, 2)):
        def run():
            moe.moe_mlp1_gemv[(KT, triton.cdiv(2 * I, bn))](x, ids, q1, s1, b1, act, 1, H, I, KT, 7.0, 1.702,
                                                            BLOCK_N=bn, BLOCK_KB=bkb, STAGES=stages, num_warps=warps)
        run()
        ok = torch.allclose(act, ref, rtol=1e-3, atol=1e-3)
        us, gbs = bench(run, nbytes)
        rows.append(("mlp1 4x5760x2880", f"moe_mlp1_gemv bn{bn} bkb{bkb} w{warps} s{stages}", ok, us, gbs))
    for bn, bb, warps, stages in ((16, 16, 4, 3), (32, 16, 4, 3), (16, 32, 4, 3), (32, 8, 4, 4), (64, 8, 8, 3),
                                  (8, 32, 4, 3), (32, 16, 8, 3), (16, 16, 2, 3)):
        def run():
            moe.moe_mlp1_gemv1[(KT, triton.cdiv(2 * I, bn))](x, ids, q1, s1, b1, act, 1, H, I, KT, 7.0, 1.702,
                                                             BLOCK_N=bn, BLOCK_B=bb, num_warps=warps,
                                                             num_stages=stages)
        run()
        ok = torch.allclose(act, ref, rtol=1e-3, atol=1e-3)
        us, gbs = bench(run, nbytes)
        rows.append(("mlp1 4x5760x2880", f"simple bn{bn} bb{bb} w{warps} s{stages}", ok, us, gbs))
    # mlp2 through the project's kernel, other settings
    q2, s2, w2 = mxfp4_weights(E, H, I)
    b2 = (torch.randn(E, H, device=dev) * 0.02).to(torch.bfloat16)
    a = torch.randn(KT, I, device=dev)
    wts = torch.softmax(torch.randn(KT, device=dev), 0)
    ref2 = sum(wts[j] * (w2[e] @ a[j] + b2[e].float()) for j, e in enumerate(ids.tolist()))
    xr = torch.zeros(1, H, device=dev)
    nbytes2 = KT * H * (I // 32) * 17
    for bn, bb, warps, stages in ((16, 16, 4, 3), (8, 16, 4, 3), (8, 32, 4, 3), (4, 32, 4, 3), (16, 8, 4, 4),
                                  (8, 16, 2, 3)):
        def run():
            xr.zero_()
            moe.moe_mlp2_gemv1[(1, triton.cdiv(H, bn))](a, ids, wts, q2, s2, b2, xr, 1, H, I, KT, BLOCK_N=bn,
                                                        BLOCK_B=bb, num_warps=warps, num_stages=stages)
        run()
        ok = torch.allclose(xr[0], ref2, rtol=1e-3, atol=1e-3)
        us, gbs = bench(run, nbytes2)
        rows.append(("mlp2 4x2880x2880", f"moe_mlp2_gemv1 bn{bn} bb{bb} w{warps} s{stages}", ok, us, gbs))
    for bn, bkb, j, warps, stages in ((4, 32, 4, 4, 3), (8, 32, 4, 4, 3)):
        def run():
            xr.zero_()
            moe.moe_mlp2_gemv[(1, triton.cdiv(H, bn))](a, ids, wts, q2, s2, b2, xr, 1, H, I, KT, BLOCK_N=bn,
                                                       BLOCK_KB=bkb, J=j, STAGES=stages, num_warps=warps)
        run()
        ok = torch.allclose(xr[0], ref2, rtol=1e-3, atol=1e-3)
        us, gbs = bench(run, nbytes2)
        rows.append(("mlp2 4x2880x2880", f"moe_mlp2_gemv bn{bn} bkb{bkb} J{j} w{warps} s{stages}", ok, us, gbs))
    return rows


def sorted_pairs(ids, P, E, bm):
    """moe_sort of the token-expert pairs into tiles of bm rows: (max_tiles, pair_order, pair_pos, tiles, count)."""
    max_tiles = triton.cdiv(P, bm) + E
    order = torch.empty(P, dtype=torch.int32, device=dev)
    pos = torch.empty(P, dtype=torch.int32, device=dev)
    tiles = torch.empty(max_tiles, 3, dtype=torch.int32, device=dev)
    nt = torch.empty(1, dtype=torch.int32, device=dev)
    moe.moe_sort[(1,)](ids, P, E, order, pos, tiles, nt, BLOCK_M=bm, BLOCK_E=128, BLOCK_P=64, num_warps=4)
    return max_tiles, order, pos, tiles, nt


def mlp1_ref(xn, w1, b1, tok, e):
    """swiglu(mlp1_e(xn[tok])) in fp32 for the selected pairs (tok, e: their tokens and experts)."""
    u = torch.einsum("pk,pnk->pn", xn[tok].float(), w1[e]) + b1[e].float()
    gate, up = u[:, 0::2].clamp(max=7.0), u[:, 1::2].clamp(-7.0, 7.0)
    return (up + 1) * gate * torch.sigmoid(1.702 * gate)


def moe_gemm_lab():
    """The grouped MXFP4 mlp1 product of a 1024-token prefill chunk (random routing over 32 experts) and of a
    64-sequence decode step, under other tile shapes (the sort's tile size follows BLOCK_M)."""
    rows = []
    E, H, I, KT = 32, 2880, 2880, 4
    q1, s1, w1 = mxfp4_weights(E, 2 * I, H)
    b1 = (torch.randn(E, 2 * I, device=dev) * 0.02).to(torch.bfloat16)
    for T in (1024, 64):
        P = T * KT
        xn = torch.randn(T, H, device=dev).to(torch.bfloat16)
        ids = torch.stack([torch.randperm(E, device=dev)[:KT] for _ in range(T)]).to(torch.int32).reshape(-1)
        flops = 2.0 * P * 2 * I * H
        for bm, bn, bk, warps, stages in ((64, 128, 64, 8, 4), (128, 128, 64, 8, 3), (128, 256, 64, 8, 3),
                                          (64, 256, 64, 8, 3), (32, 128, 128, 4, 4), (16, 128, 128, 4, 4)):
            max_tiles, order, pos, tiles, nt = sorted_pairs(ids, P, E, bm)
            act = torch.empty(P, I, device=dev, dtype=torch.bfloat16)

            def run():
                moe.moe_mlp1_gemm[(max_tiles, triton.cdiv(2 * I, bn))](
                    xn, order, tiles, nt, q1, s1, b1, act, H, I, KT, 7.0, 1.702, BLOCK_M=bm, BLOCK_N=bn,
                    BLOCK_K=bk, num_warps=warps, num_stages=stages)
            try:
                run()
                tok = order.long() // KT
                e = ids[order.long()].long()
                sel = torch.arange(0, P, max(1, P // 64), device=dev)
                ref = mlp1_ref(xn, w1, b1, tok[sel], e[sel])
                ok = torch.allclose(act[sel].float(), ref, rtol=3e-2, atol=3e-2)
                us, _ = bench(run, 1)
                rows.append((f"moe mlp1 T={T}", f"moe_mlp1_gemm bm{bm} bn{bn} bk{bk} w{warps} s{stages}", ok, us,
                             flops / (us * 1e-6) / 1e3))  # column: GFLOP/s here
            except Exception as exc:  # a tile shape that does not compile or fit
                rows.append((f"moe mlp1 T={T}", f"moe_mlp1_gemm bm{bm} bn{bn} bk{bk}: {type(exc).__name__}", False,
                             0.0, 0.0))
    return rows


M16_TILES = ((16, 128, 128, 4, 4), (16, 64, 128, 4, 4), (16, 64, 256, 4, 3), (16, 128, 64, 4, 6),
             (16, 256, 128, 8, 3), (16, 128, 128, 8, 4), (16, 64, 128, 2, 4), (16, 32, 256, 2, 4))


def m16_lab():
    """The grouped expert products of decode batches (16-row tiles) under other tile shapes: mlp1 and mlp2 of the
    20b at 8 and 64 tokens with random routing. Column: GB/s of the weights of the experts in use."""
    rows = []
    E, H, I, KT = 32, 2880, 2880, 4
    q1, s1, w1 = mxfp4_weights(E, 2 * I, H)
    q2, s2, w2 = mxfp4_weights(E, H, I)
    b1 = (torch.randn(E, 2 * I, device=dev) * 0.02).to(torch.bfloat16)
    b2 = (torch.randn(E, H, device=dev) * 0.02).to(torch.bfloat16)
    for T in (64, 8):
        P = T * KT
        xn = torch.randn(T, H, device=dev).to(torch.bfloat16)
        g = torch.Generator(device=dev).manual_seed(T)
        ids = torch.stack([torch.randperm(E, device=dev, generator=g)[:KT] for _ in range(T)]).to(torch.int32)
        ids = ids.reshape(-1)
        used = int(torch.unique(ids).numel())
        b1_bytes = used * 2 * I * H * 17 // 32
        b2_bytes = used * H * I * 17 // 32
        for bm, bn, bk, warps, stages in M16_TILES:
            max_tiles, order, pos, tiles, nt = sorted_pairs(ids, P, E, bm)
            act = torch.empty(P, I, device=dev, dtype=torch.bfloat16)
            y2 = torch.empty(P, H, device=dev)
            tok = order.long() // KT
            e = ids[order.long()].long()

            def run1():
                moe.moe_mlp1_gemm[(max_tiles, triton.cdiv(2 * I, bn))](
                    xn, order, tiles, nt, q1, s1, b1, act, H, I, KT, 7.0, 1.702, BLOCK_M=bm, BLOCK_N=bn,
                    BLOCK_K=bk, num_warps=warps, num_stages=stages)

            def run2():
                moe.moe_mlp2_gemm[(max_tiles, triton.cdiv(H, bn))](
                    act, tiles, nt, q2, s2, b2, y2, H, I, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, num_warps=warps,
                    num_stages=stages)
            name = f"bm{bm} bn{bn} bk{bk} w{warps} s{stages}"
            try:
                run1()
                sel = torch.arange(0, P, max(1, P // 32), device=dev)
                ref = mlp1_ref(xn, w1, b1, tok[sel], e[sel])
                ok = torch.allclose(act[sel].float(), ref, rtol=3e-2, atol=3e-2)
                us, gbs = bench(run1, b1_bytes)
                rows.append((f"mlp1 T={T} ({used} experts)", f"moe_mlp1_gemm {name}", ok, us, gbs))
                run2()
                ref2 = torch.einsum("pk,pnk->pn", act[sel].float(), w2[e[sel]]) + b2[e[sel]].float()
                ok = torch.allclose(y2[sel], ref2, rtol=3e-2, atol=3e-2 * ref2.abs().max().item())
                us, gbs = bench(run2, b2_bytes)
                rows.append((f"mlp2 T={T} ({used} experts)", f"moe_mlp2_gemm {name}", ok, us, gbs))
            except Exception as exc:  # a tile shape that does not compile or fit
                rows.append((f"T={T}", f"{name}: {type(exc).__name__}: {str(exc)[:120]}", False, 0.0, 0.0))
    return rows


def xg_form(x):
    """fp32/bf16 rows -> the xg form (elementwise.py): bf16 of 2^64 x, groups of 8 in the order 0 4 1 5 2 6 3 7."""
    T, K = x.shape
    return (x.float() * 2.0 ** 64).to(torch.bfloat16).reshape(T, K // 8, 2, 4).transpose(2, 3).reshape(T, K)


def xg_values(y):
    T, K = y.shape
    return y.float().reshape(T, K // 8, 4, 2).transpose(2, 3).reshape(T, K) * 2.0 ** -64


GMMA_TILES = [(4, 4), (2, 4), (4, 3), (8, 2), (4, 6), (2, 8), (1, 8)]


def gmma_lab(tiles=None):
    """The grouped expert products of decode batches on the tensor cores (moe_gemm_mma.py) under (W, STAGES)
    choices, against the compiled tl.dot_scaled 16-row tiles (moe.py) in the same process: 20b shapes, random
    routing at 8, 32 and 64 tokens, every token on the same 4 experts at 64 (tiles of 16). Column: GB/s of the
    weights of the experts in use, times the tiles that read them."""
    rows = []
    E, H, I, KT = 32, 2880, 2880, 4
    q1, s1, w1 = mxfp4_weights(E, 2 * I, H)
    q2, s2, w2 = mxfp4_weights(E, H, I)
    b1 = (torch.randn(E, 2 * I, device=dev) * 0.02).to(torch.bfloat16)
    b2 = (torch.randn(E, H, device=dev) * 0.02).to(torch.bfloat16)
    for T, mode in ((64, "random"), (32, "random"), (8, "random"), (64, "one")):
        P = T * KT
        xn = torch.randn(T, H, device=dev).to(torch.bfloat16)
        xg = xg_form(xn)
        g = torch.Generator(device=dev).manual_seed(T)
        if mode == "one":
            ids = torch.arange(KT, device=dev, dtype=torch.int32).repeat(T)
        else:
            ids = torch.stack([torch.randperm(E, device=dev, generator=g)[:KT] for _ in range(T)]).to(torch.int32)
            ids = ids.reshape(-1)
        max_tiles, order, pos, tiles_t, nt = sorted_pairs(ids, P, E, 16)
        ntiles = int(nt.item())
        b1_bytes = ntiles * 2 * I * H * 17 // 32
        b2_bytes = ntiles * H * I * 17 // 32
        tok = order.long() // KT
        e = ids[order.long()].long()
        ref1 = mlp1_ref(xn, w1, b1, tok, e)
        label = f"T={T} {mode} ({ntiles} tiles)"
        act = torch.empty(P, I, device=dev, dtype=torch.bfloat16)
        y2 = torch.empty(P, H, device=dev)

        def base1():
            moe.moe_mlp1_gemm[(max_tiles, triton.cdiv(2 * I, 64))](
                xn, order, tiles_t, nt, q1, s1, b1, act, H, I, KT, 7.0, 1.702, BLOCK_M=16, BLOCK_N=64,
                BLOCK_K=128, num_warps=4, num_stages=4)

        def base2():
            moe.moe_mlp2_gemm[(max_tiles, triton.cdiv(H, 64))](
                act, tiles_t, nt, q2, s2, b2, y2, H, I, BLOCK_M=16, BLOCK_N=64, BLOCK_K=128, num_warps=4,
                num_stages=4)
        base1()
        ok = torch.allclose(act.float(), ref1, rtol=3e-2, atol=3e-2)
        us, gbs = bench(base1, b1_bytes)
        rows.append((f"mlp1 {label}", "moe_mlp1_gemm_m16 (compiled tile)", ok, us, gbs))
        base2()
        ref2 = torch.einsum("pk,pnk->pn", act.float(), w2[e]) + b2[e].float()
        ok = torch.allclose(y2, ref2, rtol=3e-2, atol=3e-2 * ref2.abs().max().item())
        us, gbs = bench(base2, b2_bytes)
        rows.append((f"mlp2 {label}", "moe_mlp2_gemm_m16 (compiled tile)", ok, us, gbs))
        for tile in tiles or GMMA_TILES:
            w, st = tile[:2]
            extra = {"maxnreg": tile[2]} if len(tile) > 2 else {}
            actg = torch.empty(P, I, device=dev, dtype=torch.bfloat16)

            def run1():
                moe_gemm_mma.moe_mlp1_gemm_mma[(max_tiles, triton.cdiv(2 * I // 16, w))](
                    xg, order, tiles_t, nt, q1, s1, b1, actg, H, I, KT, 7.0, 1.702, W=w, STAGES=st, num_warps=w,
                    num_stages=1, **extra)

            def run2():
                moe_gemm_mma.moe_mlp2_gemm_mma[(max_tiles, triton.cdiv(H // 16, w))](
                    actg, tiles_t, nt, q2, s2, b2, y2, H, I, W=w, STAGES=st, num_warps=w, num_stages=1, **extra)
            name = f"gemm_mma W{w} S{st}" + (f" R{tile[2]}" if extra else "")
            try:
                run1()
                got = xg_values(actg)
                err1 = ((got - ref1).abs().max() / ref1.abs().max()).item()
                ok = err1 < 2e-2
                us, gbs = bench(run1, b1_bytes)
                rows.append((f"mlp1 {label}", f"{name} err {err1:.1e}", ok, us, gbs))
                run2()
                ref2 = torch.einsum("pk,pnk->pn", got, w2[e]) + b2[e].float()
                err2 = ((y2 - ref2).abs().max() / ref2.abs().max()).item()
                ok = err2 < 1e-4
                us, gbs = bench(run2, b2_bytes)
                rows.append((f"mlp2 {label}", f"{name} err {err2:.1e}", ok, us, gbs))
            except Exception as exc:
                rows.append((label, f"{name}: {type(exc).__name__}: {str(exc)[:160]}", False, 0.0, 0.0))
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["dense", "moe", "gemm", "moe_gemm", "m16", "gmma"], default=None)
    ap.add_argument("--gmma-tiles", nargs="*", default=None, help="W,STAGES[,MAXNREG] for the gmma lab")
    args = ap.parse_args()
    only = args.only
    gt = [tuple(int(v) for v in t.split(",")) for t in args.gmma_tiles] if args.gmma_tiles else None
    labs = {"dense": dense_lab, "moe": moe_lab, "gemm": gemm_lab, "moe_gemm": moe_gemm_lab, "m16": m16_lab,
            "gmma": lambda: gmma_lab(gt)}
    print(torch.cuda.get_device_name())
    for name, lab in labs.items():
        if only is not None and name != only:
            continue
        for r in lab():
            print(f"{r[0]:<22} {r[1]:<44} ok={r[2]!s:<5} {r[3]:9.2f} us {r[4]:8.0f} GB/s", flush=True)
