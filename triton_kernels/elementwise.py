"""Small kernels of the forward pass: embedding, RMSNorm, RoPE with the KV
cache store, the router's top-k, and the read-bandwidth probe.

Contracts (shapes row-major; T tokens of the step, H hidden size):
  embed(tokens[T] i32, emb[V,H] bf16, x[T,H] fp32)            grid (T, cdiv(H, BLOCK_H))
      x[t] = float(emb[tokens[t]])
  rmsnorm(x, rows, w[H] bf16, y, R, H, eps)                   grid (R,)
      y[r] = x[i] / sqrt(mean(x[i]^2) + eps) * w, i = rows[r] if HAS_ROWS else r;
      y fp32 or bf16 (OUT_BF16), row stride H
  rope_kv_store(qkv[T, QKV] fp32, positions, seqs, inv_freq[HD/2] fp32,
                k_cache, v_cache, T, qkv_stride, seq_stride, capacity, rope_scaling, NQ, NKV, HD)
                                                              grid (T, NQ + NKV)
      program (t, h): h < NQ rotates query head h in place; h >= NQ rotates key
      head g = h - NQ in place and stores it, and value head g, into the cache of
      slot seqs[t] at position p = positions[t]: element d of head g lives at
      [seqs[t] * seq_stride + (g * capacity + p % capacity) * HD + d] (bf16 when
      KV_BF16). Rotation: angle = float(p) * inv_freq[i], c = cos * rope_scaling,
      s = sin * rope_scaling, (x1, x2) = (x[i], x[i + HD/2]) ->
      (x1 c - x2 s, x2 c + x1 s).
  topk_softmax(logits[T,E] fp32, ids[T,K] i32, weights[T,K] fp32, T, E, K)
                                                              grid (T,)
      the K largest logits (ties: lower id first), softmax over those K.
  moe_route(x[T,H] fp32, norm_w[H] bf16, eps, router_w[E,H] bf16, router_b[E] bf16, xn[T,H],
            ids[T,K] i32, weights[T,K] fp32, H, E, K)             grid (T,)
      the MoE block's start for one token per program: xn[t] = rmsnorm(x[t]) * norm_w
      (fp32, or bf16 when OUT_BF16: the grouped expert products' input; in the xg
      form when XG), router logits = router_w xn[t] + router_b in fp32 (xn
      unrounded), then topk_softmax's rule on them. E <= BLOCK_E.
  cast_bf16(x[n] fp32, y[n] bf16, n)                          grid (cdiv(n, BLOCK),)
      y = bf16(x), round to nearest even (activations for the tensor-core products);
      in the xg form when XG (n and the rows a multiple of 8).
  read_sum(x[n] i64, n, out[grid] i64)                        grid (cdiv(n, BLOCK * ITERS),)
      a sum of every element (the read-bandwidth probe; values are not used).

The xg form (the input of moe_gemm_mma.py's grouped expert products): bf16 of
2^64 x (exact: a power of two), and within each group of 8 elements the order
0 4 1 5 2 6 3 7 (element k at xg_offset(k)), so that one 16-byte load gives a
lane its mma operand pairs.
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant, pdl_begin

XG_PRESCALE = tl.constexpr(18446744073709551616.0)  # 2^64


@triton.jit
def xg_offset(k):
    """Position of element k of a row in the xg form (its group of 8 in the order 0 4 1 5 2 6 3 7)."""
    j = k % 8
    return k - j + 2 * (j % 4) + j // 4


@triton.jit
def embed(tokens_ptr, emb_ptr, x_ptr, H, BLOCK_H: tl.constexpr):
    pdl_begin()
    t = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    tok = tl.load(tokens_ptr + t).to(tl.int64)
    row = tl.load(emb_ptr + tok * H + offs, mask=offs < H, other=0.0).to(tl.float32)
    tl.store(x_ptr + t.to(tl.int64) * H + offs, row, mask=offs < H)


@triton.jit
def rmsnorm(x_ptr, rows_ptr, w_ptr, y_ptr, R, H, eps, HAS_ROWS: tl.constexpr, OUT_BF16: tl.constexpr,
            BLOCK_H: tl.constexpr):
    pdl_begin()
    r = tl.program_id(0)
    if HAS_ROWS:
        i = tl.load(rows_ptr + r).to(tl.int64)
    else:
        i = r.to(tl.int64)
    # Sum of squares in BLOCK_H-wide chunks (H need not be a power of two).
    acc = tl.zeros([BLOCK_H], dtype=tl.float32)
    for k0 in tl.range(0, H, BLOCK_H):
        offs = k0 + tl.arange(0, BLOCK_H)
        v = tl.load(x_ptr + i * H + offs, mask=offs < H, other=0.0)
        acc += v * v
    inv = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / H + eps)
    for k0 in tl.range(0, H, BLOCK_H):
        offs = k0 + tl.arange(0, BLOCK_H)
        v = tl.load(x_ptr + i * H + offs, mask=offs < H, other=0.0)
        w = tl.load(w_ptr + offs, mask=offs < H, other=0.0).to(tl.float32)
        y = w * (v * inv)
        if OUT_BF16:
            tl.store(y_ptr + r.to(tl.int64) * H + offs, y.to(tl.bfloat16), mask=offs < H)
        else:
            tl.store(y_ptr + r.to(tl.int64) * H + offs, y, mask=offs < H)


@triton.jit
def rope_kv_store(qkv_ptr, positions_ptr, seqs_ptr, inv_freq_ptr, k_ptr, v_ptr, T, qkv_stride, seq_stride,
                  capacity, rope_scaling, NQ, NKV, HD, KV_BF16: tl.constexpr, BLOCK_HALF: tl.constexpr):
    pdl_begin()
    t = tl.program_id(0)
    h = tl.program_id(1)
    HALF = HD // 2
    i = tl.arange(0, BLOCK_HALF)
    m = i < HALF
    p = tl.load(positions_ptr + t)
    row = qkv_ptr + t.to(tl.int64) * qkv_stride + h * HD
    x1 = tl.load(row + i, mask=m, other=0.0)
    x2 = tl.load(row + HALF + i, mask=m, other=0.0)
    y1, y2 = rope_rotate(x1, x2, p, inv_freq_ptr, rope_scaling, i, m)
    tl.store(row + i, y1, mask=m)
    tl.store(row + HALF + i, y2, mask=m)
    if h >= NQ:
        g = h - NQ
        at = kv_offset(seqs_ptr, t, p, g, seq_stride, capacity, HD)
        vrow = qkv_ptr + t.to(tl.int64) * qkv_stride + (NQ + NKV + g) * HD
        kv_store(k_ptr + at, y1, y2, i, HALF, m, KV_BF16)
        kv_store(v_ptr + at, tl.load(vrow + i, mask=m, other=0.0), tl.load(vrow + HALF + i, mask=m, other=0.0), i,
                 HALF, m, KV_BF16)


@triton.jit
def rope_rotate(x1, x2, p, inv_freq_ptr, rope_scaling, i, m):
    """(x1, x2) = (x[i], x[i + HD/2]) of a head at position p -> the rotated pair (rope_kv_store's contract)."""
    angle = p.to(tl.float32) * tl.load(inv_freq_ptr + i, mask=m, other=0.0)
    c = tl.cos(angle) * rope_scaling
    s = tl.sin(angle) * rope_scaling
    return x1 * c - x2 * s, x2 * c + x1 * s


@triton.jit
def kv_offset(seqs_ptr, t, p, g, seq_stride, capacity, HD):
    """Offset of element 0 of kv head g of token t (position p) in one layer's K or V cache."""
    seq = tl.load(seqs_ptr + t).to(tl.int64)
    return seq * seq_stride + (g * capacity + (p % capacity).to(tl.int64)) * HD


@triton.jit
def kv_store(dst, y1, y2, i, HALF, m, KV_BF16: tl.constexpr):
    if KV_BF16:
        tl.store(dst + i, y1.to(tl.bfloat16), mask=m)
        tl.store(dst + HALF + i, y2.to(tl.bfloat16), mask=m)
    else:
        tl.store(dst + i, y1, mask=m)
        tl.store(dst + HALF + i, y2, mask=m)


@triton.jit
def topk_softmax(logits_ptr, ids_ptr, weights_ptr, T, E, K, BLOCK_E: tl.constexpr):
    pdl_begin()
    t = tl.program_id(0)
    e = tl.arange(0, BLOCK_E)
    neg = float("-inf")
    vals = tl.load(logits_ptr + t.to(tl.int64) * E + e, mask=e < E, other=neg)
    # NaN never wins (treated as -inf); padding lanes can never be chosen.
    vals = tl.where(vals == vals, vals, neg)
    taken = e >= E
    first = tl.max(vals, axis=0)
    total = 0.0
    for j in tl.range(0, K):
        v = tl.where(taken, neg, vals)
        best = tl.max(v, axis=0)
        # lowest index among the maxima (and among untaken lanes if all are -inf)
        cand = tl.where((v == best) & (~taken), e, BLOCK_E)
        idx = tl.min(cand, axis=0)
        taken = taken | (e == idx)
        w = tl.exp(best - first)
        total += w
        tl.store(ids_ptr + t * K + j, idx)
        tl.store(weights_ptr + t * K + j, w)
    # normalise (second pass over the K values just written)
    for j in tl.range(0, K):
        w = tl.load(weights_ptr + t * K + j)
        tl.store(weights_ptr + t * K + j, w / total)


@triton.jit
def moe_route(x_ptr, norm_w_ptr, eps, rw_ptr, rb_ptr, xn_ptr, ids_ptr, weights_ptr, H, E, K,
              OUT_BF16: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_K: tl.constexpr, XG: tl.constexpr = 0):
    pdl_begin()
    t = tl.program_id(0).to(tl.int64)
    kk = tl.arange(0, BLOCK_K)
    acc = tl.zeros([BLOCK_K], dtype=tl.float32)
    for k0 in tl.range(0, H, BLOCK_K):
        v = tl.load(x_ptr + t * H + k0 + kk, mask=(k0 + kk) < H, other=0.0)
        acc += v * v
    inv = 1.0 / tl.sqrt(tl.sum(acc, axis=0) / H + eps)
    e = tl.arange(0, BLOCK_E)
    em = e < E
    lacc = tl.zeros([BLOCK_E, BLOCK_K], dtype=tl.float32)
    for k0 in tl.range(0, H, BLOCK_K):
        offs = k0 + kk
        m = offs < H
        v = tl.load(x_ptr + t * H + offs, mask=m, other=0.0)
        y = tl.load(norm_w_ptr + offs, mask=m, other=0.0).to(tl.float32) * (v * inv)
        if XG:
            tl.store(xn_ptr + t * H + xg_offset(offs), (y * XG_PRESCALE).to(tl.bfloat16), mask=m)
        elif OUT_BF16:
            tl.store(xn_ptr + t * H + offs, y.to(tl.bfloat16), mask=m)
        else:
            tl.store(xn_ptr + t * H + offs, y, mask=m)
        w = tl.load(rw_ptr + e.to(tl.int64)[:, None] * H + offs[None, :], mask=em[:, None] & m[None, :], other=0.0)
        lacc += w.to(tl.float32) * y[None, :]
    logits = tl.sum(lacc, axis=1) + tl.load(rb_ptr + e, mask=em, other=0.0).to(tl.float32)
    neg = float("-inf")
    vals = tl.where(em & (logits == logits), logits, neg)   # NaN never wins; padding lanes are never chosen
    taken = e >= E
    first = tl.max(vals, axis=0)
    chosen = tl.zeros([BLOCK_E], dtype=tl.int32) - 1    # rank of each chosen expert, -1 elsewhere
    total = 0.0
    for j in tl.range(0, K):
        v = tl.where(taken, neg, vals)
        best = tl.max(v, axis=0)
        idx = tl.min(tl.where((v == best) & (~taken), e, BLOCK_E), axis=0)
        taken = taken | (e == idx)
        chosen = tl.where(e == idx, j, chosen)
        total += tl.exp(best - first)
    sel = chosen >= 0
    tl.store(ids_ptr + t * K + chosen, e, mask=sel)
    tl.store(weights_ptr + t * K + chosen, tl.exp(vals - first) / total, mask=sel)


@triton.jit
def cast_bf16(x_ptr, y_ptr, n, BLOCK: tl.constexpr, XG: tl.constexpr = 0):
    pdl_begin()
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
    if XG:
        tl.store(y_ptr + xg_offset(offs), (x * XG_PRESCALE).to(tl.bfloat16), mask=offs < n)
    else:
        tl.store(y_ptr + offs, x.to(tl.bfloat16), mask=offs < n)


@triton.jit
def read_sum(x_ptr, n, out_ptr, BLOCK: tl.constexpr, ITERS: tl.constexpr):
    pdl_begin()
    pid = tl.program_id(0)
    base = pid.to(tl.int64) * BLOCK * ITERS
    acc = tl.zeros([BLOCK], dtype=tl.int64)
    for it in tl.static_range(ITERS):
        offs = base + it * BLOCK + tl.arange(0, BLOCK)
        acc += tl.load(x_ptr + offs, mask=offs < n, other=0)
    tl.store(out_ptr + pid, tl.sum(acc, axis=0))


VARIANTS = [
    Variant(name="embed", kernel=embed,
            signature={"tokens_ptr": "*i32", "emb_ptr": "*bf16", "x_ptr": "*fp32", "H": "i32"},
            constexprs={"BLOCK_H": 1024}, num_warps=4, num_stages=1, div16=("H",)),
] + [
    Variant(name=f"rmsnorm{'_rows' if rows else ''}{'_bf16' if bf16 else ''}", kernel=rmsnorm,
            signature={"x_ptr": "*fp32", "rows_ptr": "*i32", "w_ptr": "*bf16", "y_ptr": "*bf16" if bf16 else "*fp32",
                       "R": "i32", "H": "i32", "eps": "fp32"},
            constexprs={"HAS_ROWS": rows, "OUT_BF16": bf16, "BLOCK_H": 1024}, num_warps=4, num_stages=1,
            div16=("H",))
    for rows in (0, 1) for bf16 in (0, 1)
] + [
    Variant(name=f"topk_softmax_e{be}", kernel=topk_softmax,
            signature={"logits_ptr": "*fp32", "ids_ptr": "*i32", "weights_ptr": "*fp32", "T": "i32", "E": "i32",
                       "K": "i32"},
            constexprs={"BLOCK_E": be}, num_warps=1, num_stages=1)
    for be in (32, 128, 512)
] + [
    # BLOCK_HALF >= head_dim / 2 (head_dim <= 512)
    Variant(name=f"rope_kv_store_h{half}_{'bf16' if kv else 'f32'}", kernel=rope_kv_store,
            signature={"qkv_ptr": "*fp32", "positions_ptr": "*i32", "seqs_ptr": "*i32", "inv_freq_ptr": "*fp32",
                       "k_ptr": "*bf16" if kv else "*fp32", "v_ptr": "*bf16" if kv else "*fp32", "T": "i32",
                       "qkv_stride": "i32", "seq_stride": "i64", "capacity": "i32", "rope_scaling": "fp32",
                       "NQ": "i32", "NKV": "i32", "HD": "i32"},
            constexprs={"KV_BF16": kv, "BLOCK_HALF": half}, num_warps=1, num_stages=1)
    for half in (16, 32, 64, 128, 256) for kv in (0, 1)
] + [
    # BLOCK_E >= E; BLOCK_K keeps the logits' partial sums at 8192 lanes (32 registers a thread). Only up to 32
    # experts: every program reads the whole router, which for 128 experts (737 KB) was slower than the router
    # gemm it replaces (bench/gpu/NOTES.md run 25).
    Variant(name=f"moe_route_e{be}_{form}", kernel=moe_route,
            signature={"x_ptr": "*fp32", "norm_w_ptr": "*bf16", "eps": "fp32", "rw_ptr": "*bf16", "rb_ptr": "*bf16",
                       "xn_ptr": "*fp32" if form == "f32" else "*bf16", "ids_ptr": "*i32", "weights_ptr": "*fp32",
                       "H": "i32", "E": "i32", "K": "i32"},
            constexprs={"OUT_BF16": int(form != "f32"), "BLOCK_E": be, "BLOCK_K": 8192 // be, "XG": int(form == "xg")},
            num_warps=8, num_stages=2, div16=("H",))
    for be in (32,) for form in ("f32", "bf16", "xg")
] + [
    Variant(name=f"cast_{form}", kernel=cast_bf16, signature={"x_ptr": "*fp32", "y_ptr": "*bf16", "n": "i64"},
            constexprs={"BLOCK": 1024, "XG": int(form == "xg")}, num_warps=4, num_stages=1)
    for form in ("bf16", "xg")
] + [
    Variant(name="read_sum", kernel=read_sum, signature={"x_ptr": "*i64", "n": "i64", "out_ptr": "*i64"},
            constexprs={"BLOCK": 1024, "ITERS": 8}, num_warps=8, num_stages=1),
]
