"""The Python surface: token containers, zero-copy logits, memory arenas,
sampling, sharing a model between contexts and threads."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pytest
import torch

import gpt_oss_native as gon


def _logits_all(model, tokens, batch=8):
    ctx = gon.Context(model, context_length=128, max_batch_tokens=batch, logits_capacity=len(tokens))
    ctx.append(tokens)
    ctx.process(logits="all")
    return ctx.logits.copy()


def test_append_accepts_every_integer_container(small_model, rng):
    tokens = rng.integers(0, small_model.vocab_size, size=12)
    expected = _logits_all(small_model, tokens)[-1]
    variants = [
        tokens.tolist(),
        tuple(int(t) for t in tokens),
        tokens.astype(np.int32),
        tokens.astype(np.int64),
        tokens.astype(np.uint16),
        np.ascontiguousarray(np.stack([tokens, tokens])[:, ::1][0]),
        np.repeat(tokens, 2)[::2],  # non-contiguous view
        torch.from_numpy(tokens.astype(np.int64)),
        torch.from_numpy(tokens.astype(np.int32)),
        torch.from_numpy(np.repeat(tokens, 2))[::2],
    ]
    for v in variants:
        ctx = gon.Context(small_model, context_length=32)
        ctx.append(v)
        assert ctx.num_tokens == 12 and np.array_equal(ctx.tokens, tokens), type(v)
        ctx.process()
        assert np.array_equal(ctx.logits[0], expected), type(v)
    ctx = gon.Context(small_model, context_length=32)
    for t in tokens:
        ctx.append(int(t))
    ctx.append([])
    ctx.append(np.zeros(0, dtype=np.int32))
    assert np.array_equal(ctx.tokens, tokens)


@pytest.mark.parametrize(
    "bad",
    [np.array([1.0, 2.0]), np.array([[1, 2]]), [1, 2.5], [True], True, b"hello", None, {1: 2}, torch.tensor([1.0])],
)
def test_append_rejects_non_integer_tokens(small_model, bad):
    ctx = gon.Context(small_model, context_length=32)
    with pytest.raises(gon.InvalidArgumentError):
        ctx.append(bad)
    assert ctx.num_tokens == 0


def test_append_text_needs_a_tokenizer(small_model):
    ctx = gon.Context(small_model, context_length=32)
    with pytest.raises(gon.CheckpointNotFoundError, match="tokenizer.json"):
        ctx.append("hello")
    assert ctx.num_tokens == 0


def test_logits_are_a_view_of_the_runtime_buffer(small_model, rng):
    ctx = gon.Context(small_model, context_length=64, max_batch_tokens=8, logits_capacity=8)
    ctx.append(rng.integers(0, small_model.vocab_size, size=5))
    ctx.process(logits="all")
    a = ctx.logits
    b = ctx.logits
    assert a.dtype == np.float32 and a.shape == (5, small_model.vocab_size)
    assert not a.flags.owndata
    assert a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
    t = torch.from_dlpack(a)
    assert t.data_ptr() == a.__array_interface__["data"][0]
    assert t.dtype == torch.float32 and tuple(t.shape) == a.shape
    before = a[4].copy()
    ctx.append(int(rng.integers(0, small_model.vocab_size)))
    ctx.process(logits="last")
    # The same memory now holds the new token's logits.
    assert not np.array_equal(a[0], before) or not np.array_equal(ctx.logits[0], before)
    assert np.array_equal(a[0], ctx.logits[0])
    assert np.array_equal(t[0].numpy(), ctx.logits[0])


def test_logits_view_keeps_the_context_alive(small_model, rng):
    ctx = gon.Context(small_model, context_length=32)
    ctx.append(rng.integers(0, small_model.vocab_size, size=4))
    ctx.process()
    view = ctx.logits
    expected = view.copy()
    del ctx
    gc.collect()
    for _ in range(3):  # churn the allocator
        c = gon.Context(small_model, context_length=32)
        c.append([1, 2, 3])
        c.process()
    assert np.array_equal(view, expected)


def test_memory_is_allocated_once(small_model, rng):
    ctx = gon.Context(small_model, context_length=256, max_batch_tokens=16)
    stats = ctx.memory_stats()
    # One arena of backend memory on the CPU (plus a host arena where backend memory is not host memory).
    assert stats["arena_allocations"] == (1 if small_model.device == "cpu" else 2)
    assert stats["late_allocations"] == 0
    ctx.append(rng.integers(0, small_model.vocab_size, size=40))
    ctx.process()
    for _ in range(20):
        ctx.sample(temperature=0.7, top_p=0.9, seed=3)
    ctx.rewind(10)
    ctx.process(logits="all")
    after = ctx.memory_stats()
    assert after == stats
    # Full-attention layers keep the whole context; sliding layers a ring.
    cfg = small_model.config
    per_pos = 2 * 4 * cfg["num_kv_heads"] * cfg["head_dim"]
    full_layers = cfg["layer_is_sliding"].count(False)
    sliding_layers = cfg["layer_is_sliding"].count(True)
    ring = min(256, cfg["sliding_window"] + ctx.rewind_window)
    assert stats["kv_cache_bytes"] == per_pos * (full_layers * 256 + sliding_layers * ring)


def test_sampling(small_model, rng):
    prompt = rng.integers(0, small_model.vocab_size, size=6)

    def run(**kw):
        ctx = gon.Context(small_model, context_length=64)
        ctx.append(prompt)
        return [ctx.sample(**kw) for _ in range(10)]

    greedy = run(temperature=0.0)
    assert [t for t, _ in greedy] == [t for t, _ in run(temperature=0.0, seed=5)]
    assert run(temperature=1.0, seed=11) == run(temperature=1.0, seed=11)
    assert run(temperature=0.8, top_p=0.5, seed=11) == run(temperature=0.8, top_p=0.5, seed=11)
    hot = [run(temperature=50.0, seed=s) for s in range(4)]
    assert len({tuple(t for t, _ in h) for h in hot}) > 1
    # A tiny nucleus is the argmax.
    assert [t for t, _ in run(temperature=1.0, top_p=1e-6, seed=1)] == [t for t, _ in greedy]
    # Greedy = argmax of the logits; logprob = log-softmax (float64 reference).
    ctx = gon.Context(small_model, context_length=64)
    ctx.append(prompt)
    ctx.process()
    row = ctx.logits[0].astype(np.float64)
    token, logprob = ctx.sample(temperature=0.0)
    assert token == int(np.argmax(row))
    lse = row.max() + np.log(np.exp(row - row.max()).sum())
    assert abs(logprob - (row[token] - lse)) < 1e-5
    assert ctx.num_tokens == 7 and ctx.num_processed == 6 and ctx.tokens[-1] == token


def test_sampling_distribution_matches_softmax(small_model):
    """Draws at temperature T follow softmax(logits / T): a chi-square test on the top tokens."""
    ctx = gon.Context(small_model, context_length=8)
    ctx.append([5, 6])
    ctx.process()
    logits = ctx.logits[0].astype(np.float64)
    T = 0.05  # concentrates the mass on a handful of tokens
    p = np.exp((logits - logits.max()) / T)
    p /= p.sum()
    top = np.argsort(-p)[:4]
    n = 3000
    counts = {}
    for seed in range(n):
        ctx.rewind(2)
        t, _ = ctx.sample(temperature=T, seed=seed)
        counts[t] = counts.get(t, 0) + 1
    observed = np.array([counts.get(int(t), 0) for t in top] + [n - sum(counts.get(int(t), 0) for t in top)])
    expected = np.array([p[t] * n for t in top] + [n * (1 - p[top].sum())])
    mask = expected > 5
    chi2 = (((observed - expected) ** 2)[mask] / expected[mask]).sum()
    assert chi2 < 25, (observed, expected)  # df <= 4: p < 1e-4 for a correct sampler


def test_contexts_share_a_model(small_model, rng):
    a_tokens = rng.integers(0, small_model.vocab_size, size=20)
    b_tokens = rng.integers(0, small_model.vocab_size, size=20)
    ref_a = _logits_all(small_model, a_tokens)[-1]
    ref_b = _logits_all(small_model, b_tokens)[-1]
    a = gon.Context(small_model, context_length=64, max_batch_tokens=3)
    b = gon.Context(small_model, context_length=64, max_batch_tokens=5)
    for i in range(20):  # interleaved
        a.append(int(a_tokens[i]))
        b.append(int(b_tokens[i]))
        a.process()
        b.process()
    assert np.array_equal(a.logits[0], ref_a) and np.array_equal(b.logits[0], ref_b)

    results = {}

    def worker(name, toks):
        ctx = gon.Context(small_model, context_length=64, max_batch_tokens=4)
        for _ in range(5):
            ctx.reset()
            ctx.append(toks)
            ctx.process()
        results[name] = ctx.logits[0].copy()

    threads = [threading.Thread(target=worker, args=(n, t)) for n, t in (("a", a_tokens), ("b", b_tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert np.array_equal(results["a"], ref_a) and np.array_equal(results["b"], ref_b)


def test_thread_count_does_not_change_results(small_model_path, rng):
    tokens = rng.integers(0, 1000, size=30)
    one = gon.Model(small_model_path, threads=1)
    three = gon.Model(small_model_path, threads=3)
    assert one.threads == 1 and three.threads == 3
    assert np.array_equal(_logits_all(one, tokens), _logits_all(three, tokens))


def test_process_modes_and_counters(small_model, rng):
    tokens = rng.integers(0, small_model.vocab_size, size=10)
    ref = _logits_all(small_model, tokens)
    ctx = gon.Context(small_model, context_length=32, max_batch_tokens=4)
    ctx.append(tokens[:6])
    ctx.process(logits="none")
    assert ctx.num_processed == 6 and ctx.logits.shape[0] == 0
    ctx.process(logits="last")  # nothing pending: recomputes the last token's logits
    assert np.array_equal(ctx.logits[0], ref[5])
    ctx.process(logits="all")  # nothing pending: no rows
    assert ctx.logits.shape[0] == 0
    ctx.append(tokens[6:])
    ctx.process(logits="all")
    assert np.array_equal(ctx.logits, ref[6:])
    ctx.reset()
    assert ctx.num_tokens == 0 and ctx.num_processed == 0
    assert "Context(" in repr(ctx) and "Model(" in repr(small_model)
    assert len(ctx) == 0


def test_model_properties(small_model, small_model_path):
    cfg = small_model.config
    assert cfg["num_layers"] == 2 and cfg["hidden_size"] == 64 and cfg["intermediate_size"] == 96
    assert cfg["layer_is_sliding"] == [True, False]
    assert small_model.device == "cpu" and small_model.threads >= 1
    assert small_model.checkpoint_format == "hf"
    assert small_model.weight_bytes > 0
    H, I, E, k, V = 64, 96, 4, 2, 1000
    q, kv = 4 * 16, 2 * 16
    layer = ((q + 2 * kv) * (H + 1) + H * (q + 1) + 4 + 2 * H + E * (H + 1)) * 2
    layer += k * (2 * I * (H // 32 * 17) + 2 * I * 2) + k * (H * (I // 32 * 17) + H * 2)
    assert small_model.decode_bytes_per_token == 2 * layer + V * H * 2 + 2 * H * 2
    for variant in (small_model_path / "config.json", small_model_path / "model.safetensors.index.json"):
        assert gon.Model(variant, progress=False).path == str(small_model_path)
    assert gon.Model(small_model_path / "original" / "model.safetensors").checkpoint_format == "original"
    seen = []
    gon.Model(small_model_path, prefetch="always", progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] == small_model.weight_bytes


def test_cancel_before_and_during_process(small_model, rng):
    import threading
    import time

    tokens = rng.integers(0, small_model.vocab_size, size=600)
    # A cancel with nothing running stops the next call before any forward pass.
    ctx = gon.Context(small_model, context_length=1024, max_batch_tokens=1)
    ctx.append(tokens)
    ctx.cancel()
    with pytest.raises(gon.CancelledError):
        ctx.process()
    assert ctx.num_processed == 0
    # From another thread, during a prefill of one token per chunk.
    errors = []

    def run():
        try:
            ctx.process()
        except gon.CancelledError as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    while ctx.num_processed < 5:
        time.sleep(0.001)
    ctx.cancel()
    t.join()
    assert len(errors) == 1 and 0 < ctx.num_processed < tokens.size
    # The context goes on from where it stopped and ends where a fresh one does.
    ctx.process()
    ref = gon.Context(small_model, context_length=1024, max_batch_tokens=64)
    ref.append(tokens)
    ref.process()
    np.testing.assert_array_equal(ctx.logits, ref.logits)
