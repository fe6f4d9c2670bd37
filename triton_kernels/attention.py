"""Attention with sinks and sliding windows over the KV cache.

KV cache of one layer (written by elementwise.rope_kv_store): K and V, fp32 or
bf16 (KV_BF16), element d of kv head g of position p of sequence slot s at
[s * seq_stride + (g * capacity + p % capacity) * HD + d]. Query head h uses kv
head h // (NQ // NKV). A query at position p of slot s sees the keys of slot s
at positions lo..p, lo = max(0, p - window + 1) if window > 0 else 0 (all of
them are in the cache: the runtime keeps rings large enough). Scores
q.k * scale; the softmax runs over the keys plus the head's sink logit
(sinks bf16 [NQ]), whose column is then dropped. qkv fp32 [T, qkv_stride]
holds q (heads 0..NQ-1, already rotated) at column h * HD.

Contracts:
  attention_decode(qkv, positions, seqs, k_cache, v_cache, part_ml, part_o,
                   T, qkv_stride, seq_stride, capacity, window, scale, NQ, NKV, HD)
                                              grid (T, NKV, NUM_SPLITS)
      One token and kv head per (t, g); its keys split into NUM_SPLITS
      contiguous ranges (any split of lo..p; a range may be empty). Writes for
      each query head h of the group and split s: part_ml fp32 [T, NQ, NUM_SPLITS, 2]
      = (m, l) with m the split's max score (-inf if empty) and l = sum exp(score - m);
      part_o fp32 [T, NQ, NUM_SPLITS, HD] = sum exp(score - m) v.
  attention_decode_direct(qkv, positions, seqs, k_cache, v_cache, sinks, out, T, qkv_stride,
                          out_stride, seq_stride, capacity, window, scale, NQ, NKV, HD)
                                              grid (T, NKV)
      attention_decode with one split and attention_combine in one launch (the
      same arithmetic, so the same results): out as attention_combine's.
  attention_combine(part_ml, part_o, sinks, out, T, NQ, HD, out_stride)
                                              grid (T, NQ)
      out[t, h * HD + d] = sum_s e^(m_s - M) o_s[d] / (e^(sink_h - M) + sum_s e^(m_s - M) l_s),
      M = max(sink_h, m_s); out fp32 or bf16 (OUT_BF16), row stride out_stride.
  attention_prefill(qkv, tiles, k_cache, v_cache, sinks, out, num_tiles, qkv_stride, out_stride,
                    seq_stride, capacity, window, scale, NQ, NKV, HD)
                                              grid (num_tiles, NQ)
      tiles i32 [num_tiles, 4] = (first row, count <= BLOCK_M, seq slot, first
      position): rows first..first+count-1 are tokens of that slot at consecutive
      positions (their keys are in the cache already). Flash attention on the
      tensor cores (bf16 operands, fp32 accumulation and softmax), out as in
      attention_combine (OUT_BF16).

NUM_SPLITS, BLOCK_M and the head-dimension block are variant constexprs the
runtime reads from the manifest.

Variants (names, constexprs and grids):
  attention_decode_s{NUM_SPLITS}_d{BLOCK_D}_{f32|bf16}[_a16]   grid (T, NKV, NUM_SPLITS)
      NUM_SPLITS in 1, 2, 4, 8, 16, 32, 64; BLOCK_D 64 (HD <= 64) or 128
      (HD <= 128); KV dtype from the suffix. Split s covers keys
      lo + s * c .. min(lo + (s + 1) * c, p + 1) - 1, c = ceil((p - lo + 1) / NUM_SPLITS).
      BLOCK_G = 16 query heads of a group at a time (a loop covers larger
      groups); BLOCK_N (keys per step: 64, 32 or 16) is internal.
      Choosing NUM_SPLITS: about T * NKV * NUM_SPLITS >= 2 * (number of SMs)
      CTAs, and no more splits than keys / 64. For gpt-oss (NKV 8) on the
      H200 (132 SMs): T = 1: 32 splits from about 2k keys (256 CTAs, all
      resident at once: 3 per SM), 16 from 512 keys, 4 for the 128-key
      windows; T = 2: 16; T = 4: 8; T >= 32: 1.
  attention_decode_direct_d{BLOCK_D}_{f32|bf16}_o{f32|bf16}[_a16]   grid (T, NKV)
      KV dtype, then out dtype; configs as attention_decode's.
  attention_combine_s{NUM_SPLITS}_{f32|bf16}                   grid (T, NQ)
      out dtype from the suffix (OUT_BF16); any HD (64 columns at a time).
  attention_prefill_d{BLOCK_D}_{f32|bf16}_o{f32|bf16}[_a16]    grid (num_tiles, NQ)
      KV dtype, then out dtype; BLOCK_M = 128 rows per tile for every variant;
      BLOCK_N (keys per step) is internal. Tiles are processed last first
      (later tiles of a prompt see more keys).
  "_a16": HD, seq_stride, qkv_stride (and out_stride for prefill) are
  multiples of 16 (listed in div16; true for head_dim 64), which lets the
  cache be read with 16-byte loads. Without it, any HD <= BLOCK_D works.
  Every variant needs capacity * HD < 2^31 (offsets inside one kv head's ring
  are 32-bit).

Precision: decode keeps fp32 accuracy on tensor cores: q (and the fp32
probabilities) are split into bf16 high and low parts (x = hi + lo to about
2^-16 relative), each multiplied by the bf16 cache with fp32 accumulation;
with an fp32 cache it uses fp32 FMA products. Prefill rounds q, the
probabilities, and an fp32 cache to bf16 for the tensor cores (fp32
accumulation, softmax and normalisation).
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant, pdl_begin

@triton.jit
def _decode_heads(qkv_ptr, t, g, h0, start, end, k_base, v_base, d, dm, qkv_stride, capacity, scale, G, HD,
                  KV_BF16: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """Query heads h0.. (BLOCK_G of kv head g's group) of token t over keys start..end-1: the running max m,
    the sum l of exp(score - m) and acc = sum exp(score - m) v, unnormalised."""
    j = h0 + tl.arange(0, BLOCK_G)
    hm = j < G
    h = g * G + j
    q = tl.load(qkv_ptr + t.to(tl.int64) * qkv_stride + h[:, None] * HD + d[None, :],
                mask=hm[:, None] & dm[None, :], other=0.0)
    if KV_BF16:
        q_hi = q.to(tl.bfloat16)
        q_lo = (q - q_hi.to(tl.float32)).to(tl.bfloat16)
    m = tl.full([BLOCK_G], float("-inf"), tl.float32)
    l = tl.zeros([BLOCK_G], tl.float32)
    acc = tl.zeros([BLOCK_G, BLOCK_D], tl.float32)
    for k0 in tl.range(start, end, BLOCK_N):
        pos = k0 + tl.arange(0, BLOCK_N)
        valid = pos < end
        off = (pos % capacity)[:, None] * HD + d[None, :]  # within one kv head: capacity * HD < 2^31
        lm = valid[:, None] & dm[None, :]
        kt = tl.load(k_base + off, mask=lm, other=0.0)
        vt = tl.load(v_base + off, mask=lm, other=0.0)
        if KV_BF16:
            kT = tl.trans(kt)
            s = tl.dot(q_hi, kT) + tl.dot(q_lo, kT)
        else:
            s = tl.dot(q, tl.trans(kt), input_precision="ieee")
        s = tl.where(valid[None, :], s * scale, float("-inf"))
        m_new = tl.maximum(m, tl.max(s, axis=1))
        alpha = tl.exp(m - m_new)
        pr = tl.exp(s - m_new[:, None])
        l = l * alpha + tl.sum(pr, axis=1)
        if KV_BF16:
            p_hi = pr.to(tl.bfloat16)
            p_lo = (pr - p_hi.to(tl.float32)).to(tl.bfloat16)
            acc = acc * alpha[:, None] + tl.dot(p_hi, vt) + tl.dot(p_lo, vt)
        else:
            acc = acc * alpha[:, None] + tl.dot(pr, vt, input_precision="ieee")
        m = m_new
    return m, l, acc, h, hm


@triton.jit
def attention_decode(qkv_ptr, positions_ptr, seqs_ptr, k_ptr, v_ptr, part_ml_ptr, part_o_ptr,
                     T, qkv_stride, seq_stride, capacity, window, scale, NQ, NKV, HD,
                     NUM_SPLITS: tl.constexpr, KV_BF16: tl.constexpr, BLOCK_G: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pdl_begin()
    t = tl.program_id(0)
    g = tl.program_id(1)
    sp = tl.program_id(2)
    G = NQ // NKV
    p = tl.load(positions_ptr + t)
    seq = tl.load(seqs_ptr + t).to(tl.int64)
    lo = 0
    if window > 0:
        lo = tl.maximum(p - window + 1, 0)
    # Keys lo..p in NUM_SPLITS contiguous ranges of (nearly) equal length.
    per = tl.cdiv(p - lo + 1, NUM_SPLITS)
    start = lo + sp * per
    end = tl.minimum(start + per, p + 1)
    d = tl.arange(0, BLOCK_D)
    dm = d < HD
    kv_base = seq * seq_stride + g.to(tl.int64) * capacity * HD
    for h0 in tl.range(0, G, BLOCK_G):
        m, l, acc, h, hm = _decode_heads(qkv_ptr, t, g, h0, start, end, k_ptr + kv_base, v_ptr + kv_base, d, dm,
                                         qkv_stride, capacity, scale, G, HD, KV_BF16, BLOCK_G, BLOCK_N, BLOCK_D)
        row = (t.to(tl.int64) * NQ + h) * NUM_SPLITS + sp
        tl.store(part_ml_ptr + row * 2, m, mask=hm)
        tl.store(part_ml_ptr + row * 2 + 1, l, mask=hm)
        tl.store(part_o_ptr + row[:, None] * HD + d[None, :], acc, mask=hm[:, None] & dm[None, :])


@triton.jit
def attention_decode_direct(qkv_ptr, positions_ptr, seqs_ptr, k_ptr, v_ptr, sinks_ptr, out_ptr,
                            T, qkv_stride, out_stride, seq_stride, capacity, window, scale, NQ, NKV, HD,
                            KV_BF16: tl.constexpr, OUT_BF16: tl.constexpr, BLOCK_G: tl.constexpr,
                            BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pdl_begin()
    t = tl.program_id(0)
    g = tl.program_id(1)
    G = NQ // NKV
    p = tl.load(positions_ptr + t)
    seq = tl.load(seqs_ptr + t).to(tl.int64)
    lo = 0
    if window > 0:
        lo = tl.maximum(p - window + 1, 0)
    d = tl.arange(0, BLOCK_D)
    dm = d < HD
    kv_base = seq * seq_stride + g.to(tl.int64) * capacity * HD
    for h0 in tl.range(0, G, BLOCK_G):
        m, l, acc, h, hm = _decode_heads(qkv_ptr, t, g, h0, lo, p + 1, k_ptr + kv_base, v_ptr + kv_base, d, dm,
                                         qkv_stride, capacity, scale, G, HD, KV_BF16, BLOCK_G, BLOCK_N, BLOCK_D)
        # attention_combine's arithmetic for one split (the same results as decode + combine with NUM_SPLITS 1)
        sink = tl.load(sinks_ptr + h, mask=hm, other=0.0).to(tl.float32)
        big = tl.maximum(m, sink)
        w = tl.exp(m - big)
        inv = 1.0 / (tl.exp(sink - big) + w * l)
        w = w * inv
        res = w[:, None] * acc
        dst = out_ptr + t.to(tl.int64) * out_stride + h[:, None] * HD + d[None, :]
        om = hm[:, None] & dm[None, :]
        if OUT_BF16:
            tl.store(dst, res.to(tl.bfloat16), mask=om)
        else:
            tl.store(dst, res, mask=om)


@triton.jit
def attention_combine(part_ml_ptr, part_o_ptr, sinks_ptr, out_ptr, T, NQ, HD, out_stride,
                      NUM_SPLITS: tl.constexpr, OUT_BF16: tl.constexpr, BLOCK_D: tl.constexpr):
    pdl_begin()
    t = tl.program_id(0)
    h = tl.program_id(1)
    s = tl.arange(0, NUM_SPLITS)
    row = (t.to(tl.int64) * NQ + h) * NUM_SPLITS + s
    m = tl.load(part_ml_ptr + row * 2)
    l = tl.load(part_ml_ptr + row * 2 + 1)
    sink = tl.load(sinks_ptr + h).to(tl.float32)
    big = tl.maximum(tl.max(m, axis=0), sink)
    w = tl.exp(m - big)  # 0 for empty splits (m = -inf)
    inv = 1.0 / (tl.exp(sink - big) + tl.sum(w * l, axis=0))
    w = w * inv
    for d0 in tl.range(0, HD, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        dm = d < HD
        o = tl.load(part_o_ptr + row[:, None] * HD + d[None, :], mask=dm[None, :], other=0.0)
        res = tl.sum(w[:, None] * o, axis=0)
        dst = out_ptr + t.to(tl.int64) * out_stride + h * HD + d
        if OUT_BF16:
            tl.store(dst, res.to(tl.bfloat16), mask=dm)
        else:
            tl.store(dst, res, mask=dm)


@triton.jit
def _prefill_block(acc, m, l, q, j0, qpos, last, k_base, v_base, d, dm, capacity, window, HD, qk_scale,
                   MASKED: tl.constexpr, BLOCK_N: tl.constexpr):
    kpos = j0 + tl.arange(0, BLOCK_N)
    off = (kpos % capacity)[:, None] * HD + d[None, :]  # within one kv head: capacity * HD < 2^31
    if MASKED:
        kvalid = kpos <= last
        lm = kvalid[:, None] & dm[None, :]
    else:
        lm = dm[None, :]
    k = tl.load(k_base + off, mask=lm, other=0.0).to(tl.bfloat16)
    v = tl.load(v_base + off, mask=lm, other=0.0).to(tl.bfloat16)
    s = tl.dot(q, tl.trans(k)) * qk_scale  # log2 units
    if MASKED:
        ok = (kpos[None, :] <= qpos[:, None]) & kvalid[None, :]
        if window > 0:
            ok = ok & (kpos[None, :] > qpos[:, None] - window)
        s = tl.where(ok, s, float("-inf"))
    m_new = tl.maximum(m, tl.max(s, axis=1))
    alpha = tl.exp2(m - m_new)
    p = tl.exp2(s - m_new[:, None])
    l = l * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(tl.bfloat16), v)
    return acc, m_new, l


@triton.jit
def attention_prefill(qkv_ptr, tiles_ptr, k_ptr, v_ptr, sinks_ptr, out_ptr, num_tiles, qkv_stride, out_stride,
                      seq_stride, capacity, window, scale, NQ, NKV, HD,
                      KV_BF16: tl.constexpr, OUT_BF16: tl.constexpr, BLOCK_M: tl.constexpr,
                      BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    pdl_begin()
    # Later tiles usually see more keys: start them first.
    i = num_tiles - 1 - tl.program_id(0)
    h = tl.program_id(1)
    first = tl.load(tiles_ptr + i * 4)
    count = tl.load(tiles_ptr + i * 4 + 1)
    seq = tl.load(tiles_ptr + i * 4 + 2).to(tl.int64)
    p0 = tl.load(tiles_ptr + i * 4 + 3)
    g = h // (NQ // NKV)
    r = tl.arange(0, BLOCK_M)
    rm = r < count
    d = tl.arange(0, BLOCK_D)
    dm = d < HD
    q = tl.load(qkv_ptr + (first + r).to(tl.int64)[:, None] * qkv_stride + h * HD + d[None, :],
                mask=rm[:, None] & dm[None, :], other=0.0).to(tl.bfloat16)
    qpos = p0 + r
    last = p0 + count - 1
    qk_scale = scale * 1.4426950408889634
    # The sink starts the running softmax (log2 units): m = sink, l = 1.
    m = tl.zeros([BLOCK_M], tl.float32) + tl.load(sinks_ptr + h).to(tl.float32) * 1.4426950408889634
    l = tl.full([BLOCK_M], 1.0, tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    kv_base = seq * seq_stride + g.to(tl.int64) * capacity * HD
    k_base = k_ptr + kv_base
    v_base = v_ptr + kv_base
    start = 0
    lo_last = 0
    if window > 0:
        start = tl.maximum(p0 - window + 1, 0)
        lo_last = tl.maximum(last - window + 1, 0)
    # Key blocks [start + b * BLOCK_N, ...): blocks full_lo..full_hi-1 are seen whole by every row
    # (no mask); the others (window edge, diagonal) are masked.
    nblocks = tl.cdiv(last + 1 - start, BLOCK_N)
    full_lo = tl.minimum(tl.cdiv(lo_last - start, BLOCK_N), nblocks)
    full_hi = tl.minimum(tl.maximum((p0 + 1 - start) // BLOCK_N, full_lo), nblocks)
    for b in tl.range(0, full_lo):
        acc, m, l = _prefill_block(acc, m, l, q, start + b * BLOCK_N, qpos, last, k_base, v_base, d, dm,
                                   capacity, window, HD, qk_scale, True, BLOCK_N)
    for b in tl.range(full_lo, full_hi):
        acc, m, l = _prefill_block(acc, m, l, q, start + b * BLOCK_N, qpos, last, k_base, v_base, d, dm,
                                   capacity, window, HD, qk_scale, False, BLOCK_N)
    for b in tl.range(full_hi, nblocks):
        acc, m, l = _prefill_block(acc, m, l, q, start + b * BLOCK_N, qpos, last, k_base, v_base, d, dm,
                                   capacity, window, HD, qk_scale, True, BLOCK_N)
    res = acc / l[:, None]
    dst = out_ptr + (first + r).to(tl.int64)[:, None] * out_stride + h * HD + d[None, :]
    if OUT_BF16:
        tl.store(dst, res.to(tl.bfloat16), mask=rm[:, None] & dm[None, :])
    else:
        tl.store(dst, res, mask=rm[:, None] & dm[None, :])


def _kv(kv):
    return "bf16" if kv else "f32"


DECODE_SPLITS = (1, 2, 4, 8, 16, 32, 64)
PREFILL_BLOCK_M = 128


def _decode_config(bd, kv, a16):
    """(BLOCK_N, num_stages) with 4 warps, chosen so that no variant spills."""
    if kv and a16:
        return (64 if bd <= 64 else 32), 3
    if kv or a16:
        return 32, 3
    return 16, 2


def _decode(ns, bd, kv, a16):
    t = "*bf16" if kv else "*fp32"
    bn, stages = _decode_config(bd, kv, a16)
    return Variant(
        name=f"attention_decode_s{ns}_d{bd}_{_kv(kv)}{'_a16' if a16 else ''}", kernel=attention_decode,
        signature={"qkv_ptr": "*fp32", "positions_ptr": "*i32", "seqs_ptr": "*i32", "k_ptr": t, "v_ptr": t,
                   "part_ml_ptr": "*fp32", "part_o_ptr": "*fp32", "T": "i32", "qkv_stride": "i32",
                   "seq_stride": "i64", "capacity": "i32", "window": "i32", "scale": "fp32", "NQ": "i32",
                   "NKV": "i32", "HD": "i32"},
        constexprs={"NUM_SPLITS": ns, "KV_BF16": kv, "BLOCK_G": 16, "BLOCK_N": bn, "BLOCK_D": bd},
        num_warps=4, num_stages=stages, div16=("qkv_stride", "seq_stride", "HD") if a16 else ())


def _direct(bd, kv, ob, a16):
    t = "*bf16" if kv else "*fp32"
    bn, stages = _decode_config(bd, kv, a16)
    return Variant(
        name=f"attention_decode_direct_d{bd}_{_kv(kv)}_o{_kv(ob)}{'_a16' if a16 else ''}",
        kernel=attention_decode_direct,
        signature={"qkv_ptr": "*fp32", "positions_ptr": "*i32", "seqs_ptr": "*i32", "k_ptr": t, "v_ptr": t,
                   "sinks_ptr": "*bf16", "out_ptr": "*bf16" if ob else "*fp32", "T": "i32", "qkv_stride": "i32",
                   "out_stride": "i32", "seq_stride": "i64", "capacity": "i32", "window": "i32", "scale": "fp32",
                   "NQ": "i32", "NKV": "i32", "HD": "i32"},
        constexprs={"KV_BF16": kv, "OUT_BF16": ob, "BLOCK_G": 16, "BLOCK_N": bn, "BLOCK_D": bd},
        num_warps=4, num_stages=stages, div16=("qkv_stride", "seq_stride", "HD") if a16 else ())


def _combine(ns, ob):
    return Variant(
        name=f"attention_combine_s{ns}_{_kv(ob)}", kernel=attention_combine,
        signature={"part_ml_ptr": "*fp32", "part_o_ptr": "*fp32", "sinks_ptr": "*bf16",
                   "out_ptr": "*bf16" if ob else "*fp32", "T": "i32", "NQ": "i32", "HD": "i32", "out_stride": "i32"},
        constexprs={"NUM_SPLITS": ns, "OUT_BF16": ob, "BLOCK_D": 64}, num_warps=4 if ns >= 32 else 2, num_stages=1)


def _prefill_config(bd, kv, a16):
    """(BLOCK_N, num_warps, num_stages): 8 warps for 128-row tiles; smaller key blocks where
    registers run short (unaligned variants load element by element)."""
    if bd <= 64:
        return (64 if a16 or kv else 32), 8, 3
    return (32, 8, 3) if a16 else (16, 8, 2)


def _prefill(bd, kv, ob, a16):
    t = "*bf16" if kv else "*fp32"
    bn, nw, ns = _prefill_config(bd, kv, a16)
    return Variant(
        name=f"attention_prefill_d{bd}_{_kv(kv)}_o{_kv(ob)}{'_a16' if a16 else ''}", kernel=attention_prefill,
        signature={"qkv_ptr": "*fp32", "tiles_ptr": "*i32", "k_ptr": t, "v_ptr": t, "sinks_ptr": "*bf16",
                   "out_ptr": "*bf16" if ob else "*fp32", "num_tiles": "i32", "qkv_stride": "i32",
                   "out_stride": "i32", "seq_stride": "i64", "capacity": "i32", "window": "i32", "scale": "fp32",
                   "NQ": "i32", "NKV": "i32", "HD": "i32"},
        constexprs={"KV_BF16": kv, "OUT_BF16": ob, "BLOCK_M": PREFILL_BLOCK_M, "BLOCK_N": bn, "BLOCK_D": bd},
        num_warps=nw, num_stages=ns, div16=("qkv_stride", "out_stride", "seq_stride", "HD") if a16 else ())


VARIANTS = (
    [_decode(ns, bd, kv, a16) for ns in DECODE_SPLITS for bd in (64, 128) for kv in (0, 1) for a16 in (0, 1)]
    + [_direct(bd, kv, ob, a16) for bd in (64, 128) for kv in (0, 1) for ob in (0, 1) for a16 in (0, 1)]
    + [_combine(ns, ob) for ns in DECODE_SPLITS for ob in (0, 1)]
    + [_prefill(bd, kv, ob, a16) for bd in (64, 128) for kv in (0, 1) for ob in (0, 1) for a16 in (0, 1)]
)
