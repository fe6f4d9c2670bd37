"""The sampling kernels (triton_kernels/sampling.py) under Triton's interpreter
on the CPU, against a numpy implementation of the rule written here from
cpp/src/core/sampler.hpp: argmax, temperature, the exact nucleus (found here
by sorting, the kernels use a radix descent), the allowed-token mask, NaN
logits, counter-based uniforms, logprob at temperature 1. Tokens must match
exactly on many random rows (mixed parameters in one batch), logprobs to 1e-5.

p_i is computed as the CPU backend computes it (exp in double, rounded to
float), so that ties and the order of nearly equal p are the same."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from triton_interp import kernels

M64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


def uniform_from(seed: int, counter: int) -> float:
    bits = splitmix64(splitmix64(seed) ^ ((counter * 0xD1B54A32D192ED03) & M64))
    return (bits >> 11) * 2.0 ** -53


def rule(l: np.ndarray, temperature: float, top_p: float, seed: int, counter: int, mask):
    """(token, logprob, p) for one row of float32 logits (mask: bool array or None);
    p: the float32 probabilities when the row samples, else None."""
    V = l.shape[0]
    l64 = l.astype(np.float64)
    ok_all = ~np.isnan(l)
    mx = l64[ok_all].max() if ok_all.any() else -np.inf
    argmax = int(np.flatnonzero(ok_all & (l64 == mx))[0]) if mx > -np.inf else 0
    with np.errstate(invalid="ignore", divide="ignore"):
        lse = mx + np.log(np.exp(l64[ok_all] - mx).sum()) if mx > -np.inf else np.nan

    p = None

    def result(tok):
        return tok, np.float32(l64[tok] - lse), p

    allowed = np.ones(V, bool) if mask is None else mask.copy()
    if not allowed.any():
        return result(argmax)
    ok = allowed & ok_all
    amx = l64[ok].max() if ok.any() else -np.inf
    aarg = int(np.flatnonzero(ok & (l64 == amx))[0]) if amx > -np.inf else int(np.flatnonzero(allowed)[0])
    if temperature == 0.0 or not np.isfinite(amx):
        return result(aarg)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        p = np.exp((np.where(ok, l64, 0.0) - amx) * (1.0 / np.float64(np.float32(temperature)))).astype(np.float32)
    p[~ok] = 0.0
    p64 = p.astype(np.float64)
    total = p64.sum()
    u = uniform_from(seed, counter)
    if top_p >= 1.0:
        run = np.cumsum(p64)
        hit = np.flatnonzero((run > u * total) & (p > 0))
        return result(int(hit[0]) if hit.size else aarg)
    # Nucleus order: decreasing p, ties by lower index.
    idx = np.flatnonzero(p > 0)
    order = idx[np.lexsort((idx, -p[idx]))]
    cum = np.cumsum(p64[order])
    need = np.float64(np.float32(top_p)) * total
    reach = np.flatnonzero(cum >= need)
    boundary = int(reach[0]) if reach.size else -1
    mass = cum[boundary] if boundary >= 0 else cum[-1]
    cross = np.flatnonzero(cum > u * mass)
    if not cross.size:
        return result(aarg)
    s = int(cross[0])
    if boundary >= 0 and s > boundary:
        s = boundary
    return result(int(order[s]))


def histogram0(p: np.ndarray):
    """Level 0 of the kernels' descent, exactly: per exponent, the integer sum of the
    mantissas (implicit bit included) and the count of the tokens with p > 0."""
    bits = p.view(np.uint32).astype(np.int64)
    pos = bits > 0
    e = bits[pos] >> 23
    mant = (bits[pos] & 0x7FFFFF) | np.where(e > 0, 0x800000, 0)
    mass = np.zeros(256, np.int64)
    count = np.zeros(256, np.int64)
    np.add.at(mass, e, mant)
    np.add.at(count, e, 1)
    return mass, count


def make_params(rows):
    """SampleParams [R] (32 bytes each) and its three views."""
    raw = np.zeros(len(rows) * 32, np.uint8)
    f32, u64, i32 = raw.view(np.float32), raw.view(np.uint64), raw.view(np.int32)
    for r, (t, tp, seed, counter, use_mask) in enumerate(rows):
        f32[8 * r], f32[8 * r + 1] = t, tp
        u64[4 * r + 1], u64[4 * r + 2] = seed, counter
        i32[8 * r + 6] = use_mask
    return (torch.from_numpy(f32), torch.from_numpy(u64.view(np.int64)), torch.from_numpy(i32))


def run_sampler(logits: np.ndarray, rows, mask: np.ndarray, chunk: int, hb: int, steps: int = 7):
    k = kernels().sampling
    R, V = logits.shape
    nc = (V + chunk - 1) // chunk
    pf32, pu64, pi32 = make_params(rows)
    # Scratch starts as garbage (NaN), outputs as NaN / -1: everything must be written.
    work = torch.full((R * k.work_words(V, chunk),), float("nan"), dtype=torch.float64)
    probs = torch.full((R, V), float("nan"))
    tokens = torch.full((R,), -1, dtype=torch.int32)
    logprobs = torch.full((R,), float("nan"))
    args = (torch.from_numpy(logits), pf32, pu64, pi32, torch.from_numpy(mask.astype(np.uint8)), work,
            work.view(torch.int64), probs, tokens, logprobs, R, V)
    k.sample_reduce[(R, nc)](*args, CHUNK=chunk, HB=hb)
    k.sample_probs[(R, nc)](*args, CHUNK=chunk, HB=hb)
    for s in range(steps):
        k.sample_step[(R, nc)](*args, STEP=s, CHUNK=chunk, HB=hb)
    return tokens.numpy(), logprobs.numpy(), probs.numpy(), work.view(torch.int64).numpy().reshape(R, -1)


def random_logits(rng, R, V):
    """Rows of several kinds: spread normal logits, flat ones (huge nuclei), exact ties
    (few distinct values), some NaN and -inf entries."""
    out = np.empty((R, V), np.float32)
    for r in range(R):
        kind = rng.integers(0, 4)
        if kind == 0:
            row = rng.standard_normal(V) * rng.choice([1.0, 3.0, 8.0])
        elif kind == 1:
            row = rng.standard_normal(V) * 0.05
        elif kind == 2:
            row = rng.integers(-6, 6, size=V) * 0.75 + 0.125
        else:
            row = rng.gumbel(size=V) * 4.0
        out[r] = row
        if rng.random() < 0.3:
            out[r, rng.integers(0, V, size=max(1, V // 50))] = np.nan
        if rng.random() < 0.3:
            out[r, rng.integers(0, V, size=max(1, V // 50))] = -np.inf
    return out


def random_rows(rng, R, temperatures, top_ps):
    rows = []
    for _ in range(R):
        rows.append((float(rng.choice(temperatures)), float(rng.choice(top_ps)), int(rng.integers(0, 2**63)) * 2 + 1,
                     int(rng.integers(0, 2**40)), int(rng.random() < 0.3)))
    return rows


def check(logits, rows, mask, chunk, hb):
    tokens, logprobs, probs, work = run_sampler(logits, rows, mask, chunk, hb)
    for r, (t, tp, seed, counter, use_mask) in enumerate(rows):
        tok, lp, p = rule(logits[r], t, tp, seed, counter, mask.astype(bool) if use_mask else None)
        if p is not None:  # the probabilities and the exact level-0 mass histogram
            np.testing.assert_array_equal(probs[r], p)
            if tp < 1.0:
                mass, count = histogram0(p)
                np.testing.assert_array_equal(work[r, 128:384], mass)
                np.testing.assert_array_equal(work[r, 384:640], count)
        assert tokens[r] == tok, (r, rows[r], tokens[r], tok)
        if np.isnan(lp):
            assert np.isnan(logprobs[r])
        else:
            np.testing.assert_allclose(logprobs[r], lp, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("V,chunk,hb", [(1000, 256, 256), (5003, 512, 256), (777, 2048, 2048)])
@pytest.mark.parametrize("temperatures,top_ps", [
    ([0.0], [1.0]),                           # greedy (the benchmark path)
    ([0.3, 1.0, 1.7], [1.0]),                 # sampling over every token
    ([0.3, 1.0, 1.7], [0.9, 0.5, 0.05]),      # exact nucleus
    ([0.0, 0.05, 1.0, 4.0], [1.0, 0.999999, 0.7, 1e-9]),  # mixed rows in one batch
])
def test_sample_rows(rng, V, chunk, hb, temperatures, top_ps):
    R = 16
    logits = random_logits(rng, R, V)
    mask = (rng.random(V) < 0.6).astype(np.uint8)
    rows = random_rows(rng, R, temperatures, top_ps)
    check(logits, rows, mask, chunk, hb)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy under the interpreter: NaN - NaN, log(0)
def test_sample_edge_rows(rng):
    """Masks excluding everything, NaN at the first allowed token, all-NaN and all -inf rows,
    a single allowed token, ties at the nucleus boundary across chunks."""
    V, chunk, hb = 900, 256, 128
    logits = random_logits(rng, 10, V)
    mask = np.zeros(V, np.uint8)
    rows = []
    # 0: nothing allowed -> the unrestricted argmax
    rows.append((1.0, 0.9, 11, 1, 1))
    logits[1, :] = np.nan                          # 1: all NaN -> token 0, logprob NaN
    rows.append((1.0, 1.0, 12, 2, 0))
    logits[2, :] = -np.inf                         # 2: all -inf
    rows.append((0.7, 0.5, 13, 3, 0))
    logits[3, :] = np.float32(2.5)                 # 3: all equal: ties everywhere, every chunk
    rows.append((1.0, 0.6180339, 14, 4, 0))
    logits[4, :] = np.float32(2.5)
    rows.append((1.0, 1.0, 15, 5, 0))
    logits[5, rng.integers(0, V, size=40)] = 30.0   # 5: 40 tokens far above the rest, tied
    rows.append((1.0, 0.5, 16, 6, 0))
    for r in range(6, 10):
        rows.append((float(rng.choice([0.0, 1.0])), float(rng.choice([1.0, 0.8])), 17 + r, r, 1))
    check(logits, rows, mask, chunk, hb)  # rows 0, 6..9 see an empty mask
    mask[:] = 0
    allowed = rng.choice(V, size=5, replace=False)
    mask[allowed] = 1
    first = allowed.min()
    logits[6, first] = np.nan                    # the first allowed token is NaN: never chosen
    logits[7, :] = np.nan
    logits[7, allowed.max()] = -np.inf            # one allowed -inf, the others NaN
    rows[6] = (1.0, 0.9, 99, 7, 1)
    rows[7] = (1.0, 1.0, 98, 8, 1)
    rows[8] = (0.0, 1.0, 97, 9, 1)
    check(logits, rows, mask, chunk, hb)


def test_sample_full_vocabulary(rng):
    """V = 201088 with the compiled chunk size (one histogram block per chunk, to keep the
    interpreter quick): a greedy row, a top_p = 1 row and a nucleus of about 90k tokens,
    all with the mask."""
    V = 201088
    k = kernels().sampling
    logits = (rng.standard_normal((3, V)) * 3.0).astype(np.float32)
    logits[2] = (rng.standard_normal(V) * 0.02).astype(np.float32)  # flat
    mask = (rng.random(V) < 0.5).astype(np.uint8)
    seeds = rng.integers(0, 2**62, size=3)
    rows = [(0.0, 1.0, int(seeds[0]), 1, 1), (1.0, 1.0, int(seeds[1]), 2, 1), (1.0, 0.9, int(seeds[2]), 3, 1)]
    check(logits, rows, mask, k.CHUNK, k.CHUNK)


def unsplitmix64(y: int) -> int:
    def unxorshift(v, k):
        x = v
        for _ in range(64 // k + 1):
            x = v ^ (x >> k)
        return x

    # splitmix64: + C1, xorshift 30, * C2, xorshift 27, * C3, xorshift 31; undone in reverse
    x = unxorshift(y, 31)
    x = (x * pow(0x94D049BB133111EB, -1, 1 << 64)) & M64
    x = unxorshift(x, 27)
    x = (x * pow(0xBF58476D1CE4E5B9, -1, 1 << 64)) & M64
    x = unxorshift(x, 30)
    return (x - 0x9E3779B97F4A7C15) & M64


def seed_for(bits: int) -> int:
    """A seed whose uniform at counter 0 has these 64 random bits."""
    return unsplitmix64(unsplitmix64(bits))


def test_sample_extreme_uniforms(rng):
    """u = 0 (exact: the first token of index or nucleus order) and u = 1 - 2^-53 (the end of
    the candidates, where rounding may decide: the token must be a candidate; with top_p < 1
    within the nucleus)."""
    V, chunk, hb = 3000, 512, 512
    lo, hi = seed_for(0), seed_for(M64)
    assert uniform_from(lo, 0) == 0.0 and uniform_from(hi, 0) == 1.0 - 2.0 ** -53
    base = random_logits(rng, 6, V)
    logits = np.concatenate([base, base])
    mask = (rng.random(V) < 0.7).astype(np.uint8)
    top_ps = [1.0, 0.9, 0.3, 1.0, 0.999, 0.6]
    rows = [(1.0, top_ps[i % 6], lo if i < 6 else hi, 0, int(i % 3 == 0)) for i in range(12)]
    tokens, logprobs, _, _ = run_sampler(logits, rows, mask, chunk, hb)
    for r, (t, tp, seed, counter, use_mask) in enumerate(rows):
        m = mask.astype(bool) if use_mask else None
        tok, lp, p = rule(logits[r], t, tp, seed, counter, m)
        if r < 6:
            assert tokens[r] == tok, (r, tokens[r], tok)
            continue
        got = tokens[r]
        assert p is not None and p[got] > 0, (r, got)
        if tp < 1.0:
            idx = np.flatnonzero(p > 0)
            order = idx[np.lexsort((idx, -p[idx]))]
            cum = np.cumsum(p[order].astype(np.float64))
            reach = np.flatnonzero(cum >= np.float64(np.float32(tp)) * p.astype(np.float64).sum())
            nucleus = order[:reach[0] + 1] if reach.size else order
            assert got in set(nucleus.tolist()), (r, got)


def test_uniform_from():
    # splitmix64 constants as in cpp/src/core/sampler.cpp; the kernels' copy is checked through the rows above.
    assert uniform_from(0, 0) == (splitmix64(splitmix64(0)) >> 11) * 2.0 ** -53
    assert 0.0 <= uniform_from(2**64 - 1, 2**64 - 1) < 1.0
