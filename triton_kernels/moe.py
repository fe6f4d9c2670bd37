"""The mixture of experts: MXFP4 expert weights (blocks [E, N, K/32, 16] u8,
scales [E, N, K/32] u8 E8M0, bias [E, N] bf16; element k of row n is nibble
(k % 32) % 2 (low first) of byte (k % 32) // 2 of block k // 32, value
FP4[nibble] * 2^(scale - 127), FP4 = [0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, -1,
-1.5, -2, -3, -4, -6]). mlp1 has 2I rows, gate and up interleaved (gate =
rows 0::2, up = rows 1::2); swiglu: g = min(gate, limit), u = clamp(up,
-limit, limit), act = (u + 1) * g * sigmoid(alpha * g). mlp2 has H rows.

Contracts (T tokens, K_TOP experts per token, P = T * K_TOP pairs; pair
p = t * K_TOP + j is token t's j-th expert ids[p] with weight weights[p]):
  moe_mlp1_gemv(xn, ids, blocks, scales, bias, act, T, H, I, K_TOP, limit, alpha)
                                                      grid (T * K_TOP, cdiv(2I, BLOCK_N))
      act[p, i] = swiglu(mlp1_{ids[p]}(xn[p // K_TOP]))[i]; xn, act fp32;
      fp32 products (exact decode of the weights), for decode and small T.
  moe_mlp2_gemv(act, ids, weights, blocks, scales, bias, x, T, H, I, K_TOP)
                                                      grid (T, cdiv(H, BLOCK_N))
      x[t, n] += sum_j weights[t, j] * (mlp2_{ids[t, j]}(act[t * K_TOP + j])[n])
      (j in increasing order: deterministic; no atomics).
  Grouped path (prefill, batched decode), tokens grouped by expert:
  moe_sort(ids, P, E, pair_order, pair_pos, tiles, num_tiles)       grid (1,)
      A stable counting sort of the pairs by expert: pair_order[g] = pair at
      grouped position g (pairs of an expert in increasing p), pair_pos[p] = g.
      tiles i32 [max_tiles, 3] = (expert, first grouped row, row count <= BLOCK_M)
      covering every expert's rows, num_tiles[0] = how many;
      max_tiles = cdiv(P, BLOCK_M) + E (the runtime allocates that many).
  moe_mlp1_gemm(xn, pair_order, tiles, num_tiles, blocks, scales, bias, act, H, I, K_TOP, limit, alpha)
                                                      grid (max_tiles, cdiv(2I, BLOCK_N))
      xn bf16 [T, H]; act bf16 [P, I] in grouped order: act[g] = swiglu(mlp1_e(xn[pair_order[g] // K_TOP]));
      programs whose tile index >= num_tiles[0] return at once.
  moe_mlp2_gemm(act, tiles, num_tiles, blocks, scales, bias, y2, H, I)
                                                      grid (max_tiles, cdiv(H, BLOCK_N))
      y2 fp32 [P, H] in grouped order: y2[g] = mlp2_e(act[g]).
  moe_combine(y2, pair_pos, weights, x, T, H, K_TOP)  grid (T, cdiv(H, BLOCK_H))
      x[t] += sum_j weights[t, j] * y2[pair_pos[t * K_TOP + j]] (j increasing).

Router logits come from linear.linear_gemv/gemm (N = E), top-k from
elementwise.topk_softmax. BLOCK_M (moe_sort and the gemm kernels must agree),
BLOCK_N and BLOCK_H are read by the runtime from the manifest.

What is compiled: one variant per kernel, named as the kernel. mlp1_e(v) and
mlp2_e(v) include the expert's bias (W v + b).
  moe_mlp1_gemv  BLOCK_N = 16 rows of 2I, 1 warp (lanes along the 32-element blocks
                 of a row, BLOCK_KB = 32 blocks per step), STAGES = 3.
  moe_mlp2_gemv  BLOCK_N = 4 rows of H, 4 warps = J = 4 of the token's experts at
                 once (one per warp; K_TOP may be anything, taken J at a time),
                 their results added in increasing j.
  moe_sort       BLOCK_M = 64, BLOCK_E = 128 (E <= 128), BLOCK_P = 64; one program
                 of 4 warps, two passes over the pairs, O(P * BLOCK_E) work.
  moe_mlp1_gemm / moe_mlp2_gemm  BLOCK_M = 64 pairs, BLOCK_N = 128, BLOCK_K = 64,
                 8 warps, 4 stages; tl.dot_scaled (bf16 x MXFP4).
  moe_combine    BLOCK_H = 1024.
Launch requirements beyond the contracts: pointers 16-byte aligned; H and I
multiples of 32 (hinted divisible by 16); E <= 128 for moe_sort; tiles and
num_tiles int32, max_tiles rows allocated, only the first num_tiles[0] rows are
written (and read); pair_order/pair_pos int32 [P]; no scratch memory.
Precision: the gemv kernels decode exactly in fp32 (see _fp4_bits): x is
pre-multiplied by 2^64 (|x| < 2^64), block scale bytes 0..192 are exact, 193..254
overflow to inf (a weight of 2^66 and up), 255 (NaN) reads as inf. The gemm
kernels decode through tl.dot_scaled to bf16 (FP4 value times the scale as a
bf16, 2^(s-127)): exact for scale bytes 2..252 (byte 1 may flush its smallest
products to zero); byte 0 becomes a zero scale (its weights, 2^-128 .. 3 * 2^-126,
read as 0); 255 reads as inf (fast_math); 253/254 overflow only where fp32 would;
products and sums in fp32 on the tensor cores.
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant, pdl_begin


# ---------------------------------------------------------------------------------------------------------------
# MXFP4 decode for the fp32 gemv kernels. An FP4 code (sign s, exponent e, mantissa m) placed into float32 bits as
# s << 31 | e << 23 | m << 22 reads as FP4[code] * 2^-126 (the e = 0 codes land on float32 subnormals: 0.5 -> 2^-127;
# exact). Instead of scaling every element back up, x is pre-multiplied by 2^64 (exact for |x| < 2^64) so that each
# product FP4 * x * 2^-62 is an ordinary float32 product (normal while |FP4 * x| >= 2^-64), and a block's 32-term
# partial sum is multiplied by 2^(scale - 127 + 62) once. Triton emits plain mul/fma.f32 (no flush to zero), so
# subnormal operands are honoured. Exact scale factors for every E8M0 byte 0..192 (weights up to 6 * 2^65);
# 193..254 overflow the factor to +inf (never seen: gpt-oss scales are about 2^-8..2^0); 255 (NaN) reads as +inf.
_X_PRESCALE = tl.constexpr(18446744073709551616.0)  # 2^64


@triton.jit
def _fp4_bits(word, J: tl.constexpr):
    """Element J (nibble J, bits 4J..4J+3) of each int32 word as float32 FP4[code] * 2^-126."""
    bits = ((word << (28 - 4 * J)) >> 6) & -2118123520  # 0x81C00000: sign -> bit 31, e m -> bits 24..22
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _block_factor(s):
    """E8M0 scale bytes (int32 0..255) -> 2^(s - 127 + 62), the factor of a block's partial sum (+inf from 193)."""
    return (tl.minimum(s + 62, 255) << 23).to(tl.float32, bitcast=True)


@triton.jit
def _split4(t):
    """t [..., 4] -> its four elements along the last axis, each [...] (register selections)."""
    even, odd = tl.split(tl.reshape(t, t.shape[:-1] + [2, 2]))
    t0, t2 = tl.split(even)
    t1, t3 = tl.split(odd)
    return t0, t1, t2, t3


@triton.jit
def _word_dot(word, xa, xb):
    """sum_j FP4(word, j) * x_j * 2^-62 for the 8 elements of each word; xa / xb hold 2^64 * x_0..3 / x_4..7."""
    x0, x1, x2, x3 = _split4(xa)
    x4, x5, x6, x7 = _split4(xb)
    acc = _fp4_bits(word, 0) * x0
    acc += _fp4_bits(word, 1) * x1
    acc += _fp4_bits(word, 2) * x2
    acc += _fp4_bits(word, 3) * x3
    acc += _fp4_bits(word, 4) * x4
    acc += _fp4_bits(word, 5) * x5
    acc += _fp4_bits(word, 6) * x6
    acc += _fp4_bits(word, 7) * x7
    return acc


@triton.jit
def _load_x32(xs, mask):
    """The 32 x values of each lane's block as eight [KB, 1, 4] vectors (16-byte loads)."""
    return (tl.load(xs, mask=mask, other=0.0), tl.load(xs + 4, mask=mask, other=0.0),
            tl.load(xs + 8, mask=mask, other=0.0), tl.load(xs + 12, mask=mask, other=0.0),
            tl.load(xs + 16, mask=mask, other=0.0), tl.load(xs + 20, mask=mask, other=0.0),
            tl.load(xs + 24, mask=mask, other=0.0), tl.load(xs + 28, mask=mask, other=0.0))


@triton.jit
def _prescale8(x0, x1, x2, x3, x4, x5, x6, x7):
    return (x0 * _X_PRESCALE, x1 * _X_PRESCALE, x2 * _X_PRESCALE, x3 * _X_PRESCALE, x4 * _X_PRESCALE,
            x5 * _X_PRESCALE, x6 * _X_PRESCALE, x7 * _X_PRESCALE)


@triton.jit
def _mxfp4_gemv(x_rows, q_rows, s_rows, j_in, row0, R, KBT, J: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_KB: tl.constexpr, STAGES: tl.constexpr):
    """J independent MXFP4 matrix-vector products, y[j, r] = sum_k W_j[row0 + r, k] x_j[k] for r < BLOCK_N
    (rows >= R and slots with j_in false read as zero), fp32. Per slot j ([1, J, 1, 1] tensors): x_rows, its
    fp32 x row; q_rows, the int32 view of its expert's blocks ([R, KBT, 4] words); s_rows, its scales ([R, KBT]
    u8); KBT = K / 32 blocks per row. Lanes run along the blocks of a row (one 16-byte load per block and row),
    warps along the slots; a lane keeps all BLOCK_N rows of its block and reuses its 32 x values across them.
    The weights stream through shared memory (asynchronous copies, STAGES deep); x and the scale bytes are
    plain loads issued one iteration ahead into registers, so x comes from L1 (the programs of a token read
    the same x rows) instead of being fetched from L2 once per program."""
    kb = tl.arange(0, BLOCK_KB)[:, None, None, None]                       # [KB, 1, 1, 1]
    rows = row0 + tl.arange(0, BLOCK_N)[None, None, :, None]              # [1, 1, BN, 1]
    w_in = (rows < R) & j_in
    w_ptrs = q_rows + (rows.to(tl.int64) * KBT + kb) * 4 + tl.arange(0, 4)[None, None, None, :]   # [KB, J, BN, 4]
    s_ptrs = s_rows + rows.to(tl.int64) * KBT + kb                                               # [KB, J, BN, 1]
    x_ptrs = x_rows + kb * 32 + tl.arange(0, 4)[None, None, None, :]                             # [KB, J, 1, 4]
    acc = tl.zeros([BLOCK_KB, J, BLOCK_N], tl.float32)
    sc_next = tl.load(s_ptrs, mask=(kb < KBT) & w_in, other=0)
    xn0, xn1, xn2, xn3, xn4, xn5, xn6, xn7 = _load_x32(x_ptrs, (kb < KBT) & j_in)
    for b0 in tl.range(0, KBT, BLOCK_KB, num_stages=STAGES):
        b_in = (b0 + kb) < KBT
        sc = sc_next
        x0, x1, x2, x3, x4, x5, x6, x7 = _prescale8(xn0, xn1, xn2, xn3, xn4, xn5, xn6, xn7)
        nxt = (b0 + BLOCK_KB + kb) < KBT
        sc_next = tl.load(s_ptrs + (b0 + BLOCK_KB), mask=nxt & w_in, other=0)
        xn0, xn1, xn2, xn3, xn4, xn5, xn6, xn7 = _load_x32(x_ptrs + (b0 + BLOCK_KB) * 32, nxt & j_in)
        words = tl.load(w_ptrs + b0 * 4, mask=b_in & w_in, other=0)
        w0, w1, w2, w3 = _split4(words)
        part = _word_dot(w0, x0, x1)
        part += _word_dot(w1, x2, x3)
        part += _word_dot(w2, x4, x5)
        part += _word_dot(w3, x6, x7)
        acc += part * _block_factor(tl.reshape(sc, [BLOCK_KB, J, BLOCK_N]).to(tl.int32))
    return tl.sum(acc, axis=0)                                                                   # [J, BN]


@triton.jit
def _swiglu(gate, up, limit, alpha):
    g = tl.minimum(gate, limit)
    u = tl.minimum(tl.maximum(up, -limit), limit)
    return (u + 1.0) * (g / (1.0 + tl.exp(-alpha * g)))


@triton.jit
def moe_mlp1_gemv(xn_ptr, ids_ptr, blocks_ptr, scales_ptr, bias_ptr, act_ptr, T, H, I, K_TOP, limit, alpha,
                  BLOCK_N: tl.constexpr, BLOCK_KB: tl.constexpr, STAGES: tl.constexpr):
    pdl_begin()
    p = tl.program_id(0)
    row0 = tl.program_id(1) * BLOCK_N                  # rows of 2I; BLOCK_N is even: gate/up pairs stay together
    e = tl.load(ids_ptr + p).to(tl.int64)
    t = p // K_TOP
    R = 2 * I
    KBT = H // 32
    one = tl.zeros([1, 1, 1, 1], tl.int64)
    q_rows = blocks_ptr.to(tl.pointer_type(tl.int32)) + (one + e * R * KBT * 4)
    s_rows = scales_ptr + (one + e * R * KBT)
    x_rows = xn_ptr + (one + t.to(tl.int64) * H)
    y = _mxfp4_gemv(x_rows, q_rows, s_rows, one == 0, row0, R, KBT, 1, BLOCK_N, BLOCK_KB, STAGES)
    offs = row0 + tl.arange(0, BLOCK_N)
    y = tl.reshape(y, [BLOCK_N]) + tl.load(bias_ptr + e * R + offs, mask=offs < R, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N // 2, 2]))
    cols = row0 // 2 + tl.arange(0, BLOCK_N // 2)
    tl.store(act_ptr + p.to(tl.int64) * I + cols, _swiglu(gate, up, limit, alpha), mask=cols < I)


@triton.jit
def moe_mlp2_gemv(act_ptr, ids_ptr, weights_ptr, blocks_ptr, scales_ptr, bias_ptr, x_ptr, T, H, I, K_TOP,
                  BLOCK_N: tl.constexpr, BLOCK_KB: tl.constexpr, J: tl.constexpr, STAGES: tl.constexpr):
    pdl_begin()
    # J of the token's K_TOP experts at a time, one per warp; their results are added in increasing j
    t = tl.program_id(0)
    row0 = tl.program_id(1) * BLOCK_N
    KBT = I // 32
    offs = row0 + tl.arange(0, BLOCK_N)
    jj = tl.arange(0, J)
    total = tl.zeros([BLOCK_N], tl.float32)
    for j0 in tl.range(0, K_TOP, J):
        j_in = (j0 + jj) < K_TOP
        p = t * K_TOP + j0 + jj
        e = tl.load(ids_ptr + p, mask=j_in, other=0).to(tl.int64)
        wt = tl.load(weights_ptr + p, mask=j_in, other=0.0)
        e4 = e[None, :, None, None]
        q_rows = blocks_ptr.to(tl.pointer_type(tl.int32)) + e4 * H * KBT * 4
        s_rows = scales_ptr + e4 * H * KBT
        x_rows = act_ptr + p.to(tl.int64)[None, :, None, None] * I
        y = _mxfp4_gemv(x_rows, q_rows, s_rows, j_in[None, :, None, None], row0, H, KBT, J, BLOCK_N, BLOCK_KB,
                        STAGES)
        y += tl.load(bias_ptr + e[:, None] * H + offs[None, :], mask=j_in[:, None] & (offs < H)[None, :],
                     other=0.0).to(tl.float32)
        z = tl.permute(wt[:, None] * y, [1, 0])                             # [BN, J]
        for j in tl.static_range(J):
            total += tl.sum(tl.where(jj[None, :] == j, z, 0.0), axis=1)     # one nonzero term: exact, in order
    x_ptrs = x_ptr + t.to(tl.int64) * H + offs
    tl.store(x_ptrs, tl.load(x_ptrs, mask=offs < H, other=0.0) + total, mask=offs < H)


# ---------------------------------------------------------------------------------------------------------------
# Grouped path


@triton.jit
def moe_sort(ids_ptr, P, E, pair_order_ptr, pair_pos_ptr, tiles_ptr, num_tiles_ptr, BLOCK_M: tl.constexpr,
             BLOCK_E: tl.constexpr, BLOCK_P: tl.constexpr):
    """One program; E <= BLOCK_E. Two passes over the pairs in chunks of BLOCK_P: expert counts, then each
    pair's grouped position = its expert's start + pairs of that expert before it (a one-hot prefix sum over
    the chunk, so ties keep pair order: stable)."""
    pdl_begin()
    ee = tl.arange(0, BLOCK_E)
    pp = tl.arange(0, BLOCK_P)
    counts = tl.zeros([BLOCK_E], tl.int32)
    for p0 in tl.range(0, P, BLOCK_P):
        ids = tl.load(ids_ptr + p0 + pp, mask=(p0 + pp) < P, other=-1)
        counts += tl.sum((ids[:, None] == ee[None, :]).to(tl.int32), axis=0)
    counts = tl.where(ee < E, counts, 0)
    starts = tl.cumsum(counts, axis=0) - counts
    ntiles = (counts + BLOCK_M - 1) // BLOCK_M
    first_tile = tl.cumsum(ntiles, axis=0) - ntiles
    tl.store(num_tiles_ptr, tl.sum(ntiles, axis=0))
    for i in tl.range(0, tl.max(ntiles, axis=0)):
        m = i < ntiles
        row = tiles_ptr + (first_tile + i) * 3
        tl.store(row, ee, mask=m)
        tl.store(row + 1, starts + i * BLOCK_M, mask=m)
        tl.store(row + 2, tl.minimum(counts - i * BLOCK_M, BLOCK_M), mask=m)
    running = starts
    for p0 in tl.range(0, P, BLOCK_P):
        valid = (p0 + pp) < P
        ids = tl.load(ids_ptr + p0 + pp, mask=valid, other=-1)
        onehot = (ids[:, None] == ee[None, :]).to(tl.int32)                  # [BLOCK_P, BLOCK_E]
        before = tl.cumsum(onehot, axis=0) - onehot                          # earlier pairs of the chunk, same expert
        g = tl.sum(onehot * (before + running[None, :]), axis=1)
        tl.store(pair_pos_ptr + p0 + pp, g, mask=valid)
        tl.store(pair_order_ptr + g, p0 + pp, mask=valid)
        running += tl.sum(onehot, axis=0)


@triton.jit
def _tile(tiles_ptr, num_tiles_ptr):
    tile = tl.program_id(0)
    live = tile < tl.load(num_tiles_ptr)
    row = tiles_ptr + tl.minimum(tile, tl.load(num_tiles_ptr) - 1) * 3
    return live, tl.load(row).to(tl.int64), tl.load(row + 1), tl.load(row + 2)


@triton.jit
def _mxfp4_gemm(a_ptrs, a_mask, q_ptr, s_ptr, rows, K, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_K: tl.constexpr, FAST: tl.constexpr = True):
    """acc[m, n] = sum_k A[m, k] W[rows[n], k]: A bf16 through a_ptrs ([BLOCK_M, BLOCK_K] at k = 0), W MXFP4
    (q_ptr: the expert's blocks as bytes, [R, K/2]; s_ptr: its scales, [R, K/32]) on the tensor cores
    (tl.dot_scaled: FP4 times scale decoded to bf16, fp32 accumulation)."""
    rk = tl.arange(0, BLOCK_K)
    rb = tl.arange(0, BLOCK_K // 2)
    rs = tl.arange(0, BLOCK_K // 32)
    b_ptrs = q_ptr + rows.to(tl.int64)[:, None] * (K // 2) + rb[None, :]           # [BLOCK_N, BLOCK_K / 2]
    s_ptrs = s_ptr + rows.to(tl.int64)[:, None] * (K // 32) + rs[None, :]          # [BLOCK_N, BLOCK_K / 32]
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in tl.range(0, K, BLOCK_K):
        a = tl.load(a_ptrs + k0, mask=a_mask & ((k0 + rk) < K)[None, :], other=0.0)
        # K is a multiple of 32: mask whole 16-byte blocks so the copies stay 16 bytes wide
        b = tl.load(b_ptrs + k0 // 2, mask=((k0 + (rb // 16) * 32) < K)[None, :], other=0)
        sc = tl.load(s_ptrs + k0 // 32, mask=((k0 + 32 * rs) < K)[None, :], other=127)
        acc = tl.dot_scaled(a, None, "bf16", tl.trans(b), sc, "e2m1", acc, fast_math=FAST)
    return acc


@triton.jit
def moe_mlp1_gemm(xn_ptr, pair_order_ptr, tiles_ptr, num_tiles_ptr, blocks_ptr, scales_ptr, bias_ptr, act_ptr,
                  H, I, K_TOP, limit, alpha, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pdl_begin()
    live, e, g0, count = _tile(tiles_ptr, num_tiles_ptr)
    if live:
        R = 2 * I
        rm = tl.arange(0, BLOCK_M)
        m_in = rm < count
        pair = tl.load(pair_order_ptr + g0 + rm, mask=m_in, other=0)
        tok = (pair // K_TOP).to(tl.int64)
        a_ptrs = xn_ptr + tok[:, None] * H + tl.arange(0, BLOCK_K)[None, :]
        n0 = tl.program_id(1) * BLOCK_N
        rn = n0 + tl.arange(0, BLOCK_N)
        rows = tl.minimum(rn, R - 1)                      # rows past 2I read the last row; never stored
        acc = _mxfp4_gemm(a_ptrs, m_in[:, None], blocks_ptr + e * R * (H // 2), scales_ptr + e * R * (H // 32),
                          rows, H, BLOCK_M, BLOCK_N, BLOCK_K)
        acc += tl.load(bias_ptr + e * R + rn, mask=rn < R, other=0.0).to(tl.float32)[None, :]
        gate, up = tl.split(tl.reshape(acc, [BLOCK_M, BLOCK_N // 2, 2]))
        out = _swiglu(gate, up, limit, alpha).to(tl.bfloat16)
        cols = n0 // 2 + tl.arange(0, BLOCK_N // 2)
        ptrs = act_ptr + (g0 + rm).to(tl.int64)[:, None] * I + cols[None, :]
        tl.store(ptrs, out, mask=m_in[:, None] & (cols < I)[None, :])


@triton.jit
def moe_mlp2_gemm(act_ptr, tiles_ptr, num_tiles_ptr, blocks_ptr, scales_ptr, bias_ptr, y2_ptr, H, I,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    pdl_begin()
    live, e, g0, count = _tile(tiles_ptr, num_tiles_ptr)
    if live:
        rm = tl.arange(0, BLOCK_M)
        m_in = rm < count
        g = (g0 + tl.minimum(rm, count - 1)).to(tl.int64)   # rows past the tile re-read its last row
        a_ptrs = act_ptr + g[:, None] * I + tl.arange(0, BLOCK_K)[None, :]
        rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
        acc = _mxfp4_gemm(a_ptrs, m_in[:, None], blocks_ptr + e * H * (I // 2), scales_ptr + e * H * (I // 32),
                          tl.minimum(rn, H - 1), I, BLOCK_M, BLOCK_N, BLOCK_K)
        acc += tl.load(bias_ptr + e * H + rn, mask=rn < H, other=0.0).to(tl.float32)[None, :]
        ptrs = y2_ptr + (g0 + rm).to(tl.int64)[:, None] * H + rn[None, :]
        tl.store(ptrs, acc, mask=m_in[:, None] & (rn < H)[None, :])


@triton.jit
def moe_combine(y2_ptr, pair_pos_ptr, weights_ptr, x_ptr, T, H, K_TOP, BLOCK_H: tl.constexpr):
    pdl_begin()
    t = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    h_in = offs < H
    total = tl.zeros([BLOCK_H], tl.float32)
    for j in tl.range(0, K_TOP):
        p = t * K_TOP + j
        g = tl.load(pair_pos_ptr + p).to(tl.int64)
        total += tl.load(weights_ptr + p) * tl.load(y2_ptr + g * H + offs, mask=h_in, other=0.0)
    x_ptrs = x_ptr + t.to(tl.int64) * H + offs
    tl.store(x_ptrs, tl.load(x_ptrs, mask=h_in, other=0.0) + total, mask=h_in)


GEMM_BLOCK_M = 64  # rows (token-expert pairs) per tile: moe_sort and the gemm kernels share it

VARIANTS = [
    Variant(name="moe_mlp1_gemv", kernel=moe_mlp1_gemv,
            signature={"xn_ptr": "*fp32", "ids_ptr": "*i32", "blocks_ptr": "*u8", "scales_ptr": "*u8",
                       "bias_ptr": "*bf16", "act_ptr": "*fp32", "T": "i32", "H": "i32", "I": "i32", "K_TOP": "i32",
                       "limit": "fp32", "alpha": "fp32"},
            constexprs={"BLOCK_N": 16, "BLOCK_KB": 32, "STAGES": 3}, num_warps=1, num_stages=1, div16=("H", "I")),
    Variant(name="moe_mlp2_gemv", kernel=moe_mlp2_gemv,
            signature={"act_ptr": "*fp32", "ids_ptr": "*i32", "weights_ptr": "*fp32", "blocks_ptr": "*u8",
                       "scales_ptr": "*u8", "bias_ptr": "*bf16", "x_ptr": "*fp32", "T": "i32", "H": "i32", "I": "i32",
                       "K_TOP": "i32"},
            constexprs={"BLOCK_N": 4, "BLOCK_KB": 32, "J": 4, "STAGES": 3}, num_warps=4, num_stages=1,
            div16=("H", "I")),
] + [
    # Grouped families by tile height: _m16 for decode batches (few tokens per expert: measured 211 us against
    # 297 us with 64-row tiles for 64 tokens), _m128 for prefill chunks (each expert's weights read half as often:
    # 562 us against 670 us for 1024 tokens). The sort and the two products of one family share BLOCK_M. The _m16
    # tile is 64 weight rows wide: twice the programs of 128 (bench/gpu/kernel_lab.py --only m16, H200, 20b shapes,
    # mlp1 / mlp2: 195 / 111 us against 212 / 121 at 64 tokens, 121 / 73 against 147 / 97 at 8). The runtime takes
    # moe_gemm_mma.py's tensor-core products on the _m16 tiles instead where it can (GON_CUDA_GEMM_MMA=0: these).
    v
    for bm, bn, bk, warps, stages in ((16, 64, 128, 4, 4), (128, 128, 64, 8, 3))
    for v in (
        Variant(name=f"moe_sort_m{bm}", kernel=moe_sort,
                signature={"ids_ptr": "*i32", "P": "i32", "E": "i32", "pair_order_ptr": "*i32",
                           "pair_pos_ptr": "*i32", "tiles_ptr": "*i32", "num_tiles_ptr": "*i32"},
                constexprs={"BLOCK_M": bm, "BLOCK_E": 128, "BLOCK_P": 64}, num_warps=4, num_stages=1),
        Variant(name=f"moe_mlp1_gemm_m{bm}", kernel=moe_mlp1_gemm,
                signature={"xn_ptr": "*bf16", "pair_order_ptr": "*i32", "tiles_ptr": "*i32", "num_tiles_ptr": "*i32",
                           "blocks_ptr": "*u8", "scales_ptr": "*u8", "bias_ptr": "*bf16", "act_ptr": "*bf16",
                           "H": "i32", "I": "i32", "K_TOP": "i32", "limit": "fp32", "alpha": "fp32"},
                constexprs={"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages,
                div16=("H", "I")),
        Variant(name=f"moe_mlp2_gemm_m{bm}", kernel=moe_mlp2_gemm,
                signature={"act_ptr": "*bf16", "tiles_ptr": "*i32", "num_tiles_ptr": "*i32", "blocks_ptr": "*u8",
                           "scales_ptr": "*u8", "bias_ptr": "*bf16", "y2_ptr": "*fp32", "H": "i32", "I": "i32"},
                constexprs={"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk}, num_warps=warps, num_stages=stages,
                div16=("H", "I")),
    )
] + [
    Variant(name="moe_combine", kernel=moe_combine,
            signature={"y2_ptr": "*fp32", "pair_pos_ptr": "*i32", "weights_ptr": "*fp32", "x_ptr": "*fp32", "T": "i32",
                       "H": "i32", "K_TOP": "i32"},
            constexprs={"BLOCK_H": 1024}, num_warps=4, num_stages=1, div16=("H",)),
]


# ---------------------------------------------------------------------------------------------------------------
# One-row expert products (decode): same contracts and grids as moe_mlp1_gemv / moe_mlp2_gemv, in the simplest
# streaming form: each program decodes a [rows, BLOCK_B blocks, 16 bytes] tile of MXFP4 per iteration with the
# exact bit construction (FP4 code c -> float32 bits (c & 7) << 22 | (c & 8) << 28 = FP4 x 2^-126; the block scale
# 2^(s - 127) then becomes 2^(s - 1), built as float32 bits and applied in two steps so every s is exact), keeps a
# [rows, BLOCK_B] fp32 accumulator and reduces it at the end; the loads pipeline num_stages deep.


@triton.jit
def _mxfp4_rows_dot(q_ptr, s_ptr, grow, rm, x_ptr, KB, BLOCK_R: tl.constexpr, BLOCK_B: tl.constexpr, g_ptr=None,
                    NORM: tl.constexpr = 0, kb0=0, kb1=-1):
    """sum_k W[grow[r], k] x[k] for the rows grow ([BLOCK_R] int64, rm its mask), fp32; KB blocks per row, of
    which blocks kb0 .. kb1 - 1 are summed (kb1 = -1: all). With NORM, x[k] is first multiplied by the norm
    weight g[k] (bf16) and the sum of squares of x comes back too: returns (sum, sum_k x[k]^2), else (sum, 0)."""
    acc = tl.zeros([BLOCK_R, BLOCK_B], tl.float32)
    ss = tl.zeros([BLOCK_B, 32], tl.float32)
    kb_end = tl.where(kb1 < 0, KB, kb1)
    for b0 in range(kb0, kb_end, BLOCK_B):
        bs = b0 + tl.arange(0, BLOCK_B)
        bm = bs < kb_end
        q = tl.load(q_ptr + grow[:, None, None] * (KB * 16) + bs[None, :, None] * 16 + tl.arange(0, 16)[None, None, :],
                    mask=rm[:, None, None] & bm[None, :, None], other=0).to(tl.int32)
        lo = q & 15
        hi = q >> 4
        flo = (((lo & 7) << 22) | ((lo & 8) << 28)).to(tl.float32, bitcast=True)
        fhi = (((hi & 7) << 22) | ((hi & 8) << 28)).to(tl.float32, bitcast=True)
        xv = tl.load(x_ptr + bs[:, None] * 32 + tl.arange(0, 32)[None, :], mask=bm[:, None], other=0.0)
        if NORM:
            ss += xv * xv
            xv = xv * tl.load(g_ptr + bs[:, None] * 32 + tl.arange(0, 32)[None, :], mask=bm[:, None],
                              other=0.0).to(tl.float32)
        xe, xo = tl.split(tl.reshape(xv, [BLOCK_B, 16, 2]))
        d = tl.sum(flo * xe[None, :, :] + fhi * xo[None, :, :], axis=2)
        s = tl.load(s_ptr + grow[:, None] * KB + bs[None, :], mask=rm[:, None] & bm[None, :], other=0).to(tl.int32)
        f1 = ((tl.minimum(s, 128) + 126) << 23).to(tl.float32, bitcast=True)   # 2^(min(s, 128) - 1)
        f2 = ((tl.maximum(s, 128) - 1) << 23).to(tl.float32, bitcast=True)     # 2^(max(s, 128) - 128)
        acc += (d * f1) * f2
    return tl.sum(acc, axis=1), tl.sum(tl.sum(ss, axis=1), axis=0)


@triton.jit
def moe_mlp1_gemv1(xn_ptr, ids_ptr, blocks_ptr, scales_ptr, bias_ptr, act_ptr, T, H, I, K_TOP, limit, alpha,
                   BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    pdl_begin()
    p = tl.program_id(0)
    e = tl.load(ids_ptr + p).to(tl.int64)
    t = (p // K_TOP).to(tl.int64)
    R = 2 * I
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)      # gate/up pairs stay together (BLOCK_N even)
    rm = rows < R
    grow = e * R + rows
    y, _ = _mxfp4_rows_dot(blocks_ptr, scales_ptr, grow, rm, xn_ptr + t * H, H // 32, BLOCK_N, BLOCK_B)
    y += tl.load(bias_ptr + grow, mask=rm, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N // 2, 2]))
    cols = tl.program_id(1) * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
    tl.store(act_ptr + p.to(tl.int64) * I + cols, _swiglu(gate, up, limit, alpha), mask=cols < I)


@triton.jit
def moe_mlp2_gemv1(act_ptr, ids_ptr, weights_ptr, blocks_ptr, scales_ptr, bias_ptr, x_ptr, T, H, I, K_TOP,
                   BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr):
    pdl_begin()
    t = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rows < H
    total = tl.zeros([BLOCK_N], tl.float32)
    for j in range(0, K_TOP):                                         # experts in increasing j: deterministic
        p = t * K_TOP + j
        e = tl.load(ids_ptr + p).to(tl.int64)
        wt = tl.load(weights_ptr + p)
        grow = e * H + rows
        y, _ = _mxfp4_rows_dot(blocks_ptr, scales_ptr, grow, rm, act_ptr + p.to(tl.int64) * I, I // 32, BLOCK_N,
                               BLOCK_B)
        y += tl.load(bias_ptr + grow, mask=rm, other=0.0).to(tl.float32)
        total += wt * y
    xp = x_ptr + t.to(tl.int64) * H + rows
    tl.store(xp, tl.load(xp, mask=rm, other=0.0) + total, mask=rm)


# Routed forms for one token (the CUDA moe_block at batch 1): the router logits come in and every program derives
# the top-k experts and their softmax weights itself (_route_*: exactly elementwise.topk_softmax's selection and
# arithmetic), and mlp1 takes the residual stream x with the RMSNorm fused (the sum of squares accumulates in the
# product's own pass over x; the norm weight multiplies x on the way in): the separate rmsnorm and top-k kernels,
# two launches a layer, drop out.
#   moe_mlp1_route_gemv1(x, norm_w, eps, logits, E, blocks, scales, bias, act, T, H, I, K_TOP, limit, alpha)
#                                                      grid (T * K_TOP, cdiv(2I, BLOCK_N))
#       act[p] as moe_mlp1_gemv1 with xn = rmsnorm(x, norm_w, eps) and ids = top-k(logits) (E <= BLOCK_E).
#   moe_mlp2_route_gemv1(act, logits, E, blocks, scales, bias, x, T, H, I, K_TOP)  grid (T, cdiv(H, BLOCK_N))
#       as moe_mlp2_gemv1 with ids and weights = top-k softmax of logits.


@triton.jit
def _route_load(logits_ptr, t, E, BLOCK_E: tl.constexpr):
    e = tl.arange(0, BLOCK_E)
    neg = float("-inf")
    vals = tl.load(logits_ptr + t.to(tl.int64) * E + e, mask=e < E, other=neg)
    vals = tl.where(vals == vals, vals, neg)        # NaN never wins; padding lanes are never chosen
    return e, vals, e >= E, tl.max(vals, axis=0)


@triton.jit
def _route_next(e, vals, taken, BLOCK_E: tl.constexpr):
    """The next expert of the top-k: the largest untaken logit, lowest index among ties."""
    v = tl.where(taken, float("-inf"), vals)
    best = tl.max(v, axis=0)
    idx = tl.min(tl.where((v == best) & (~taken), e, BLOCK_E), axis=0)
    return taken | (e == idx), idx, best


@triton.jit
def moe_mlp1_route_gemv1(x_ptr, norm_w_ptr, eps, logits_ptr, E, blocks_ptr, scales_ptr, bias_ptr, act_ptr, T, H, I,
                         K_TOP, limit, alpha, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr):
    pdl_begin()
    p = tl.program_id(0)
    t = p // K_TOP
    e_lanes, vals, taken, first = _route_load(logits_ptr, t, E, BLOCK_E)
    idx = 0
    for _j in range(0, p % K_TOP + 1):
        taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
    e = idx.to(tl.int64)
    R = 2 * I
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rows < R
    grow = e * R + rows
    y, ss = _mxfp4_rows_dot(blocks_ptr, scales_ptr, grow, rm, x_ptr + t.to(tl.int64) * H, H // 32, BLOCK_N, BLOCK_B,
                            norm_w_ptr, 1)
    y = y / tl.sqrt(ss / H + eps) + tl.load(bias_ptr + grow, mask=rm, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N // 2, 2]))
    cols = tl.program_id(1) * (BLOCK_N // 2) + tl.arange(0, BLOCK_N // 2)
    tl.store(act_ptr + p.to(tl.int64) * I + cols, _swiglu(gate, up, limit, alpha), mask=cols < I)


@triton.jit
def moe_mlp2_route_gemv1(act_ptr, logits_ptr, E, blocks_ptr, scales_ptr, bias_ptr, x_ptr, T, H, I, K_TOP,
                         BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr):
    pdl_begin()
    t = tl.program_id(0)
    e_lanes, vals, taken0, first = _route_load(logits_ptr, t, E, BLOCK_E)
    total = 0.0
    taken = taken0
    for _j in range(0, K_TOP):
        taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
        total += tl.exp(best - first)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rows < H
    out = tl.zeros([BLOCK_N], tl.float32)
    taken = taken0
    for j in range(0, K_TOP):                                         # experts in increasing j: deterministic
        taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
        wt = tl.exp(best - first) / total
        p = t * K_TOP + j
        grow = idx.to(tl.int64) * H + rows
        y, _ss = _mxfp4_rows_dot(blocks_ptr, scales_ptr, grow, rm, act_ptr + p.to(tl.int64) * I, I // 32, BLOCK_N,
                                 BLOCK_B)
        y += tl.load(bias_ptr + grow, mask=rm, other=0.0).to(tl.float32)
        out += wt * y
    xp = x_ptr + t.to(tl.int64) * H + rows
    tl.store(xp, tl.load(xp, mask=rm, other=0.0) + out, mask=rm)


@triton.jit
def moe_mlp2_route_split(act_ptr, logits_ptr, E, blocks_ptr, scales_ptr, bias_ptr, part_ptr, count_ptr, x_ptr, H,
                         I, K_TOP, BLOCK_N: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_E: tl.constexpr,
                         SPLIT: tl.constexpr):
    """moe_mlp2_route_gemv1 for one token with twice the programs and a better tile: program (j, r, s) takes
    expert j's rows r * BLOCK_N.. over slice s of the blocks and writes its partial sums to part[j * SPLIT + s];
    the last of the K_TOP * SPLIT programs of a row tile to finish (a counter per tile, acq_rel) adds the partials
    in a fixed order (so the result does not depend on which is last), the biases and the weights into x, and
    puts the counter back to 0 for the next launch. part fp32 [K_TOP * SPLIT, H]; count int32
    [cdiv(H, BLOCK_N)], zero before the first launch."""
    pdl_begin()
    j = tl.program_id(0)
    rt = tl.program_id(1)
    sp = tl.program_id(2)
    e_lanes, vals, taken0, first = _route_load(logits_ptr, sp * 0, E, BLOCK_E)
    taken = taken0
    idx = 0
    for _j in range(0, j + 1):
        taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
    rows = rt * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = rows < H
    KB = I // 32
    per = tl.cdiv(tl.cdiv(KB, SPLIT), BLOCK_B) * BLOCK_B
    kb0 = sp * per
    y, _ss = _mxfp4_rows_dot(blocks_ptr, scales_ptr, idx.to(tl.int64) * H + rows, rm, act_ptr + j.to(tl.int64) * I,
                             KB, BLOCK_N, BLOCK_B, kb0=kb0, kb1=tl.minimum(kb0 + per, KB))
    tl.store(part_ptr + (j * SPLIT + sp).to(tl.int64) * H + rows, y, mask=rm)
    tl.debug_barrier()                                  # every thread's partials are written before the count
    done = tl.atomic_add(count_ptr + rt, 1, sem="acq_rel", scope="gpu")
    if done == K_TOP * SPLIT - 1:
        total = 0.0
        taken = taken0
        for _j2 in range(0, K_TOP):
            taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
            total += tl.exp(best - first)
        out = tl.zeros([BLOCK_N], tl.float32)
        taken = taken0
        for jj in range(0, K_TOP):                       # experts in increasing j, slices in increasing s
            taken, idx, best = _route_next(e_lanes, vals, taken, BLOCK_E)
            yj = tl.load(bias_ptr + idx.to(tl.int64) * H + rows, mask=rm, other=0.0).to(tl.float32)
            ys = tl.zeros([BLOCK_N], tl.float32)
            for s in range(0, SPLIT):
                ys += tl.load(part_ptr + (jj * SPLIT + s) * H + rows, mask=rm, other=0.0,
                              cache_modifier=".cg")
            out += (tl.exp(best - first) / total) * (ys + yj)
        tl.store(x_ptr + rows, tl.load(x_ptr + rows, mask=rm, other=0.0) + out, mask=rm)
        tl.atomic_xchg(count_ptr + rt, 0, sem="relaxed", scope="gpu")


# (BLOCK_N, BLOCK_B, num_warps, num_stages) of the one-row expert kernels, the fastest of the tiles tried on an H200
# (bench/gpu/kernel_lab.py): mlp1 4 x 5760 x 2880 in 33.3 us, mlp2 4 x 2880 x 2880 in 26.3 us (the earlier gemv
# kernels: 39.0 and 37.4 us)
GEMV1_MLP1_TILE = (64, 8, 8, 3)
GEMV1_MLP2_TILE = (4, 32, 4, 3)

VARIANTS += [
    Variant(name="moe_mlp1_gemv1", kernel=moe_mlp1_gemv1,
            signature={"xn_ptr": "*fp32", "ids_ptr": "*i32", "blocks_ptr": "*u8", "scales_ptr": "*u8",
                       "bias_ptr": "*bf16", "act_ptr": "*fp32", "T": "i32", "H": "i32", "I": "i32", "K_TOP": "i32",
                       "limit": "fp32", "alpha": "fp32"},
            constexprs={"BLOCK_N": GEMV1_MLP1_TILE[0], "BLOCK_B": GEMV1_MLP1_TILE[1]}, num_warps=GEMV1_MLP1_TILE[2],
            num_stages=GEMV1_MLP1_TILE[3], div16=("H", "I")),
    Variant(name="moe_mlp2_gemv1", kernel=moe_mlp2_gemv1,
            signature={"act_ptr": "*fp32", "ids_ptr": "*i32", "weights_ptr": "*fp32", "blocks_ptr": "*u8",
                       "scales_ptr": "*u8", "bias_ptr": "*bf16", "x_ptr": "*fp32", "T": "i32", "H": "i32", "I": "i32",
                       "K_TOP": "i32"},
            constexprs={"BLOCK_N": GEMV1_MLP2_TILE[0], "BLOCK_B": GEMV1_MLP2_TILE[1]}, num_warps=GEMV1_MLP2_TILE[2],
            num_stages=GEMV1_MLP2_TILE[3], div16=("H", "I")),
] + [
    Variant(name=f"moe_mlp1_route_gemv1_e{be}", kernel=moe_mlp1_route_gemv1,
            signature={"x_ptr": "*fp32", "norm_w_ptr": "*bf16", "eps": "fp32", "logits_ptr": "*fp32", "E": "i32",
                       "blocks_ptr": "*u8", "scales_ptr": "*u8", "bias_ptr": "*bf16", "act_ptr": "*fp32", "T": "i32",
                       "H": "i32", "I": "i32", "K_TOP": "i32", "limit": "fp32", "alpha": "fp32"},
            constexprs={"BLOCK_N": GEMV1_MLP1_TILE[0], "BLOCK_B": GEMV1_MLP1_TILE[1], "BLOCK_E": be},
            num_warps=GEMV1_MLP1_TILE[2], num_stages=GEMV1_MLP1_TILE[3], div16=("H", "I"))
    for be in (32, 128)
] + [
    Variant(name=f"moe_mlp2_route_gemv1_e{be}", kernel=moe_mlp2_route_gemv1,
            signature={"act_ptr": "*fp32", "logits_ptr": "*fp32", "E": "i32", "blocks_ptr": "*u8", "scales_ptr": "*u8",
                       "bias_ptr": "*bf16", "x_ptr": "*fp32", "T": "i32", "H": "i32", "I": "i32", "K_TOP": "i32"},
            constexprs={"BLOCK_N": GEMV1_MLP2_TILE[0], "BLOCK_B": GEMV1_MLP2_TILE[1], "BLOCK_E": be},
            num_warps=GEMV1_MLP2_TILE[2], num_stages=GEMV1_MLP2_TILE[3], div16=("H", "I"))
    for be in (32, 128)
] + [
    Variant(name=f"moe_mlp2_route_split_e{be}", kernel=moe_mlp2_route_split,
            signature={"act_ptr": "*fp32", "logits_ptr": "*fp32", "E": "i32", "blocks_ptr": "*u8", "scales_ptr": "*u8",
                       "bias_ptr": "*bf16", "part_ptr": "*fp32", "count_ptr": "*i32", "x_ptr": "*fp32", "H": "i32",
                       "I": "i32", "K_TOP": "i32"},
            constexprs={"BLOCK_N": 64, "BLOCK_B": 8, "BLOCK_E": be, "SPLIT": 2}, num_warps=8, num_stages=3,
            div16=("H", "I"))
    for be in (32, 128)
]
