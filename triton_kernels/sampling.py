"""Sampling at the end of the forward pass: the exact rule of
cpp/src/core/sampler.hpp on the GPU (argmax, temperature, exact top-p, the
allowed-token mask, counter-based uniforms), so only token ids cross to the host.

SampleParams (32 bytes per row, passed as three views of one buffer):
temperature fp32 at params_f32[8r], top_p fp32 at params_f32[8r + 1], seed u64
at params_u64[4r + 1], counter u64 at params_u64[4r + 2], use_mask i32 at
params_i32[8r + 6]. uniform = uniform_from(seed, counter) (splitmix64, see
cpp/src/core/sampler.cpp), computed in the kernel. mask: u8 [V], one for all
rows (rows with use_mask = 0 ignore it).

Kernels (R rows of V logits, row stride V). Every kernel takes the same
arguments, in this order:
    logits *fp32 [R, V], params_f32 *fp32, params_u64 *u64, params_i32 *i32,
    mask *u8 [V], work_f64 *fp64, work_i64 *i64 (two views of one scratch
    buffer), probs *fp32 [R, V] (scratch), tokens *i32 [R], logprobs *fp32 [R],
    R i32, V i32
and runs on grid (R, NC), NC = cdiv(V, CHUNK) (CHUNK = 2048, a constexpr of
every variant). Scratch, per row (r-th row at r * WORK words):
    work: WORK = 3712 + 265 * NC eight-byte words (the i64 and f64 views share
          it); the kernels need no initial content (the first one clears what
          the later ones accumulate into)
    probs: V floats
Launch sequence (one stream, in this order, each over grid (R, NC)):
    sample_reduce, sample_probs,                      rows with temperature 0 are done
    sample_step0,                                     rows with top_p >= 1 are done
    sample_step1, ..., sample_step6                   rows with top_p < 1 are done
A kernel does nothing for rows already done, so the whole sequence is always
correct; a caller that knows every row's parameters may stop after
sample_probs (all rows greedy) or after sample_step0 (no row with
temperature > 0 and top_p < 1). Every row's token and logprob are written
exactly once. The launches carry no state besides the scratch buffers, which
two sampling sequences running concurrently (other streams) must not share.

How (rule and CPU implementation: core/sampler.hpp, backend/cpu/sampler.cpp):
  sample_reduce  per chunk: max and first argmax (all tokens; allowed tokens),
                 first allowed token, sum of exp(l - chunk max) for the logprob.
  sample_probs   combines those (every program of the row, redundantly); rows
                 at temperature 0 (or without a finite allowed logit, or with
                 nothing allowed) emit their token here. Otherwise p_i =
                 float(exp((double(l_i) - max) / T)) (0 for NaN or excluded
                 tokens) into probs, per-chunk double sums, and for top_p < 1
                 the mass histogram of level 0 (below).
  sample_step0   top_p >= 1: the first token in index order at which the
                 running mass exceeds u * total (chunk sums locate the chunk,
                 a scan of that chunk the token).
  top_p < 1: the nucleus boundary and then the sampled token are found by a
  radix descent over the bits of p (a positive float's bits order like its
  value), levels = exponent (bits 30..23), bits 22..15, 14..7, 6..0. At each
  level every chunk adds the integer mantissa sums and counts of its tokens
  (those inside the prefix chosen so far) per digit into the row's histogram
  with 64-bit integer atomics; all tokens of a level-0 bucket share one
  exponent, so these integer sums are exact and their order cannot change
  anything. The next kernel walks the histogram in order of decreasing p
  (double masses, one fixed order) to the bucket where the running mass
  crosses the target, exactly as the CPU's descent does; equal p are taken
  in index order (a rank among them, then per-chunk counts locate the token).
      (sample_probs builds level 0)
      step0..2  nucleus boundary (target top_p * total, crossing >=): walk
                level 0, 1, 2, build level 1, 2, 3 of its prefix
      step3     walk level 3: the boundary's p, its rank among equal p and the
                mass through it; then the draw (target u * that mass,
                crossing >): walk level 0, build level 1
      step4..5  draw: walk level 1, 2, build level 2, 3
      step6     walk level 3: the drawn (p, rank), clamped to the boundary
                (rounding), then its token.
NaN: a NaN logit is never chosen while the row has a non-NaN allowed logit (the
rule's text). The CPU backend (sample_row) instead returns the first allowed
token when that token's logit is NaN; the two differ only there.
Precision: p_i and the masses as the CPU computes them (double exp rounded to
float; double sums); the logprob's log-sum-exp uses fp32 exp and per-chunk fp32
sums combined in double (about 1e-7 relative). Results are deterministic: no
float atomics; every reduction runs in a fixed order.
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant, pdl_begin

CHUNK = 2048        # logits per program
HIST_BLOCK = 128    # tokens per histogram product
NUM_STEPS = 7

# Scratch layout, in 8-byte words from the row's start (NC = cdiv(V, CHUNK)).
N_FIELDS = 16                 # one state slot; slot k written by the kernel before step k
OFF_HIST = 8 * N_FIELDS       # 7 histograms x (256 mass + 256 count)
OFF_PART = OFF_HIST + 7 * 512  # = 3712: NC x 8 partial results of sample_reduce
# then NC chunk sums, then 2 x 128 x NC per-chunk counts of the last level (boundary, sample)
WORK_BASE = OFF_PART
WORK_PER_CHUNK = 8 + 1 + 256


assert (OFF_HIST, WORK_BASE, WORK_PER_CHUNK) == (128, 3712, 265)  # the literals the kernels use


def work_words(V: int, chunk: int = CHUNK) -> int:
    """Eight-byte words of work scratch per row."""
    return WORK_BASE + WORK_PER_CHUNK * ((V + chunk - 1) // chunk)


SCRATCH = {
    "work": "3712 + 265 * cdiv(V, 2048) eight-byte words per row (work_f64 / work_i64)",
    "probs": "V fp32 per row",
}

# State fields (doubles).
F_MODE = tl.constexpr(0)    # 0 done, 1 top_p >= 1, 2 nucleus
F_LSE = tl.constexpr(1)
F_ARG = tl.constexpr(2)     # argmax among allowed tokens (the fallback token)
F_TOTAL = tl.constexpr(3)
F_BST = tl.constexpr(4)     # boundary: 0 searching, 1 none (nucleus = everything), 2 found
F_PREFIX = tl.constexpr(5)  # bits fixed so far by the current descent
F_CUM = tl.constexpr(6)     # mass before the current prefix's bucket
F_X = tl.constexpr(7)       # the current descent's target
F_PB = tl.constexpr(8)      # boundary: p bits, rank among equal p
F_JB = tl.constexpr(9)

BIG = tl.constexpr(2147483647)


@triton.jit
def _f64(v):
    return tl.full([], v, tl.float64)


@triton.jit
def _work(r, V, CHUNK: tl.constexpr):
    nc = tl.cdiv(V, CHUNK)
    return r.to(tl.int64) * (3712 + 265 * nc), nc


@triton.jit
def _splitmix64(x):
    x = x + 0x9E3779B97F4A7C15
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
    x = (x ^ (x >> 27)) * 0x94D049BB133111EB
    return x ^ (x >> 31)


@triton.jit
def _uniform(params_u64, r):
    seed = tl.load(params_u64 + 4 * r + 1).to(tl.uint64, bitcast=True)
    counter = tl.load(params_u64 + 4 * r + 2).to(tl.uint64, bitcast=True)
    bits = _splitmix64(_splitmix64(seed) ^ (counter * 0xD1B54A32D192ED03))
    return (bits >> 11).to(tl.float64) * 1.1102230246251565e-16


@triton.jit
def _emit(logits_ptr, tokens_ptr, logprobs_ptr, r, V, tok, lse):
    """Writes the row's token and its log-probability at temperature 1."""
    l = tl.load(logits_ptr + r.to(tl.int64) * V + tok).to(tl.float64)
    tl.store(tokens_ptr + r, tok)
    tl.store(logprobs_ptr + r, (l - lse).to(tl.float32))


@triton.jit
def _pow2(e):
    """2.0 ** e (double) for integer e in the normal range."""
    return ((e + 1023).to(tl.int64) << 52).to(tl.float64, bitcast=True)


@triton.jit
def _hist(probs_row, c, V, hist_ptr, cnt_ptr, prefix, SHIFT: tl.constexpr, WIDTH: tl.constexpr,
          STORE_CNT: tl.constexpr, CHUNK: tl.constexpr, HB: tl.constexpr):
    """Adds this chunk's tokens with p > 0 and (bits >> (SHIFT + WIDTH)) == prefix to the
    histogram by digit (bits >> SHIFT) & (2^WIDTH - 1): hist_ptr[d] += sum of their
    mantissas (with the implicit bit), hist_ptr[256 + d] += their count (int64 atomics).
    The per-digit sums are built on the tensor cores, exactly: one-hot(high 4 bits) x
    (8-bit pieces of the mantissa) times one-hot(low 4 bits), small integers in bf16
    with fp32 accumulation (at most 255 * CHUNK < 2^24)."""
    NB: tl.constexpr = CHUNK // HB
    offs = c * CHUNK + tl.arange(0, CHUNK)
    bits = tl.load(probs_row + offs, mask=offs < V, other=0.0).to(tl.int32, bitcast=True)
    match = (bits > 0) & ((bits >> (SHIFT + WIDTH)) == prefix)
    per_block = tl.sum(tl.reshape(match.to(tl.int32), [NB, HB]), axis=1)
    blocks = tl.arange(0, NB)
    r16 = tl.arange(0, 16)
    acc0 = tl.zeros([16, 16], tl.float32)
    acc1 = tl.zeros([16, 16], tl.float32)
    acc2 = tl.zeros([16, 16], tl.float32)
    acc3 = tl.zeros([16, 16], tl.float32)
    for b in tl.range(0, NB):
        if tl.sum(tl.where(blocks == b, per_block, 0), axis=0) > 0:
            o = c * CHUNK + b * HB + tl.arange(0, HB)
            bb = tl.load(probs_row + o, mask=o < V, other=0.0).to(tl.int32, bitcast=True)
            mb = (bb > 0) & ((bb >> (SHIFT + WIDTH)) == prefix)
            dg = (bb >> SHIFT) & ((1 << WIDTH) - 1)
            ex = (bb >> 23) & 255
            mant = (bb & 0x7FFFFF) | tl.where(ex > 0, 0x800000, 0)
            sel = ((dg >> 4)[None, :] == r16[:, None]) & mb[None, :]
            lo = ((dg & 15)[:, None] == r16[None, :]).to(tl.float32).to(tl.bfloat16)
            a0 = tl.where(sel, (mant >> 16).to(tl.float32)[None, :], 0.0).to(tl.bfloat16)
            a1 = tl.where(sel, ((mant >> 8) & 255).to(tl.float32)[None, :], 0.0).to(tl.bfloat16)
            a2 = tl.where(sel, (mant & 255).to(tl.float32)[None, :], 0.0).to(tl.bfloat16)
            a3 = sel.to(tl.float32).to(tl.bfloat16)
            acc0 = tl.dot(a0, lo, acc0)
            acc1 = tl.dot(a1, lo, acc1)
            acc2 = tl.dot(a2, lo, acc2)
            acc3 = tl.dot(a3, lo, acc3)
    msum = acc0.to(tl.int64) * 65536 + acc1.to(tl.int64) * 256 + acc2.to(tl.int64)
    cnt = acc3.to(tl.int64)
    digit = r16[:, None] * 16 + r16[None, :]
    tl.atomic_add(hist_ptr + digit, msum, mask=cnt > 0, sem="relaxed")
    tl.atomic_add(hist_ptr + 256 + digit, cnt, mask=cnt > 0, sem="relaxed")
    if STORE_CNT:
        tl.store(cnt_ptr + digit, cnt, mask=digit < 128)


@triton.jit
def _walk(hist_ptr, LEVEL0: tl.constexpr, E, cum0, x, STRICT: tl.constexpr):
    """Walks a histogram in order of decreasing p from running mass cum0 to the first
    nonempty bucket at which the running mass crosses x (> if STRICT, else >=).
    Returns (found, digit, mass before that bucket, its count). Level 0 (LEVEL0):
    bucket d holds exponent d. Deeper levels (all of exponent E): when rounding keeps
    the walk from crossing, the last nonempty bucket is taken (found stays True)."""
    k = tl.arange(0, 256)
    dg = 255 - k
    msum = tl.load(hist_ptr + dg)
    cnt = tl.load(hist_ptr + 256 + dg)
    if LEVEL0:
        scale = _pow2(tl.maximum(dg, 1) - 150)
    else:
        scale = _pow2(tl.maximum(E, 1) - 150)
    m = msum.to(tl.float64) * scale
    run = cum0 + tl.cumsum(m, axis=0)
    if STRICT:
        cross = run > x
    else:
        cross = run >= x
    first = tl.min(tl.where((cnt > 0) & cross, k, 256), axis=0)
    found = first < 256
    if not LEVEL0:
        last = tl.max(tl.where(cnt > 0, k, -1), axis=0)
        first = tl.where(found, first, last)
        found = first >= 0
    before = cum0 + tl.sum(tl.where(k < first, m, 0.0), axis=0)
    count = tl.sum(tl.where(k == first, cnt, 0), axis=0)
    return found, 255 - first, before, count


@triton.jit
def _hist_total(hist_ptr):
    """Total mass of the level-0 histogram, in the walk's order."""
    k = tl.arange(0, 256)
    dg = 255 - k
    m = tl.load(hist_ptr + dg).to(tl.float64) * _pow2(tl.maximum(dg, 1) - 150)
    return tl.sum(m, axis=0)


@triton.jit
def _rank(pbits, count, before, x, STRICT: tl.constexpr):
    """Among `count` tokens of equal p (bits pbits) following mass `before`: the first
    rank j at which before + (j + 1) p crosses x, else count - 1; and that mass."""
    pv = pbits.to(tl.float32, bitcast=True).to(tl.float64)
    cf = count.to(tl.float64)
    t = tl.minimum(tl.maximum((x - before) / pv, -4.0), cf + 4.0)
    j0 = tl.maximum(tl.floor(t).to(tl.int64) - 2, 0)
    kk = j0 + tl.arange(0, 8).to(tl.int64)
    run = before + (kk + 1).to(tl.float64) * pv
    if STRICT:
        hit = (run > x) & (kk < count)
    else:
        hit = (run >= x) & (kk < count)
    j = tl.min(tl.where(hit, kk, count - 1), axis=0)
    return j, before + (j + 1).to(tl.float64) * pv


@triton.jit
def sample_reduce(logits_ptr, params_f32, params_u64, params_i32, mask_ptr, work_f64, work_i64, probs_ptr,
                  tokens_ptr, logprobs_ptr, R, V, CHUNK: tl.constexpr, HB: tl.constexpr):
    pdl_begin()
    r = tl.program_id(0)
    c = tl.program_id(1)
    wb, nc = _work(r, V, CHUNK)
    offs = c * CHUNK + tl.arange(0, CHUNK)
    inb = offs < V
    l = tl.load(logits_ptr + r.to(tl.int64) * V + offs, mask=inb, other=float("nan"))
    ok = l == l
    lv = tl.where(ok, l, float("-inf"))
    cmax = tl.max(lv, axis=0)
    cidx = tl.min(tl.where(ok & (l == cmax), offs, BIG), axis=0)
    shift = tl.where(cmax > float("-inf"), cmax, 0.0)
    csum = tl.sum(tl.exp(lv - shift), axis=0)
    use_mask = tl.load(params_i32 + 8 * r + 6)
    amax = cmax
    aidx = cidx
    first = c * CHUNK
    if use_mask != 0:
        allowed = tl.load(mask_ptr + offs, mask=inb, other=0) != 0
        first = tl.min(tl.where(allowed, offs, BIG), axis=0)
        aok = allowed & ok
        amax = tl.max(tl.where(aok, l, float("-inf")), axis=0)
        aidx = tl.min(tl.where(aok & (l == amax), offs, BIG), axis=0)
    part = work_f64 + wb + 3712 + c * 8
    tl.store(part + 0, cmax.to(tl.float64))
    tl.store(part + 1, cidx.to(tl.float64))
    tl.store(part + 2, csum.to(tl.float64))
    tl.store(part + 3, amax.to(tl.float64))
    tl.store(part + 4, aidx.to(tl.float64))
    tl.store(part + 5, first.to(tl.float64))
    if c == 0:  # clear the histograms the later kernels accumulate into
        z = tl.arange(0, 4096)
        tl.store(work_i64 + wb + 128 + z, tl.zeros([4096], tl.int64), mask=z < 3584)


@triton.jit
def sample_probs(logits_ptr, params_f32, params_u64, params_i32, mask_ptr, work_f64, work_i64, probs_ptr,
                 tokens_ptr, logprobs_ptr, R, V, CHUNK: tl.constexpr, HB: tl.constexpr):
    pdl_begin()
    r = tl.program_id(0)
    c = tl.program_id(1)
    wb, nc = _work(r, V, CHUNK)
    temperature = tl.load(params_f32 + 8 * r)
    top_p = tl.load(params_f32 + 8 * r + 1)
    use_mask = tl.load(params_i32 + 8 * r + 6)
    part = work_f64 + wb + 3712
    # Row results from the chunks' partial results (the same fixed order in every program).
    NEG = float("-inf")
    mx = tl.full([], NEG, tl.float64)
    amx = tl.full([], NEG, tl.float64)
    first = tl.full([], BIG, tl.float64)
    for c0 in tl.range(0, nc, 128):
        i = c0 + tl.arange(0, 128)
        im = i < nc
        mx = tl.maximum(mx, tl.max(tl.load(part + i * 8, mask=im, other=NEG), axis=0))
        amx = tl.maximum(amx, tl.max(tl.load(part + i * 8 + 3, mask=im, other=NEG), axis=0))
        first = tl.minimum(first, tl.min(tl.load(part + i * 8 + 5, mask=im, other=BIG), axis=0))
    arg = tl.full([], BIG, tl.float64)
    aarg = tl.full([], BIG, tl.float64)
    s = tl.zeros([], tl.float64)
    for c0 in tl.range(0, nc, 128):
        i = c0 + tl.arange(0, 128)
        im = i < nc
        cm = tl.load(part + i * 8, mask=im, other=NEG)
        arg = tl.minimum(arg, tl.min(tl.where(im & (cm == mx), tl.load(part + i * 8 + 1, mask=im, other=BIG), BIG),
                                     axis=0))
        am = tl.load(part + i * 8 + 3, mask=im, other=NEG)
        aarg = tl.minimum(aarg, tl.min(tl.where(im & (am == amx), tl.load(part + i * 8 + 4, mask=im, other=BIG),
                                                BIG), axis=0))
        cs = tl.load(part + i * 8 + 2, mask=im, other=0.0)
        s += tl.sum(tl.where(im & (cs > 0.0), cs * tl.exp(cm - mx), 0.0), axis=0)
    lse = mx + tl.log(s)
    if mx == NEG:
        arg = _f64(0.0)
        lse = _f64(float("nan"))
    if amx == NEG:
        aarg = first
    nothing_allowed = (use_mask != 0) & (first == BIG)
    finite = (amx > NEG) & (amx < float("inf"))
    greedy = (temperature == 0.0) | (~finite) | nothing_allowed
    tok = tl.where(nothing_allowed, arg, aarg)
    mode = tl.where(greedy, 0.0, tl.where(top_p >= 1.0, 1.0, 2.0)).to(tl.float64)
    if greedy:
        if c == 0:
            _emit(logits_ptr, tokens_ptr, logprobs_ptr, r, V, tok.to(tl.int32), lse)
    else:
        offs = c * CHUNK + tl.arange(0, CHUNK)
        inb = offs < V
        row = r.to(tl.int64) * V
        l = tl.load(logits_ptr + row + offs, mask=inb, other=float("nan"))
        ok = inb & (l == l)
        if use_mask != 0:
            ok = ok & (tl.load(mask_ptr + offs, mask=inb, other=0) != 0)
        inv_t = 1.0 / temperature.to(tl.float64)
        e = tl.exp((tl.where(ok, l, 0.0).to(tl.float64) - amx) * inv_t)
        p = tl.where(ok, e.to(tl.float32), 0.0)
        tl.store(probs_ptr + row + offs, p, mask=inb)
        tl.store(work_f64 + wb + 3712 + 8 * nc + c, tl.sum(p.to(tl.float64), axis=0))
        if top_p < 1.0:
            tl.debug_barrier()  # the chunk's probabilities, stored above, are read back by all threads
            _hist(probs_ptr + row, c, V, work_i64 + wb + 128, work_i64, 0, 23, 8, False, CHUNK, HB)
    if c == 0:
        st = work_f64 + wb
        tl.store(st + F_MODE, mode)
        tl.store(st + F_LSE, lse)
        tl.store(st + F_ARG, tok)


@triton.jit
def sample_step(logits_ptr, params_f32, params_u64, params_i32, mask_ptr, work_f64, work_i64, probs_ptr,
                tokens_ptr, logprobs_ptr, R, V, STEP: tl.constexpr, CHUNK: tl.constexpr, HB: tl.constexpr):
    pdl_begin()
    r = tl.program_id(0)
    c = tl.program_id(1)
    wb, nc = _work(r, V, CHUNK)
    st_in = work_f64 + wb + STEP * 16
    st_out = st_in + 16
    mode = tl.load(st_in + F_MODE)
    lse = tl.load(st_in + F_LSE)
    arg = tl.load(st_in + F_ARG)
    total = tl.load(st_in + F_TOTAL)
    bst = tl.load(st_in + F_BST)
    prefix = tl.load(st_in + F_PREFIX)
    cum = tl.load(st_in + F_CUM)
    x = tl.load(st_in + F_X)
    pb = tl.load(st_in + F_PB)
    jb = tl.load(st_in + F_JB)
    hist = work_i64 + wb + 128
    csums = work_f64 + wb + 3712 + 8 * nc
    ccnt = work_i64 + wb + 3712 + 9 * nc
    row = r.to(tl.int64) * V
    if STEP == 0:
        if mode != 0.0:
            # The sum of p: the chunk sums in one fixed order.
            total = tl.zeros([], tl.float64)
            for c0 in tl.range(0, nc, 128):
                i = c0 + tl.arange(0, 128)
                total += tl.sum(tl.load(csums + i, mask=i < nc, other=0.0), axis=0)
        if mode == 1.0:
            # top_p = 1: the first token (index order) at which the running mass exceeds u * total.
            target = _uniform(params_u64, r) * total
            acc = tl.zeros([], tl.float64)
            owner = tl.full([], -1, tl.int32)
            for c0 in tl.range(0, nc, 128):
                i = c0 + tl.arange(0, 128)
                cs = tl.load(csums + i, mask=i < nc, other=0.0)
                run = acc + tl.cumsum(cs, axis=0)
                hit = tl.min(tl.where((run > target) & (i < nc), i, BIG), axis=0)
                if owner < 0:
                    if hit < BIG:
                        owner = hit
                        acc = acc + tl.sum(tl.where(i < hit, cs, 0.0), axis=0)
                    else:
                        acc = acc + tl.sum(cs, axis=0)
            if owner < 0:
                if c == 0:  # rounding at the very end of the scan
                    _emit(logits_ptr, tokens_ptr, logprobs_ptr, r, V, arg.to(tl.int32), lse)
            elif c == owner:
                offs = c * CHUNK + tl.arange(0, CHUNK)
                p = tl.load(probs_ptr + row + offs, mask=offs < V, other=0.0)
                pos = p.to(tl.int32, bitcast=True) > 0
                run = acc + tl.cumsum(p.to(tl.float64), axis=0)
                tok = tl.min(tl.where((run > target) & pos, offs, BIG), axis=0)
                if tok == BIG:  # rounding inside the chunk: its last token with p > 0
                    tok = tl.max(tl.where(pos, offs, -1), axis=0)
                _emit(logits_ptr, tokens_ptr, logprobs_ptr, r, V, tok, lse)
            mode = _f64(0.0)
        elif mode == 2.0:
            top_p = tl.load(params_f32 + 8 * r + 1)
            x = top_p.to(tl.float64) * total
            found, d, before, count = _walk(hist, True, 0, 0.0, x, False)
            if found:
                bst = _f64(0.0)
                prefix = d.to(tl.float64)
                cum = before
                _hist(probs_ptr + row, c, V, hist + 512, ccnt, d, 15, 8, False, CHUNK, HB)
            else:
                bst = _f64(1.0)
    if STEP == 1 or STEP == 2:
        if mode == 2.0:
            if bst == 0.0:
                pre = prefix.to(tl.int32)
                found, d, before, count = _walk(hist + 512 * STEP, False, pre >> (8 * STEP - 8), cum, x, False)
                pre = (pre << 8) | d
                prefix = pre.to(tl.float64)
                cum = before
                if STEP == 1:
                    _hist(probs_ptr + row, c, V, hist + 1024, ccnt, pre, 7, 8, False, CHUNK, HB)
                else:
                    _hist(probs_ptr + row, c, V, hist + 1536, ccnt + c * 128, pre, 0, 7, True, CHUNK, HB)
    if STEP == 3:
        if mode == 2.0:
            mass = tl.zeros([], tl.float64)
            if bst == 0.0:
                pre = prefix.to(tl.int32)
                found, d, before, count = _walk(hist + 1536, False, pre >> 16, cum, x, False)
                pbits = (pre << 7) | d
                j, mass = _rank(pbits, count, before, x, False)
                pb = pbits.to(tl.float64)
                jb = j.to(tl.float64)
                bst = _f64(2.0)
            else:
                mass = _hist_total(hist)
            x = _uniform(params_u64, r) * mass
            found, d, before, count = _walk(hist, True, 0, 0.0, x, True)
            if found:
                prefix = d.to(tl.float64)
                cum = before
                _hist(probs_ptr + row, c, V, hist + 4 * 512, ccnt, d, 15, 8, False, CHUNK, HB)
            else:  # rounding: the first token of the nucleus
                if c == 0:
                    _emit(logits_ptr, tokens_ptr, logprobs_ptr, r, V, arg.to(tl.int32), lse)
                mode = _f64(0.0)
    if STEP == 4 or STEP == 5:
        if mode == 2.0:
            pre = prefix.to(tl.int32)
            found, d, before, count = _walk(hist + 512 * STEP, False, pre >> (8 * STEP - 32), cum, x, True)
            pre = (pre << 8) | d
            prefix = pre.to(tl.float64)
            cum = before
            if STEP == 4:
                _hist(probs_ptr + row, c, V, hist + 5 * 512, ccnt, pre, 7, 8, False, CHUNK, HB)
            else:
                _hist(probs_ptr + row, c, V, hist + 6 * 512, ccnt + 128 * nc + c * 128, pre, 0, 7, True, CHUNK,
                      HB)
    if STEP == 6:
        if mode == 2.0:
            pre = prefix.to(tl.int32)
            found, d, before, count = _walk(hist + 6 * 512, False, pre >> 16, cum, x, True)
            ps = (pre << 7) | d
            js, through = _rank(ps, count, before, x, True)
            counts = ccnt + 128 * nc
            if bst == 2.0:
                pbi = pb.to(tl.int32)
                jbi = jb.to(tl.int64)
                if (ps < pbi) | ((ps == pbi) & (js > jbi)):  # after the boundary (rounding): the boundary
                    ps = pbi
                    js = jbi
                    counts = ccnt
            # The js-th token (index order) with p bits == ps: per-chunk counts locate its chunk.
            dig = ps & 127
            acc = tl.zeros([], tl.int64)
            owner = tl.full([], -1, tl.int32)
            for c0 in tl.range(0, nc, 128):
                i = c0 + tl.arange(0, 128)
                n = tl.load(counts + i * 128 + dig, mask=i < nc, other=0)
                run = acc + tl.cumsum(n, axis=0)
                hit = tl.min(tl.where((run > js) & (i < nc), i, BIG), axis=0)
                if owner < 0:
                    if hit < BIG:
                        owner = hit
                        acc = acc + tl.sum(tl.where(i < hit, n, 0), axis=0)
                    else:
                        acc = acc + tl.sum(n, axis=0)
            if c == owner:
                offs = c * CHUNK + tl.arange(0, CHUNK)
                bits = tl.load(probs_ptr + row + offs, mask=offs < V, other=0.0).to(tl.int32, bitcast=True)
                eq = bits == ps
                rank = acc + tl.cumsum(eq.to(tl.int64), axis=0) - 1
                tok = tl.min(tl.where(eq & (rank == js), offs, BIG), axis=0)
                if tok == BIG:  # cannot happen (exact integer counts); never read out of bounds
                    tok = arg.to(tl.int32)
                _emit(logits_ptr, tokens_ptr, logprobs_ptr, r, V, tok, lse)
            elif owner < 0:  # cannot happen either; the row still gets a token
                if c == 0:
                    _emit(logits_ptr, tokens_ptr, logprobs_ptr, r, V, arg.to(tl.int32), lse)
            mode = _f64(0.0)
    if c == 0:
        tl.store(st_out + F_MODE, mode)
        tl.store(st_out + F_LSE, lse)
        tl.store(st_out + F_ARG, arg)
        tl.store(st_out + F_TOTAL, total)
        tl.store(st_out + F_BST, bst)
        tl.store(st_out + F_PREFIX, prefix)
        tl.store(st_out + F_CUM, cum)
        tl.store(st_out + F_X, x)
        tl.store(st_out + F_PB, pb)
        tl.store(st_out + F_JB, jb)


_SIG = {"logits_ptr": "*fp32", "params_f32": "*fp32", "params_u64": "*u64", "params_i32": "*i32", "mask_ptr": "*u8",
        "work_f64": "*fp64", "work_i64": "*i64", "probs_ptr": "*fp32", "tokens_ptr": "*i32", "logprobs_ptr": "*fp32",
        "R": "i32", "V": "i32"}

VARIANTS = [
    Variant(name="sample_reduce", kernel=sample_reduce, signature=_SIG,
            constexprs={"CHUNK": CHUNK, "HB": HIST_BLOCK}, num_warps=4, num_stages=1),
    Variant(name="sample_probs", kernel=sample_probs, signature=_SIG,
            constexprs={"CHUNK": CHUNK, "HB": HIST_BLOCK}, num_warps=4, num_stages=1),
] + [
    Variant(name=f"sample_step{s}", kernel=sample_step, signature=_SIG,
            constexprs={"STEP": s, "CHUNK": CHUNK, "HB": HIST_BLOCK}, num_warps=4, num_stages=1)
    for s in range(NUM_STEPS)
]
