"""Dense weight products: the attention projections, the router and the
unembedding (bf16 weights [N, K] row-major, bf16 bias [N], fp32 accumulation).

Contracts (K is a multiple of 32 for every model the runtime loads):
  linear_gemv(x, rows, norm_w, w, b, y, M, N, K, ldy, eps)    grid (cdiv(N, BLOCK_N),)
      Decode and small batches (M <= M_PAD <= 8): x fp32 [*, K] (row stride K);
      input row m is x[rows[m]] if HAS_ROWS else x[m]; with NORM it is first
      RMS-normalised: xhat = x / sqrt(mean(x^2) + eps) * norm_w (norm_w bf16 [K]).
      y[m, n] (= or +=, ACCUMULATE) sum_k w[n, k] xhat[m, k] (+ b[n] if HAS_BIAS),
      y fp32 with row stride ldy. Products and sums in fp32 (no tf32): results
      agree with a float64 reference to ~1e-6 relative. Must stream w at close
      to the memory bandwidth for M = 1 (the decode path).
  linear_gemm(x, w, b, y, M, N, K, ldx, ldy)                  grid (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N))
      Prefill and larger batches: x bf16 [M, K] (row stride ldx), tensor cores
      with fp32 accumulation; y fp32 (ACCUMULATE: +=) or bf16 (OUT_BF16) with
      row stride ldy; HAS_BIAS.
  qkv_rope_gemv(x, norm_w, w, b, qkv, M, N, K, eps, positions, seqs, inv_freq, k_cache, v_cache,
                seq_stride, capacity, rope_scaling, NQ, NKV, HD)   grid (cdiv(N, BLOCK_N),)
      linear_gemv with NORM and HAS_BIAS into qkv [M, N] (N = (NQ + 2 NKV) HD rows: q, k, v heads), with
      elementwise.rope_kv_store's work for each head of the M rows (k and v heads into the cache): each
      program's rows are BLOCK_N / 2 rope pairs (x[i], x[i + HD / 2]) of one head, which it rotates and stores
      itself. Needs HD % BLOCK_N == 0 (BLOCK_N even), M <= M_PAD.
  linear_gemm_s_x32(x, w, b, y, M, N, K, ldx, ldy)            grid (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N))
      Small decode batches (3 to 8 rows): x fp32, split into bf16 hi + lo parts
      (x - hi rounded to bf16) that both go through the tensor cores: 16
      significant bits of x against the weights' exact bf16, fp32 accumulation,
      so results agree with the fp32 gemv to about 1e-6 of the row's scale,
      while the weights stream once for all rows (the fp32 gemv re-reads x for
      every 4-row weight tile and fell to 0.3 TB/s at 8 rows on an H200).

VARIANTS: names "linear_gemv_m{M_PAD}[_norm][_rows][_bias][_acc]" and
"linear_gemm[_bias][_acc][_obf16]"; tile sizes are this file's choice and are
read by the runtime from the manifest (BLOCK_N, BLOCK_M).

What is compiled (the combinations the runtime uses):
  linear_gemv_m{1,2,4,8}_norm_bias (qkv), _bias_acc (out projection), _bias (router),
  _norm_rows (unembedding). BLOCK_K = 1024 (one 16-byte chunk of 8 weights per lane
  and row); BLOCK_N = 4 with 2 warps for M_PAD 1 and 2, 4 with 4 warps for M_PAD 4 and
  8, 2 for the router (N = E is small); the weight tiles stream through shared memory with
  asynchronous copies STAGES deep (3; 2 for M_PAD 8); with X_AHEAD (M_PAD <= 2) x
  and norm_w are plain loads issued one iteration ahead (served by L1: every
  program reads the same x) instead of going through the copies.
  linear_gemm_bias (qkv, router), linear_gemm_bias_acc (out projection),
  linear_gemm (unembedding): BLOCK_M = 64, BLOCK_N = 128 (64 for _bias_acc),
  BLOCK_K = 64, 4 warps, 4 stages; HMMA (sm_80), wgmma (sm_90a), tcgen05 (sm_100a).
  Decode batches: linear_gemm_s* (9..32 rows: 16x64 tiles), linear_gemm_m_bias and
  linear_gemm_m_bias_acc (33..64 rows: 64x32 and 64x16 tiles, BLOCK_K = 128).
Launch requirements beyond the contracts: every pointer 16-byte aligned; K % 32 == 0
(gemv and gemm: K is hinted divisible by 16); gemm: ldx % 16 == 0 (hinted). N, M,
ldy and eps are free. M_PAD is the smallest compiled value >= M. NORM computes the
sum of squares in the same pass as the products and scales the dot product by
1/rms at the end (same result to fp32 rounding). No scratch memory.
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant, pdl_begin
from elementwise import kv_store


@triton.jit
def _split4(t):
    """t [..., 4] -> its four elements along the last axis, each [...] (register selections)."""
    even, odd = tl.split(tl.reshape(t, t.shape[:-1] + [2, 2]))
    t0, t2 = tl.split(even)
    t1, t3 = tl.split(odd)
    return t0, t1, t2, t3


@triton.jit
def _load_xg(x_ptrs, g_ptrs, k0, K, x_mask_m, x_k, NORM: tl.constexpr):
    """x[m, k0 + 8c + i] and x[m, k0 + 8c + 4 + i] ([KC, M_PAD, 1, 4] each), and the norm weight likewise as fp32."""
    k_in = (k0 + x_k) < K
    x_a = tl.load(x_ptrs + k0, mask=x_mask_m & k_in, other=0.0)
    x_b = tl.load(x_ptrs + (k0 + 4), mask=x_mask_m & k_in, other=0.0)
    if NORM:
        g_a = tl.load(g_ptrs + k0, mask=k_in, other=0.0).to(tl.float32)
        g_b = tl.load(g_ptrs + (k0 + 4), mask=k_in, other=0.0).to(tl.float32)
    else:
        g_a = x_a
        g_b = x_b
    return x_a, x_b, g_a, g_b


@triton.jit
def linear_gemv(x_ptr, rows_ptr, norm_w_ptr, w_ptr, b_ptr, y_ptr, M, N, K, ldy, eps,
                M_PAD: tl.constexpr, NORM: tl.constexpr, HAS_ROWS: tl.constexpr, HAS_BIAS: tl.constexpr,
                ACCUMULATE: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
                X_AHEAD: tl.constexpr):
    pdl_begin()
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, M_PAD)
    y_ptrs = y_ptr + offs_m.to(tl.int64)[:, None] * ldy + offs_n[None, :]
    y_mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    if ACCUMULATE:
        prev = tl.load(y_ptrs, mask=y_mask, other=0.0)  # before the product, so that its latency is hidden
    out, offs_m, m_mask, offs_n, n_mask, inv = _gemv_tile(x_ptr, rows_ptr, norm_w_ptr, w_ptr, b_ptr, M, N, K, eps,
                                                          M_PAD, NORM, HAS_ROWS, HAS_BIAS, BLOCK_N, BLOCK_K, STAGES,
                                                          X_AHEAD)
    if ACCUMULATE:
        out += prev
    tl.store(y_ptrs, out, mask=y_mask)


@triton.jit
def qkv_rope_gemv(x_ptr, norm_w_ptr, w_ptr, b_ptr, qkv_ptr, M, N, K, eps, positions_ptr, seqs_ptr, inv_freq_ptr,
                  k_ptr, v_ptr, seq_stride, capacity, rope_scaling, NQ, NKV, HD, M_PAD: tl.constexpr,
                  BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr, X_AHEAD: tl.constexpr,
                  KV_BF16: tl.constexpr):
    pdl_begin()
    # Each program's rows are rope pairs (x[i], x[i + HD / 2]) of one head, so that it rotates and stores them
    # itself: rope_kv_store's work for those elements of every row.
    HALF = HD // 2
    P: tl.constexpr = BLOCK_N // 2
    out, offs_m, m_mask, offs_n, n_mask, inv = _gemv_tile(x_ptr, x_ptr, norm_w_ptr, w_ptr, b_ptr, M, N, K, eps,
                                                          M_PAD, 1, 0, 1, BLOCK_N, BLOCK_K, STAGES, X_AHEAD, HALF, 1)
    pid = tl.program_id(0)
    head = pid // (HALF // P)
    i = (pid % (HALF // P)) * P + tl.arange(0, P)                       # element of each half
    x1, x2 = tl.split(tl.permute(tl.reshape(out, [M_PAD, 2, P]), [0, 2, 1]))    # [M_PAD, P] each
    p = tl.load(positions_ptr + offs_m, mask=m_mask, other=0)
    if head < NQ + NKV:                                  # q and k heads rotate (rope_rotate's arithmetic)
        angle = p.to(tl.float32)[:, None] * tl.load(inv_freq_ptr + i)[None, :]
        c = tl.cos(angle) * rope_scaling
        s = tl.sin(angle) * rope_scaling
        y1 = x1 * c - x2 * s
        y2 = x2 * c + x1 * s
    else:
        y1 = x1
        y2 = x2
    mm = m_mask[:, None]
    row = qkv_ptr + offs_m.to(tl.int64)[:, None] * N + head * HD + i[None, :]
    tl.store(row, y1, mask=mm)
    tl.store(row + HALF, y2, mask=mm)
    if head >= NQ:                                       # k and v heads into the cache of each row's slot
        seq = tl.load(seqs_ptr + offs_m, mask=m_mask, other=0).to(tl.int64)
        slot = seq * seq_stride + (p % capacity).to(tl.int64) * HD                      # kv_offset, per row
        if head < NQ + NKV:
            kv_store(k_ptr + (slot + (head - NQ).to(tl.int64) * capacity * HD)[:, None], y1, y2, i[None, :], HALF,
                     mm, KV_BF16)
        else:
            kv_store(v_ptr + (slot + (head - NQ - NKV).to(tl.int64) * capacity * HD)[:, None], y1, y2, i[None, :],
                     HALF, mm, KV_BF16)


@triton.jit
def _gemv_tile(x_ptr, rows_ptr, norm_w_ptr, w_ptr, b_ptr, M, N, K, eps, M_PAD: tl.constexpr, NORM: tl.constexpr,
               HAS_ROWS: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
               STAGES: tl.constexpr, X_AHEAD: tl.constexpr, HALF=0, PAIRS: tl.constexpr = 0):
    """linear_gemv's product for this program's BLOCK_N rows: (out [M_PAD, BLOCK_N], offs_m, m_mask, offs_n,
    n_mask, inv), bias added, not stored; inv [M_PAD] = 1 / rms of each input row with NORM (else 1). With PAIRS
    the rows are rope pairs instead of consecutive rows: for heads of 2 HALF rows, program q takes P = BLOCK_N / 2
    rows i .. i + P - 1 of a head's first half and the same of its second half (i = (q % (HALF / P)) P)."""
    KC: tl.constexpr = BLOCK_K // 8
    pid = tl.program_id(0)
    if PAIRS:
        P: tl.constexpr = BLOCK_N // 2
        j = tl.arange(0, BLOCK_N)
        offs_n = (pid // (HALF // P)) * (2 * HALF) + (pid % (HALF // P)) * P + (j % P) + (j // P) * HALF
    else:
        offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    n_mask = offs_n < N
    offs_m = tl.arange(0, M_PAD)
    m_mask = offs_m < M
    if HAS_ROWS:
        xrow = tl.load(rows_ptr + offs_m, mask=m_mask, other=0).to(tl.int64)
    else:
        xrow = offs_m.to(tl.int64)
    kc = tl.arange(0, KC)[:, None, None, None]
    # w tile [KC, 1, BLOCK_N, 8]: chunk c of row n is w[n, k0 + 8c : k0 + 8c + 8] (one 16-byte load)
    w_ptrs = w_ptr + kc * 8 + offs_n.to(tl.int64)[None, None, :, None] * K + tl.arange(0, 8)[None, None, None, :]
    # x halves [KC, M_PAD, 1, 4]: x[m, k0 + 8c + i] and x[m, k0 + 8c + 4 + i]
    x_k = kc * 8 + tl.arange(0, 4)[None, None, None, :]
    x_ptrs = x_ptr + xrow[None, :, None, None] * K + x_k
    g_ptrs = norm_w_ptr + x_k
    w_mask_n = n_mask[None, None, :, None]
    x_mask_m = m_mask[None, :, None, None]
    if HAS_BIAS:  # loaded before the loop, so that its latency is hidden
        bias = tl.load(b_ptr + offs_n, mask=n_mask, other=0.0).to(tl.float32)
    acc = tl.zeros([KC, M_PAD, BLOCK_N], tl.float32)
    ss = tl.zeros([KC, M_PAD, 1, 4], tl.float32)
    if X_AHEAD:
        xa_n, xb_n, ga_n, gb_n = _load_xg(x_ptrs, g_ptrs, 0, K, x_mask_m, x_k, NORM)
    for k0 in tl.range(0, K, BLOCK_K, num_stages=STAGES):
        w = tl.load(w_ptrs + k0, mask=w_mask_n & ((k0 + kc * 8) < K), other=0.0)
        w_a, w_b = tl.split(tl.permute(tl.reshape(w.to(tl.float32), [KC, 1, BLOCK_N, 2, 4]), [0, 1, 2, 4, 3]))
        if X_AHEAD:
            # plain loads one iteration ahead: x and the norm weight come from L1 (every program reads the
            # same x), only w goes through the asynchronous copies
            x_a, x_b, g_a, g_b = xa_n, xb_n, ga_n, gb_n
            xa_n, xb_n, ga_n, gb_n = _load_xg(x_ptrs, g_ptrs, k0 + BLOCK_K, K, x_mask_m, x_k, NORM)
        else:
            x_a, x_b, g_a, g_b = _load_xg(x_ptrs, g_ptrs, k0, K, x_mask_m, x_k, NORM)
        if NORM:
            ss += x_a * x_a
            ss += x_b * x_b
            x_a = x_a * g_a
            x_b = x_b * g_b
        w0, w1, w2, w3 = _split4(w_a)
        w4, w5, w6, w7 = _split4(w_b)
        x0, x1, x2, x3 = _split4(x_a)
        x4, x5, x6, x7 = _split4(x_b)
        acc += x0 * w0
        acc += x1 * w1
        acc += x2 * w2
        acc += x3 * w3
        acc += x4 * w4
        acc += x5 * w5
        acc += x6 * w6
        acc += x7 * w7
    out = tl.sum(acc, axis=0)                                   # [M_PAD, BLOCK_N]
    if NORM:
        inv = 1.0 / tl.sqrt(tl.sum(tl.sum(tl.sum(ss, axis=3), axis=2), axis=0) / K + eps)
        out = out * inv[:, None]
    else:
        inv = tl.full([M_PAD], 1.0, tl.float32)
    if HAS_BIAS:
        out += bias[None, :]
    return out, offs_m, m_mask, offs_n, n_mask, inv


@triton.jit
def linear_gemm(x_ptr, w_ptr, b_ptr, y_ptr, M, N, K, ldx, ldy, HAS_BIAS: tl.constexpr, ACCUMULATE: tl.constexpr,
                OUT_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                X_F32: tl.constexpr = 0):
    pdl_begin()
    # program (i, j): rows i*BLOCK_M.., columns j*BLOCK_N..; consecutive programs share a weight tile (L2 reuse)
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    # 64-bit tile bases, 32-bit offsets inside the tile; out-of-range rows read row M-1 / N-1 instead of being
    # masked (their results are never stored)
    m0 = pid_m * BLOCK_M
    n0 = pid_n * BLOCK_N
    rm = tl.minimum(offs_m, M - 1) - m0
    rn = tl.minimum(offs_n, N - 1) - n0
    x_ptrs = x_ptr + m0.to(tl.int64) * ldx + (rm[:, None] * ldx + offs_k[None, :])
    w_ptrs = w_ptr + n0.to(tl.int64) * K + (rn[:, None] * K + offs_k[None, :])
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in tl.range(0, K, BLOCK_K):
        k_in = (k0 + offs_k) < K
        a = tl.load(x_ptrs + k0, mask=k_in[None, :], other=0.0)
        b = tl.load(w_ptrs + k0, mask=k_in[None, :], other=0.0)
        if X_F32:
            # x = hi + lo, both bf16: 16 significant bits of x reach the tensor cores
            a_hi = a.to(tl.bfloat16)
            a_lo = (a - a_hi.to(tl.float32)).to(tl.bfloat16)
            acc = tl.dot(a_hi, tl.trans(b), acc)
            acc = tl.dot(a_lo, tl.trans(b), acc)
        else:
            acc = tl.dot(a, tl.trans(b), acc)
    if HAS_BIAS:
        acc += tl.load(b_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
    y_ptrs = y_ptr + m0.to(tl.int64) * ldy + ((offs_m - m0)[:, None] * ldy + offs_n[None, :])
    y_mask = (offs_m < M)[:, None] & (offs_n < N)[None, :]
    if ACCUMULATE:
        acc += tl.load(y_ptrs, mask=y_mask, other=0.0)
    if OUT_BF16:
        tl.store(y_ptrs, acc.to(tl.bfloat16), mask=y_mask)
    else:
        tl.store(y_ptrs, acc, mask=y_mask)


GEMV_SIG = {"x_ptr": "*fp32", "rows_ptr": "*i32", "norm_w_ptr": "*bf16", "w_ptr": "*bf16", "b_ptr": "*bf16",
            "y_ptr": "*fp32", "M": "i32", "N": "i32", "K": "i32", "ldy": "i32", "eps": "fp32"}


def _gemv_variant(m_pad, norm, rows, bias, acc, block_n, block_k, warps, stages=1, x_ahead=0):
    name = f"linear_gemv_m{m_pad}" + "_norm" * norm + "_rows" * rows + "_bias" * bias + "_acc" * acc
    return Variant(name=name, kernel=linear_gemv, signature=GEMV_SIG,
                   constexprs={"M_PAD": m_pad, "NORM": norm, "HAS_ROWS": rows, "HAS_BIAS": bias, "ACCUMULATE": acc,
                               "BLOCK_N": block_n, "BLOCK_K": block_k, "STAGES": stages,
                               "X_AHEAD": x_ahead},
                   num_warps=warps, num_stages=1, div16=("K",))


def _gemm_variant(bias, acc, obf16, block_m=64, block_n=128, block_k=64, warps=4, stages=4):
    name = "linear_gemm" + "_bias" * bias + "_acc" * acc + "_obf16" * obf16
    return Variant(name=name, kernel=linear_gemm,
                   signature={"x_ptr": "*bf16", "w_ptr": "*bf16", "b_ptr": "*bf16",
                              "y_ptr": "*bf16" if obf16 else "*fp32", "M": "i32", "N": "i32", "K": "i32",
                              "ldx": "i32", "ldy": "i32"},
                   constexprs={"HAS_BIAS": bias, "ACCUMULATE": acc, "OUT_BF16": obf16, "BLOCK_M": block_m,
                               "BLOCK_N": block_n, "BLOCK_K": block_k},
                   num_warps=warps, num_stages=stages, div16=("K", "ldx"))


GEMM_VARIANTS = [_gemm_variant(1, 0, 0), _gemm_variant(1, 1, 0, block_n=64), _gemm_variant(0, 0, 0)]
# Decode batches (M <= 32): 16x64 tiles, K steps of 128, for more programs than 64x128 tiles give (measured: qkv at
# M = 16 in 17.9 us against 30.4 us).
GEMM_VARIANTS += [
    Variant(name=v.name.replace("linear_gemm", "linear_gemm_s"), kernel=linear_gemm, signature=v.signature,
            constexprs={**v.constexprs, "BLOCK_M": 16, "BLOCK_N": 64, "BLOCK_K": 128}, num_warps=4, num_stages=4,
            div16=v.div16)
    for v in GEMM_VARIANTS
]
# Decode batches of 33..64 rows with bias (qkv, router; out projection accumulating): one 64-row tile over narrower
# weight tiles (bench/gpu/kernel_lab.py --only gemm, H200, M = 64: qkv 5120x2880 in 21.7 us with 64x32 tiles
# against 24.6 with 64x128; out 2880x4096 in 17.5 us with 64x16 against 26.2 with 64x64). The unembedding keeps
# linear_gemm (its 201088 rows give enough programs).
GEMM_VARIANTS += [
    Variant(name=v.name.replace("linear_gemm", "linear_gemm_m"), kernel=linear_gemm, signature=v.signature,
            constexprs={**v.constexprs, "BLOCK_M": 64, "BLOCK_N": bn, "BLOCK_K": 128}, num_warps=4,
            num_stages=stages, div16=v.div16)
    for v, bn, stages in ((GEMM_VARIANTS[0], 32, 3), (GEMM_VARIANTS[1], 16, 4))
]
# Decode batches of 3..8 rows from fp32 activations (qkv and router with bias, out projection accumulating,
# the unembedding plain): the same 16x64 tiles, x split into two bf16 parts.
GEMM_VARIANTS += [
    Variant(name=f"linear_gemm_s_x32" + "_bias" * bias + "_acc" * acc, kernel=linear_gemm,
            signature={"x_ptr": "*fp32", "w_ptr": "*bf16", "b_ptr": "*bf16", "y_ptr": "*fp32", "M": "i32",
                       "N": "i32", "K": "i32", "ldx": "i32", "ldy": "i32"},
            constexprs={"HAS_BIAS": bias, "ACCUMULATE": acc, "OUT_BF16": 0, "BLOCK_M": 16, "BLOCK_N": 64,
                        "BLOCK_K": 128, "X_F32": 1},
            num_warps=4, num_stages=4, div16=("K", "ldx"))
    for bias, acc in ((1, 0), (1, 1), (0, 0))
]

# Flag combinations the runtime launches: qkv = NORM + BIAS, out projection = BIAS + ACCUMULATE, router = BIAS
# (its input is already normalised), unembedding = NORM + ROWS; plain (no flags) for the unembedding as a fine
# operation on rows already normalised.
GEMV_FLAGS = ((1, 0, 1, 0), (0, 0, 1, 1), (0, 0, 1, 0), (1, 1, 0, 0), (0, 0, 0, 0))


def _gemv_config(m_pad, flags):
    """(BLOCK_N, num_warps, STAGES, X_AHEAD) per batch size; the router (N = E, 32 or 128 rows) gets BLOCK_N = 2
    so that it still spreads over 16..64 programs. One and two rows: 4-row tiles of 2 warps (measured on an H200,
    bench/gpu/kernel_lab.py: qkv 5120x2880 in 15.0 us = 1965 GB/s, the unembedding at 4325 GB/s, against
    31 us and 1655 GB/s with 8-row tiles of 4 warps)."""
    block_n, warps = {1: (4, 2), 2: (4, 2), 4: (4, 4), 8: (4, 4)}[m_pad]
    if flags == (0, 0, 1, 0):
        block_n = 2
    return block_n, warps, (2 if m_pad == 8 else 3), int(m_pad <= 2)


GEMV_VARIANTS = [_gemv_variant(m, *flags, _gemv_config(m, flags)[0], 1024, _gemv_config(m, flags)[1],
                               *_gemv_config(m, flags)[2:])
                 for m in (1, 2, 4, 8) for flags in GEMV_FLAGS]

# The qkv product of one or two rows with the RMSNorm and rope_kv_store fused (the attention block's first launch):
# the qkv gemv's tiles (BLOCK_N = 4 must divide head_dim).
QKV_ROPE_VARIANTS = [
    Variant(name=f"qkv_rope_gemv_m{m_pad}_{'bf16' if kv else 'f32'}", kernel=qkv_rope_gemv,
            signature={"x_ptr": "*fp32", "norm_w_ptr": "*bf16", "w_ptr": "*bf16", "b_ptr": "*bf16", "qkv_ptr": "*fp32",
                       "M": "i32", "N": "i32", "K": "i32", "eps": "fp32", "positions_ptr": "*i32", "seqs_ptr": "*i32",
                       "inv_freq_ptr": "*fp32", "k_ptr": "*bf16" if kv else "*fp32",
                       "v_ptr": "*bf16" if kv else "*fp32", "seq_stride": "i64",
                       "capacity": "i32", "rope_scaling": "fp32", "NQ": "i32", "NKV": "i32", "HD": "i32"},
            constexprs={"M_PAD": m_pad, "BLOCK_N": _gemv_config(m_pad, (1, 0, 1, 0))[0], "BLOCK_K": 1024,
                        "STAGES": _gemv_config(m_pad, (1, 0, 1, 0))[2], "X_AHEAD": _gemv_config(m_pad, (1, 0, 1, 0))[3],
                        "KV_BF16": kv},
            num_warps=_gemv_config(m_pad, (1, 0, 1, 0))[1], num_stages=1, div16=("K",))
    for m_pad in (1, 2) for kv in (0, 1)
]

VARIANTS = GEMV_VARIANTS + GEMM_VARIANTS + QKV_ROPE_VARIANTS
