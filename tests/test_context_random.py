"""A Context under rewinds, reassignments and sampling, against a fresh context.

Whatever a context went through (appends, prefills in chunks, rewinds inside
and beyond its rewind window, assign() keeping a common prefix, sampling one
or many tokens, resets), the logits it gives and the tokens it samples must be
bitwise those of a fresh context holding the same tokens. The sliding window of
the model here is short and so is the ring of its sliding layers, so rewinds
reach the ring's edge often.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpt_oss_native as gon

V = 1000
CONFIG = dict(preset="tiny", num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2, hidden_size=64,
              intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=5,
              vocab_size=V, eos_token_id=V - 1, pad_token_id=V - 2)


@pytest.fixture(scope="module")
def model(random_model):
    return random_model(CONFIG, "context_random")


def fresh_logits(model, tokens, kv_dtype, rows=1):
    """The last `rows` logits rows of `tokens` processed at once by a new context."""
    c = gon.Context(model, context_length=len(tokens) + 1, kv_dtype=kv_dtype)
    c.append(list(tokens))
    c.process(logits="all")
    return c.logits_host()[-rows:]


def fresh_samples(model, tokens, n, kv_dtype, **kw):
    c = gon.Context(model, context_length=len(tokens) + n + 1, kv_dtype=kv_dtype)
    c.append(list(tokens))
    return [c.sample(**kw) for _ in range(n)]


@pytest.mark.parametrize("kv_dtype", ["fp32", "bf16"])
def test_last_token_after_rewinds_at_the_edge_of_the_window(model, rng, kv_dtype):
    """A rewind by up to rewind_window tokens keeps the cache; process() with nothing pending then recomputes the
    last kept token, which reads the window before it. After a rewind by exactly rewind_window that window's oldest
    position is no longer in the ring, so the cache must be rebuilt (it once was recomputed from overwritten keys
    and gave wrong logits for every later token)."""
    ctx = gon.Context(model, context_length=48, max_batch_tokens=12, rewind_window=4, kv_dtype=kv_dtype)
    R = ctx.rewind_window
    assert R < 30  # the sliding layers keep a ring shorter than the context
    prompt = rng.integers(0, V - 2, size=36).tolist()
    more = rng.integers(0, V - 2, size=8).tolist()
    for back in (R - 1, R, R + 1):
        keep = len(prompt) - 1 - back  # back positions behind the furthest one processed
        ctx.reset()
        ctx.append(prompt)
        ctx.process(logits="none")
        ctx.rewind(keep)
        ctx.process()
        np.testing.assert_array_equal(ctx.logits_host(), fresh_logits(model, prompt[:keep], kv_dtype),
                                      err_msg=f"rewind by {back} (window {R})")
        ctx.append(more)
        ctx.process(logits="all")
        np.testing.assert_array_equal(ctx.logits_host(), fresh_logits(model, prompt[:keep] + more, kv_dtype, 8),
                                      err_msg=f"rewind by {back} (window {R}), then 8 more tokens")
        # The same through sample(), the other caller of the recomputation.
        ctx.reset()
        ctx.append(prompt)
        ctx.process(logits="none")
        ctx.rewind(keep)
        got = [ctx.sample(temperature=1.0, seed=5) for _ in range(4)]
        assert got == fresh_samples(model, prompt[:keep], 4, kv_dtype, temperature=1.0, seed=5), back


CONTEXTS = 2000  # ~45K operations; a fault that once hit 1 in ~20K random operations shows in most runs


def test_random_operations_equal_a_fresh_context(model, rng):
    ops_done, failures = {}, []
    for _ in range(CONTEXTS):
        L = int(rng.integers(4, 120))
        settings = dict(context_length=L, max_batch_tokens=int(rng.integers(1, 40)),
                        kv_dtype=str(rng.choice(["fp32", "bf16"])), rewind_window=[None, 0, 4, 32][int(rng.integers(0, 4))])
        ctx = gon.Context(model, logits_capacity=L, **settings)
        for _ in range(int(rng.integers(5, 40))):
            op = str(rng.choice(["append", "process", "process_all", "rewind", "assign", "sample", "sample_many",
                                 "reset"]))
            n, kv = ctx.num_tokens, settings["kv_dtype"]
            ops_done[op] = ops_done.get(op, 0) + 1
            where = f"{settings}, {op} at {n} tokens ({ctx.num_processed} processed)"
            if op == "append":
                toks = rng.integers(0, V - 2, size=int(rng.integers(0, 20))).tolist()
                if n + len(toks) <= L:
                    ctx.append(toks)
                else:
                    with pytest.raises(gon.ContextOverflowError):
                        ctx.append(toks)
                    assert ctx.num_tokens == n
            elif op in ("process", "process_all"):
                pending = n - ctx.num_processed
                ctx.process(logits="all" if op == "process_all" else "last")
                rows = pending if op == "process_all" else 1 if n else 0
                if rows and not np.array_equal(ctx.logits_host()[-rows:], fresh_logits(model, ctx.tokens, kv, rows)):
                    failures.append(where)
            elif op == "rewind":
                keep = int(rng.integers(0, n + 1))
                ctx.rewind(keep)
                assert ctx.num_tokens == keep
            elif op == "assign":
                cur = ctx.tokens.tolist()
                new = (cur[:int(rng.integers(0, n + 1))] + rng.integers(0, V - 2, size=int(rng.integers(0, 10))).tolist())[:L]
                kept = ctx.assign(new)
                assert ctx.tokens.tolist() == new and 0 <= kept <= len(new)
            elif op in ("sample", "sample_many") and 0 < n < L:
                k = 1 if op == "sample" else int(rng.integers(0, min(8, L - n) + 1))
                kw = dict(temperature=float(rng.choice([0.0, 0.6, 1.0])), top_p=float(rng.choice([1.0, 0.5])),
                          seed=int(rng.integers(0, 2**30)))
                expected = fresh_samples(model, ctx.tokens.tolist(), k, kv, **kw)
                if op == "sample":
                    got = [ctx.sample(**kw)]
                else:
                    toks, lps = ctx.sample_many(k, **kw)
                    got = [(int(t), float(lp)) for t, lp in zip(toks, lps)]
                    expected = [(t, float(np.float32(lp))) for t, lp in expected]
                if got != expected:
                    failures.append(where)
            elif op == "reset":
                ctx.reset()
                assert ctx.num_tokens == 0
        assert ctx.memory_stats()["late_allocations"] == 0
    assert not failures, f"{len(failures)} results differ from a fresh context:\n" + "\n".join(failures[:10])
    assert len(ops_done) == 8, ops_done
