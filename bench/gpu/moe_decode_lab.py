"""Candidates for the one-token MXFP4 expert products (decode at batch 1), timed
on gpt-oss-20b shapes against the project's kernels (moe_mlp1_gemv1,
moe_mlp2_gemv1). The question each answers:

  w32   the exact fp32 decode, one 32-bit word (8 weights) at a time: 3 integer
        operations per weight (shift the nibble's sign to bit 31, arithmetic
        shift its exponent and mantissa down to bits 22..24, mask) instead of
        ~6 for the byte-wise decode: is the byte-wise kernel bound by the
        integer pipe (64 lanes per SM and clock on Hopper)?
  tc    the tensor cores (tl.dot_scaled, bf16 x MXFP4), x split into bf16 hi
        and lo rows of a 16-row tile (16 significant bits of x, weights exact):
        the decode of the weights is Triton's, the products cost nothing.

Each candidate is checked against a float64 reference first (max error over
the sum of |w x|). Run under the Triton interpreter on a CPU for the checks
alone: `TRITON_INTERPRET=1 python bench/gpu/moe_decode_lab.py --check`.

    python bench/gpu/moe_decode_lab.py [--check] [--only mlp1|mlp2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

ROOT = Path(__file__).resolve().parents[2]
if os.environ.get("TRITON_INTERPRET") == "1":  # the tests' fixes to the interpreter (bf16 dots, NumPy 2 scalars)
    sys.path.insert(0, str(ROOT / "tests"))
    import triton_interp

    moe = triton_interp.kernels().moe
else:
    sys.path.insert(0, str(ROOT / "triton_kernels"))
    import moe  # noqa: E402
_block_factor, _split4, _swiglu, _word_dot = moe._block_factor, moe._split4, moe._swiglu, moe._word_dot

_X_PRESCALE = tl.constexpr(18446744073709551616.0)  # 2^64


@triton.jit
def _w32_rows_dot(q32_ptr, s_ptr, grow, rm, x_ptr, KB, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr):
    """sum_k W[grow[r], k] x[k], exact fp32 products of the decoded weights (see moe._fp4_bits)."""
    acc = tl.zeros([BLOCK_R, BLOCK_B], tl.float32)
    for b0 in range(0, KB, BLOCK_B):
        bs = b0 + tl.arange(0, BLOCK_B)
        bm = bs < KB
        w = tl.load(q32_ptr + grow[:, None, None] * (KB * 4) + bs[None, :, None] * 4 + tl.arange(0, 4)[None, None, :],
                    mask=rm[:, None, None] & bm[None, :, None], other=0)
        w0, w1, w2, w3 = _split4(w)
        xp = x_ptr + bs[None, :, None] * 32 + tl.arange(0, 4)[None, None, :]
        xm = bm[None, :, None]
        x0 = tl.load(xp, mask=xm, other=0.0) * _X_PRESCALE
        x1 = tl.load(xp + 4, mask=xm, other=0.0) * _X_PRESCALE
        x2 = tl.load(xp + 8, mask=xm, other=0.0) * _X_PRESCALE
        x3 = tl.load(xp + 12, mask=xm, other=0.0) * _X_PRESCALE
        x4 = tl.load(xp + 16, mask=xm, other=0.0) * _X_PRESCALE
        x5 = tl.load(xp + 20, mask=xm, other=0.0) * _X_PRESCALE
        x6 = tl.load(xp + 24, mask=xm, other=0.0) * _X_PRESCALE
        x7 = tl.load(xp + 28, mask=xm, other=0.0) * _X_PRESCALE
        part = _word_dot(w0, x0, x1)
        part += _word_dot(w1, x2, x3)
        part += _word_dot(w2, x4, x5)
        part += _word_dot(w3, x6, x7)
        s = tl.load(s_ptr + grow[:, None] * KB + bs[None, :], mask=rm[:, None] & bm[None, :], other=0).to(tl.int32)
        acc += part * _block_factor(s)
    return tl.sum(acc, axis=1)


@triton.jit
def mlp1_w32(xn_ptr, ids_ptr, blocks_ptr, scales_ptr, bias_ptr, act_ptr, T, H, I, K_TOP, limit, alpha,
             BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    p = tl.program_id(0)
    e = tl.load(ids_ptr + p).to(tl.int64)
    t = (p // K_TOP).to(tl.int64)
    R = 2 * I
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rows < R
    grow = e * R + rows
    y = _w32_rows_dot(blocks_ptr.to(tl.pointer_type(tl.int32)), scales_ptr, grow, rm, xn_ptr + t * H, H // 32,
                      BLOCK_N, BLOCK_B)
    y += tl.load(bias_ptr + grow, mask=rm, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N // 2, 2]))
    cols = tl.program_id(1) * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
    tl.store(act_ptr + p.to(tl.int64) * I + cols, _swiglu(gate, up, limit, alpha), mask=cols < I)


@triton.jit
def mlp2_w32(act_ptr, ids_ptr, weights_ptr, blocks_ptr, scales_ptr, bias_ptr, x_ptr, T, H, I, K_TOP,
             BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    t = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rows < H
    total = tl.zeros([BLOCK_N], tl.float32)
    for j in range(0, K_TOP):
        p = t * K_TOP + j
        e = tl.load(ids_ptr + p).to(tl.int64)
        wt = tl.load(weights_ptr + p)
        grow = e * H + rows
        y = _w32_rows_dot(blocks_ptr.to(tl.pointer_type(tl.int32)), scales_ptr, grow, rm,
                          act_ptr + p.to(tl.int64) * I, I // 32, BLOCK_N, BLOCK_B)
        y += tl.load(bias_ptr + grow, mask=rm, other=0.0).to(tl.float32)
        total += wt * y
    xp = x_ptr + t.to(tl.int64) * H + rows
    tl.store(xp, tl.load(xp, mask=rm, other=0.0) + total, mask=rm)


@triton.jit
def _tc_rows_dot(q_ptr, s_ptr, rows, x_ptr, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """sum_k W[rows[n], k] x[k] on the tensor cores: row 0 of the A tile is bf16(x), row 1 bf16(x - bf16(x))."""
    rk = tl.arange(0, BLOCK_K)
    rb = tl.arange(0, BLOCK_K // 2)
    rs = tl.arange(0, BLOCK_K // 32)
    r16 = tl.arange(0, 16)[:, None]
    b_ptrs = q_ptr + rows.to(tl.int64)[:, None] * (K // 2) + rb[None, :]
    s_ptrs = s_ptr + rows.to(tl.int64)[:, None] * (K // 32) + rs[None, :]
    acc = tl.zeros([16, BLOCK_N], tl.float32)
    for k0 in tl.range(0, K, BLOCK_K):
        xv = tl.load(x_ptr + k0 + rk, mask=(k0 + rk) < K, other=0.0)
        hi = xv.to(tl.bfloat16)
        lo = (xv - hi.to(tl.float32)).to(tl.bfloat16)
        a = tl.where(r16 == 0, hi[None, :], tl.where(r16 == 1, lo[None, :], tl.zeros_like(hi)[None, :]))
        b = tl.load(b_ptrs + k0 // 2, mask=((k0 + (rb // 16) * 32) < K)[None, :], other=0)
        sc = tl.load(s_ptrs + k0 // 32, mask=((k0 + 32 * rs) < K)[None, :], other=127)
        acc = tl.dot_scaled(a, None, "bf16", tl.trans(b), sc, "e2m1", acc, fast_math=True)
    return tl.sum(tl.where(r16 < 2, acc, 0.0), axis=0)


@triton.jit
def mlp1_tc(xn_ptr, ids_ptr, blocks_ptr, scales_ptr, bias_ptr, act_ptr, T, H, I, K_TOP, limit, alpha,
            BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    p = tl.program_id(0)
    e = tl.load(ids_ptr + p).to(tl.int64)
    t = (p // K_TOP).to(tl.int64)
    R = 2 * I
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    y = _tc_rows_dot(blocks_ptr + e * R * (H // 2), scales_ptr + e * R * (H // 32), tl.minimum(rn, R - 1),
                     xn_ptr + t * H, H, BLOCK_N, BLOCK_K)
    y += tl.load(bias_ptr + e * R + rn, mask=rn < R, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N // 2, 2]))
    cols = tl.program_id(1) * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
    tl.store(act_ptr + p.to(tl.int64) * I + cols, _swiglu(gate, up, limit, alpha), mask=cols < I)


@triton.jit
def mlp2_tc(act_ptr, ids_ptr, weights_ptr, blocks_ptr, scales_ptr, bias_ptr, x_ptr, T, H, I, K_TOP,
            BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    t = tl.program_id(0)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rn < H
    total = tl.zeros([BLOCK_N], tl.float32)
    for j in range(0, K_TOP):
        p = t * K_TOP + j
        e = tl.load(ids_ptr + p).to(tl.int64)
        wt = tl.load(weights_ptr + p)
        y = _tc_rows_dot(blocks_ptr + e * H * (I // 2), scales_ptr + e * H * (I // 32), tl.minimum(rn, H - 1),
                         act_ptr + p.to(tl.int64) * I, I, BLOCK_N, BLOCK_K)
        y += tl.load(bias_ptr + e * H + rn, mask=rm, other=0.0).to(tl.float32)
        total += wt * y
    xp = x_ptr + t.to(tl.int64) * H + rn
    tl.store(xp, tl.load(xp, mask=rm, other=0.0) + total, mask=rm)


FP4 = [0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6]


def mxfp4_weights(E, R, K, dev):
    g = torch.Generator(device="cpu").manual_seed(E * 7 + R)
    q = torch.randint(0, 256, (E, R, K // 32, 16), dtype=torch.uint8, generator=g)
    s = torch.randint(119, 128, (E, R, K // 32), dtype=torch.uint8, generator=g)
    fp4 = torch.tensor(FP4, dtype=torch.float64)
    w = torch.stack([fp4[(q & 15).long()], fp4[(q >> 4).long()]], -1).reshape(E, R, K // 32, 32)
    w = (w * torch.exp2(s.double() - 127)[..., None]).reshape(E, R, K)
    return q.to(dev), s.to(dev), w


def bench(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median") * 1e3


def lab(dev, check_only, only, E=32, H=2880, I=2880, KT=4):
    rows = []
    ids = torch.tensor([i % E for i in (3, 17, 8, 30)][:KT], dtype=torch.int32, device=dev)
    if only in (None, "mlp1"):
        q1, s1, w1 = mxfp4_weights(E, 2 * I, H, dev)
        b1 = (torch.randn(E, 2 * I) * 0.02).to(torch.bfloat16)
        x = torch.randn(1, H)
        u = torch.stack([w1[e] @ x[0].double() + b1[e].double() for e in ids.tolist()])
        mag = torch.stack([w1[e].abs() @ x[0].double().abs() for e in ids.tolist()])
        ref = u
        b1d, xd = b1.to(dev), x.to(dev)
        act = torch.empty(KT, I, device=dev)
        nbytes = KT * 2 * I * (H // 32) * 17
        limit = 1e30  # no clamp: compare the products; swiglu is the same code in every candidate

        def err(a):
            # invert nothing: compare swiglu outputs against swiglu of the float64 reference
            g, uu = ref[:, 0::2], ref[:, 1::2]
            want = (uu + 1) * g * torch.sigmoid(1.702 * g)
            scale = (mag[:, 0::2] * (uu.abs() + 1) + mag[:, 1::2] * g.abs()).clamp(min=1e-30)
            return ((a.cpu().double() - want).abs() / scale).max().item()

        cands = [("moe_mlp1_gemv1 (project)", lambda bn, bb, w, s: moe.moe_mlp1_gemv1[(KT, triton.cdiv(2 * I, bn))](
            xd, ids, q1, s1, b1d, act, 1, H, I, KT, limit, 1.702, BLOCK_N=bn, BLOCK_B=bb, num_warps=w, num_stages=s),
            [(64, 8, 8, 3)])]
        cands.append(("tc", lambda bn, bk, w, s: mlp1_tc[(KT, triton.cdiv(2 * I, bn))](
            xd, ids, q1, s1, b1d, act, 1, H, I, KT, limit, 1.702, BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=s),
            [(64, 256, 4, 3)]))
        cands.append(("tc4", lambda bn, wl, w, s: mlp1_tc4[(KT, triton.cdiv(2 * I, bn))](
            xd, ids, q1, s1, b1d, act, 1, H, I, KT, limit, 1.702, BLOCK_N=bn, W_LHS=wl, num_warps=w, num_stages=s),
            [(128, 0, 4, 3), (64, 0, 4, 3), (128, 1, 4, 3), (64, 1, 4, 3), (128, 0, 8, 3), (128, 0, 4, 4),
             (64, 0, 4, 5), (32, 0, 4, 4), (256, 0, 8, 3)]))
        cands.append(("w32", lambda bn, bb, w, s: mlp1_w32[(KT, triton.cdiv(2 * I, bn))](
            xd, ids, q1, s1, b1d, act, 1, H, I, KT, limit, 1.702, BLOCK_N=bn, BLOCK_B=bb, num_warps=w, num_stages=s),
            [(16, 16, 4, 3)]))
        cands.append(("gemv1 tiles", lambda bn, bb, w, s: moe.moe_mlp1_gemv1[(KT, triton.cdiv(2 * I, bn))](
            xd, ids, q1, s1, b1d, act, 1, H, I, KT, limit, 1.702, BLOCK_N=bn, BLOCK_B=bb, num_warps=w, num_stages=s),
            [(32, 8, 4, 3), (32, 8, 8, 3), (16, 8, 4, 3), (64, 8, 8, 4), (64, 4, 4, 4), (32, 4, 2, 4)]))
        for name, launch, tiles in cands:
            for tile in (tiles[:1] if check_only else tiles):
                try:
                    launch(*tile)
                    e = err(act)
                    us = 0.0 if check_only else bench(lambda: launch(*tile))
                    rows.append(("mlp1 4x5760x2880", f"{name} {tile}", e, us, nbytes / (us * 1e-6) / 1e9 if us else 0))
                except Exception as exc:  # noqa: BLE001 - a tile that does not compile
                    rows.append(("mlp1 4x5760x2880", f"{name} {tile}: {type(exc).__name__} {str(exc)[:80]}", -1, 0, 0))
    if only in (None, "mlp2"):
        q2, s2, w2 = mxfp4_weights(E, H, I, dev)
        b2 = (torch.randn(E, H) * 0.02).to(torch.bfloat16)
        a = torch.randn(KT, I)
        wts = torch.softmax(torch.randn(KT), 0)
        ref2 = sum(wts[j].double() * (w2[e] @ a[j].double() + b2[e].double()) for j, e in enumerate(ids.tolist()))
        mag2 = sum(wts[j].double() * (w2[e].abs() @ a[j].double().abs()) for j, e in enumerate(ids.tolist()))
        x0 = torch.randn(1, H)
        ad, wtsd, b2d = a.to(dev), wts.to(dev), b2.to(dev)
        xr = torch.empty(1, H, device=dev)
        nbytes2 = KT * H * (I // 32) * 17

        def err2():
            return ((xr[0].cpu().double() - x0[0].double() - ref2).abs() / (mag2 + x0[0].double().abs())).max().item()

        def wrap(f):
            def run(*tile):
                xr.copy_(x0)
                f(*tile)
            return run

        cands = [("moe_mlp2_gemv1 (project)", wrap(lambda bn, bb, w, s: moe.moe_mlp2_gemv1[(1, triton.cdiv(H, bn))](
            ad, ids, wtsd, q2, s2, b2d, xr, 1, H, I, KT, BLOCK_N=bn, BLOCK_B=bb, num_warps=w, num_stages=s)),
            [(4, 32, 4, 3)])]
        cands.append(("w32", wrap(lambda bn, bb, w, s: mlp2_w32[(1, triton.cdiv(H, bn))](
            ad, ids, wtsd, q2, s2, b2d, xr, 1, H, I, KT, BLOCK_N=bn, BLOCK_B=bb, num_warps=w, num_stages=s)),
            [(4, 32, 4, 3)]))
        cands.append(("tc", wrap(lambda bn, bk, w, s: mlp2_tc[(1, triton.cdiv(H, bn))](
            ad, ids, wtsd, q2, s2, b2d, xr, 1, H, I, KT, BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=s)),
            [(32, 128, 4, 4)]))
        cands.append(("tc4", wrap(lambda bn, wl, w, s: mlp2_tc4[(1, triton.cdiv(H, bn))](
            ad, ids, wtsd, q2, s2, b2d, xr, 1, H, I, KT, BLOCK_N=bn, W_LHS=wl, num_warps=w, num_stages=s)),
            [(16, 0, 4, 3), (32, 0, 4, 3), (16, 0, 2, 3), (32, 0, 4, 4), (16, 0, 4, 5), (64, 0, 4, 3), (64, 1, 4, 3)]))
        cands.append(("gemv1 tiles", wrap(lambda bn, bb, w, s: moe.moe_mlp2_gemv1[(1, triton.cdiv(H, bn))](
            ad, ids, wtsd, q2, s2, b2d, xr, 1, H, I, KT, BLOCK_N=bn, BLOCK_B=bb, num_warps=w, num_stages=s)),
            [(8, 16, 4, 3), (16, 8, 4, 3), (4, 32, 4, 4), (8, 32, 8, 3)]))
        for name, launch, tiles in cands:
            for tile in (tiles[:1] if check_only else tiles):
                try:
                    launch(*tile)
                    e = err2()
                    us = 0.0 if check_only else bench(lambda: launch(*tile))
                    rows.append(("mlp2 4x2880x2880", f"{name} {tile}", e, us, nbytes2 / (us * 1e-6) / 1e9 if us else 0))
                except Exception as exc:  # noqa: BLE001
                    rows.append(("mlp2 4x2880x2880", f"{name} {tile}: {type(exc).__name__} {str(exc)[:80]}", -1, 0, 0))
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="correctness only (works under TRITON_INTERPRET=1)")
    ap.add_argument("--only", choices=("mlp1", "mlp2", "split"))
    ap.add_argument("--small", action="store_true", help="small shapes (for the interpreter)")
    args = ap.parse_args()
    dev = "cpu" if os.environ.get("TRITON_INTERPRET") == "1" else "cuda"
    if dev == "cuda":
        print(torch.cuda.get_device_name())
    torch.manual_seed(0)
    kw = dict(E=4, H=256, I=128, KT=2) if args.small else {}
    rows = split_lab(dev, **kw) if args.only == "split" else lab(dev, args.check, args.only, **kw)
    for r in rows:
        print(f"{r[0]:<18} {r[1]:<44} err={r[2]:9.2e} {r[3]:9.2f} us {r[4]:8.0f} GB/s", flush=True)



# ---------------------------------------------------------------------------------------------------------------
# tc2: the weights decoded by this file (one prmt and 15 shift/mask operations per 8 weights) into bf16 bit patterns
# FP4 x 2^-126 (sign -> bit 15, exponent and mantissa -> bits 6..8: exact, the +-0.5 codes subnormal), the block
# scale 2^(s - 1) applied to the fp32 partial sum of each 32-weight block, x split into bf16 hi and lo columns.

_DECODE_ASM = tl.constexpr("""
{
.reg .b32 w, s, t;
prmt.b32 w, $4, 0, 0x3120;
shl.b32 s, w, 12;
shl.b32 t, w, 6;
and.b32 s, s, 0x80008000;
and.b32 t, t, 0x01C001C0;
or.b32 $0, s, t;
shl.b32 s, w, 4;
shr.b32 t, w, 2;
and.b32 s, s, 0x80008000;
and.b32 t, t, 0x01C001C0;
or.b32 $1, s, t;
shl.b32 s, w, 8;
shl.b32 t, w, 2;
and.b32 s, s, 0x80008000;
and.b32 t, t, 0x01C001C0;
or.b32 $2, s, t;
shr.b32 t, w, 6;
and.b32 s, w, 0x80008000;
and.b32 t, t, 0x01C001C0;
or.b32 $3, s, t;
}
""")


@triton.jit
def _decode_bf16(q):
    """q u8 [..., NB] -> bf16 [..., 2 NB]: FP4 x 2^-126 of the low and high nibble of every byte, in element order."""
    lo, hi = tl.inline_asm_elementwise(_DECODE_ASM, "=r,=r,=r,=r,r", [q], dtype=(tl.bfloat16, tl.bfloat16),
                                       is_pure=True, pack=4)
    w = tl.join(lo, hi)
    return tl.reshape(w, q.shape[:-1] + [q.shape[-1] * 2])


@triton.jit
def _tc2_rows_dot(q_ptr, s_ptr, rows, x_ptr, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, W_LHS: tl.constexpr):
    """sum_k W[rows[n], k] x[k]; one 32-weight block per product (BLOCK_K = 32 * blocks per step), each block's
    fp32 result times its scale."""
    NB: tl.constexpr = BLOCK_K // 32
    rk = tl.arange(0, 32)
    rb = tl.arange(0, 16)
    r16 = tl.arange(0, 16)
    acc = tl.zeros([BLOCK_N], tl.float32)
    q_rows = q_ptr + rows.to(tl.int64)[:, None] * (K // 2) + rb[None, :]
    s_rows = s_ptr + rows.to(tl.int64) * (K // 32)
    for k0 in tl.range(0, K, 32):
        xv = tl.load(x_ptr + k0 + rk)
        hi = xv.to(tl.bfloat16)
        lo = (xv - hi.to(tl.float32)).to(tl.bfloat16)
        q = tl.load(q_rows + k0 // 2)                                   # [BN, 16] u8
        w = _decode_bf16(q)                                             # [BN, 32] bf16
        sc = tl.load(s_rows + k0 // 32).to(tl.int32)
        f1 = ((tl.minimum(sc, 128) + 126) << 23).to(tl.float32, bitcast=True)   # 2^(min(s, 128) - 1)
        f2 = ((tl.maximum(sc, 128) - 1) << 23).to(tl.float32, bitcast=True)     # 2^(max(s, 128) - 128)
        if W_LHS:
            xt = tl.where(r16[None, :] == 0, hi[:, None], tl.where(r16[None, :] == 1, lo[:, None],
                                                                    tl.zeros_like(hi)[:, None]))   # [32, 16]
            d = tl.dot(w, xt)                                                                     # [BN, 16]
            part = tl.sum(tl.where(r16[None, :] < 2, d, 0.0), axis=1)
        else:
            xa = tl.where(r16[:, None] == 0, hi[None, :], tl.where(r16[:, None] == 1, lo[None, :],
                                                                    tl.zeros_like(hi)[None, :]))   # [16, 32]
            d = tl.dot(xa, tl.trans(w))                                                           # [16, BN]
            part = tl.sum(tl.where(r16[:, None] < 2, d, 0.0), axis=0)
        acc += (part * f1) * f2
    return acc


@triton.jit
def mlp1_tc2(xn_ptr, ids_ptr, blocks_ptr, scales_ptr, bias_ptr, act_ptr, T, H, I, K_TOP, limit, alpha,
             BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, W_LHS: tl.constexpr):
    p = tl.program_id(0)
    e = tl.load(ids_ptr + p).to(tl.int64)
    t = (p // K_TOP).to(tl.int64)
    R = 2 * I
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    y = _tc2_rows_dot(blocks_ptr + e * R * (H // 2), scales_ptr + e * R * (H // 32), tl.minimum(rn, R - 1),
                      xn_ptr + t * H, H, BLOCK_N, BLOCK_K, W_LHS)
    y += tl.load(bias_ptr + e * R + rn, mask=rn < R, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N // 2, 2]))
    cols = tl.program_id(1) * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
    tl.store(act_ptr + p.to(tl.int64) * I + cols, _swiglu(gate, up, limit, alpha), mask=cols < I)


@triton.jit
def _tc3_rows_dot(q_ptr, s_ptr, rows, x_ptr, K, BLOCK_N: tl.constexpr, W_LHS: tl.constexpr):
    """sum_k W[rows[n], k] x[k], 8 blocks (256 weights) per step in one product against a block-diagonal x:
    column 2c of B holds bf16(2^64 x) on block c's 32 rows, column 2c + 1 the rest (2^64 x - hi); so the product's
    columns are each block's partial sums, scaled by 2^(s - 127 + 62) per (row, block) before accumulating."""
    rk = tl.arange(0, 256)
    rb = tl.arange(0, 128)
    rc = tl.arange(0, 16)
    acc = tl.zeros([BLOCK_N, 16], tl.float32)
    q_rows = q_ptr + rows.to(tl.int64)[:, None] * (K // 2) + rb[None, :]
    s_rows = s_ptr + rows.to(tl.int64)[:, None] * (K // 32) + (rc // 2)[None, :]
    for k0 in tl.range(0, K, 256):
        k_in = (k0 + rk) < K
        xv = tl.load(x_ptr + k0 + rk, mask=k_in, other=0.0) * _X_PRESCALE
        hi = xv.to(tl.bfloat16)
        lo = (xv - hi.to(tl.float32)).to(tl.bfloat16)
        col = (rk // 32) * 2
        xb = tl.where(rc[None, :] == col[:, None], hi[:, None],
                      tl.where(rc[None, :] == col[:, None] + 1, lo[:, None], tl.zeros_like(hi)[:, None]))  # [256, 16]
        q = tl.load(q_rows + k0 // 2, mask=((k0 + (rb // 16) * 32) < K)[None, :], other=0)               # [BN, 128]
        w = _decode_bf16(q)                                                                             # [BN, 256]
        sc = tl.load(s_rows + k0 // 32, mask=((k0 + 32 * (rc // 2)) < K)[None, :], other=0).to(tl.int32)
        if W_LHS:
            d = tl.dot(w, xb)                                                                           # [BN, 16]
            acc += d * _block_factor(sc)
        else:
            d = tl.dot(tl.trans(xb), tl.trans(w))                                                       # [16, BN]
            acc += tl.trans(d) * _block_factor(sc)
    return tl.sum(acc, axis=1)


@triton.jit
def mlp1_tc3(xn_ptr, ids_ptr, blocks_ptr, scales_ptr, bias_ptr, act_ptr, T, H, I, K_TOP, limit, alpha,
             BLOCK_N: tl.constexpr, W_LHS: tl.constexpr):
    p = tl.program_id(0)
    e = tl.load(ids_ptr + p).to(tl.int64)
    t = (p // K_TOP).to(tl.int64)
    R = 2 * I
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    y = _tc3_rows_dot(blocks_ptr + e * R * (H // 2), scales_ptr + e * R * (H // 32), tl.minimum(rn, R - 1),
                      xn_ptr + t * H, H, BLOCK_N, W_LHS)
    y += tl.load(bias_ptr + e * R + rn, mask=rn < R, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N // 2, 2]))
    cols = tl.program_id(1) * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
    tl.store(act_ptr + p.to(tl.int64) * I + cols, _swiglu(gate, up, limit, alpha), mask=cols < I)


@triton.jit
def _decode_bf16_pair(q):
    """q u8 [..., NB] -> (lo, hi) bf16 [..., NB]: FP4 x 2^-126 of each byte's low (element 2i) and high nibble."""
    return tl.inline_asm_elementwise(_DECODE_ASM, "=r,=r,=r,=r,r", [q], dtype=(tl.bfloat16, tl.bfloat16),
                                     is_pure=True, pack=4)


@triton.jit
def _xdiag(x_ptr, k0, K, PAR: tl.constexpr):
    """[128, 16] bf16: row i is element 2i + PAR of the 256 at k0; column 2 (i // 16) holds hi = bf16(2^64 x),
    column 2 (i // 16) + 1 holds lo = bf16(2^64 x - hi), other columns zero."""
    ri = tl.arange(0, 128)
    rc = tl.arange(0, 16)
    k = k0 + 2 * ri + PAR
    xv = tl.load(x_ptr + k, mask=k < K, other=0.0) * _X_PRESCALE
    hi = xv.to(tl.bfloat16)
    lo = (xv - hi.to(tl.float32)).to(tl.bfloat16)
    col = (ri // 16) * 2
    return tl.where(rc[None, :] == col[:, None], hi[:, None],
                    tl.where(rc[None, :] == col[:, None] + 1, lo[:, None], tl.zeros_like(hi)[:, None]))


@triton.jit
def _tc4_rows_dot(q_ptr, s_ptr, rows, x_ptr, K, BLOCK_N: tl.constexpr, W_LHS: tl.constexpr):
    rb = tl.arange(0, 128)
    rc = tl.arange(0, 16)
    acc = tl.zeros([BLOCK_N, 16], tl.float32)
    q_rows = q_ptr + rows.to(tl.int64)[:, None] * (K // 2) + rb[None, :]
    s_rows = s_ptr + rows.to(tl.int64)[:, None] * (K // 32) + (rc // 2)[None, :]
    for k0 in tl.range(0, K, 256):
        xe = _xdiag(x_ptr, k0, K, 0)
        xo = _xdiag(x_ptr, k0, K, 1)
        q = tl.load(q_rows + k0 // 2, mask=((k0 + (rb // 16) * 32) < K)[None, :], other=0)               # [BN, 128]
        wl, wh = _decode_bf16_pair(q)
        sc = tl.load(s_rows + k0 // 32, mask=((k0 + 32 * (rc // 2)) < K)[None, :], other=0).to(tl.int32)
        if W_LHS:
            d = tl.dot(wl, xe)
            d = tl.dot(wh, xo, d)
            acc += d * _block_factor(sc)
        else:
            d = tl.dot(tl.trans(xe), tl.trans(wl))
            d = tl.dot(tl.trans(xo), tl.trans(wh), d)
            acc += tl.trans(d) * _block_factor(sc)
    return tl.sum(acc, axis=1)


@triton.jit
def mlp1_tc4(xn_ptr, ids_ptr, blocks_ptr, scales_ptr, bias_ptr, act_ptr, T, H, I, K_TOP, limit, alpha,
             BLOCK_N: tl.constexpr, W_LHS: tl.constexpr):
    p = tl.program_id(0)
    e = tl.load(ids_ptr + p).to(tl.int64)
    t = (p // K_TOP).to(tl.int64)
    R = 2 * I
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    y = _tc4_rows_dot(blocks_ptr + e * R * (H // 2), scales_ptr + e * R * (H // 32), tl.minimum(rn, R - 1),
                      xn_ptr + t * H, H, BLOCK_N, W_LHS)
    y += tl.load(bias_ptr + e * R + rn, mask=rn < R, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N // 2, 2]))
    cols = tl.program_id(1) * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
    tl.store(act_ptr + p.to(tl.int64) * I + cols, _swiglu(gate, up, limit, alpha), mask=cols < I)


@triton.jit
def mlp2_tc4(act_ptr, ids_ptr, weights_ptr, blocks_ptr, scales_ptr, bias_ptr, x_ptr, T, H, I, K_TOP,
             BLOCK_N: tl.constexpr, W_LHS: tl.constexpr):
    t = tl.program_id(0)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rn < H
    total = tl.zeros([BLOCK_N], tl.float32)
    for j in range(0, K_TOP):
        p = t * K_TOP + j
        e = tl.load(ids_ptr + p).to(tl.int64)
        wt = tl.load(weights_ptr + p)
        y = _tc4_rows_dot(blocks_ptr + e * H * (I // 2), scales_ptr + e * H * (I // 32), tl.minimum(rn, H - 1),
                          act_ptr + p.to(tl.int64) * I, I, BLOCK_N, W_LHS)
        y += tl.load(bias_ptr + e * H + rn, mask=rm, other=0.0).to(tl.float32)
        total += wt * y
    xp = x_ptr + t.to(tl.int64) * H + rn
    tl.store(xp, tl.load(xp, mask=rm, other=0.0) + total, mask=rm)



# ---------------------------------------------------------------------------------------------------------------
# split: the one-row product of gemv1 over a slice of the blocks (grid (pairs, row tiles, SPLIT)), partial sums out:
# more programs (occupancy) for mlp1, and mlp2 by (expert, row tile) instead of one program looping over experts.


@triton.jit
def _rows_dot_range(q_ptr, s_ptr, grow, rm, x_ptr, KB, kb0, kb1, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr):
    acc = tl.zeros([BLOCK_R, BLOCK_B], tl.float32)
    for b0 in range(kb0, kb1, BLOCK_B):
        bs = b0 + tl.arange(0, BLOCK_B)
        bm = bs < kb1
        q = tl.load(q_ptr + grow[:, None, None] * (KB * 16) + bs[None, :, None] * 16 + tl.arange(0, 16)[None, None, :],
                    mask=rm[:, None, None] & bm[None, :, None], other=0).to(tl.int32)
        lo = q & 15
        hi = q >> 4
        flo = (((lo & 7) << 22) | ((lo & 8) << 28)).to(tl.float32, bitcast=True)
        fhi = (((hi & 7) << 22) | ((hi & 8) << 28)).to(tl.float32, bitcast=True)
        xv = tl.load(x_ptr + bs[:, None] * 32 + tl.arange(0, 32)[None, :], mask=bm[:, None], other=0.0)
        xe, xo = tl.split(tl.reshape(xv, [BLOCK_B, 16, 2]))
        d = tl.sum(flo * xe[None, :, :] + fhi * xo[None, :, :], axis=2)
        s = tl.load(s_ptr + grow[:, None] * KB + bs[None, :], mask=rm[:, None] & bm[None, :], other=0).to(tl.int32)
        f1 = ((tl.minimum(s, 128) + 126) << 23).to(tl.float32, bitcast=True)
        f2 = ((tl.maximum(s, 128) - 1) << 23).to(tl.float32, bitcast=True)
        acc += (d * f1) * f2
    return tl.sum(acc, axis=1)


@triton.jit
def rows_split(x_ptr, ids_ptr, blocks_ptr, scales_ptr, part_ptr, R, K, K_TOP, XPAIR: tl.constexpr,
               BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, SPLIT: tl.constexpr):
    """part[s, p, r] = sum over slice s of the blocks of W_{ids[p]}[r] . x_row (x row p if XPAIR else p // K_TOP)."""
    p = tl.program_id(0)
    sp = tl.program_id(2)
    e = tl.load(ids_ptr + p).to(tl.int64)
    xr = p if XPAIR else p // K_TOP
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rows < R
    KB = K // 32
    per = tl.cdiv(tl.cdiv(KB, SPLIT), BLOCK_B) * BLOCK_B
    kb0 = sp * per
    kb1 = tl.minimum(kb0 + per, KB)
    y = _rows_dot_range(blocks_ptr, scales_ptr, e * R + rows, rm, x_ptr + xr.to(tl.int64) * K, KB, kb0, kb1,
                        BLOCK_N, BLOCK_B)
    n_pairs = tl.num_programs(0)
    tl.store(part_ptr + (sp * n_pairs + p).to(tl.int64) * R + rows, y, mask=rm)


def split_lab(dev, E=32, H=2880, I=2880, KT=4):
    rows = []
    ids = torch.tensor([i % E for i in (3, 17, 8, 30)][:KT], dtype=torch.int32, device=dev)
    for name, R, K, xpair in (("mlp1 4x5760x2880", 2 * I, H, 0), ("mlp2 4x2880x2880", H, I, 1)):
        q, s, w = mxfp4_weights(E, R, K, dev)
        x = torch.randn(KT if xpair else 1, K)
        ref = torch.stack([w[e] @ x[j if xpair else 0].double() for j, e in enumerate(ids.tolist())])
        mag = torch.stack([w[e].abs() @ x[j if xpair else 0].double().abs() for j, e in enumerate(ids.tolist())])
        xd = x.to(dev)
        nbytes = KT * R * (K // 32) * 17
        for bn, bb, warps, stages, split in ((64, 8, 8, 3, 1), (64, 8, 8, 3, 2), (64, 8, 8, 3, 3), (32, 8, 8, 3, 1),
                                              (32, 8, 4, 3, 2), (64, 8, 4, 3, 2), (128, 8, 8, 3, 2), (64, 4, 4, 3, 2)):
            part = torch.empty(split, KT, R, device=dev)

            def run():
                rows_split[(KT, triton.cdiv(R, bn), split)](xd, ids, q, s, part, R, K, KT, XPAIR=xpair, BLOCK_N=bn,
                                                            BLOCK_B=bb, SPLIT=split, num_warps=warps,
                                                            num_stages=stages)
            run()
            e = ((part.sum(0).cpu().double() - ref).abs() / mag).max().item()
            us = bench(run)
            rows.append((name, f"split bn{bn} bb{bb} w{warps} s{stages} SPLIT={split}", e, us,
                         nbytes / (us * 1e-6) / 1e9))
    return rows


if __name__ == "__main__":
    main()
