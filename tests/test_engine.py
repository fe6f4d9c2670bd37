"""Batched decoding: the Engine against the same requests run alone in Contexts.

Requests with different prompt lengths and seeds share forward passes
(decode tokens and prefill chunks together, sliding-window rings wrapping over
hundreds of steps), join and leave mid-stream, are cancelled or overflow their
context; each must get bitwise the same tokens, logprobs and logits as it gets
alone (the CPU kernels' results do not depend on the batch: see
cpp/src/backend/cpu/matmul.hpp and attention.hpp).
"""

from __future__ import annotations

import numpy as np
import pytest

import gpt_oss_native as gon
from gpt_oss_native.checkpoint import write_checkpoint

# Window 4 with a ring far shorter than the generations below: rings wrap many times.
CONFIG = dict(preset="tiny", num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2, hidden_size=64,
              intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=4,
              vocab_size=1000, eos_token_id=999, pad_token_id=998)


@pytest.fixture(scope="module")
def model(random_model):
    return random_model(CONFIG, "engine")


def alone(model, prompt, n, temperature, top_p, seed, context_length, kv_dtype="auto", rewind=0):
    """Tokens, logprobs and the logits of every sampled position of `prompt` run alone."""
    ctx = gon.Context(model, context_length=context_length, rewind_window=rewind, kv_dtype=kv_dtype)
    ctx.append(prompt)
    tokens, logprobs, logits = [], [], []
    for _ in range(n):
        ctx.process()
        logits.append(ctx.logits[-1].copy())
        t, lp = ctx.sample(temperature=temperature, top_p=top_p, seed=seed)
        tokens.append(t)
        logprobs.append(lp)
    return tokens, logprobs, logits


def run_collecting_logits(engine, reqs):
    """Steps until done, keeping each request's logits row of every step it was sampled in."""
    logits = {r.id: [] for r in reqs}
    while engine.has_work:
        engine.step()
        for r in reqs:
            row = engine.last_logits(r)
            if row is not None:
                logits[r.id].append(row)
    return logits


@pytest.mark.parametrize("kv_dtype", ["fp32", "bf16"])
def test_batched_equals_alone(model, rng, kv_dtype):
    lengths = [1, 5, 17, 3, 40, 9, 26]
    prompts = [rng.integers(0, 998, size=n).tolist() for n in lengths]
    settings = [(0.0, 1.0), (0.8, 1.0), (1.3, 0.9), (1.0, 0.5), (0.7, 1.0), (1.0, 1.0), (0.0, 1.0)]
    n = 150
    engine = gon.Engine(model, max_sequences=4, context_length=256, max_batch_tokens=9, text=False,
                        kv_dtype=kv_dtype)
    reqs = [engine.submit(p, max_tokens=n, temperature=t, top_p=tp, seed=100 + i, default_stop_tokens=False)
            for i, (p, (t, tp)) in enumerate(zip(prompts, settings))]
    logits = run_collecting_logits(engine, reqs)
    for i, (p, (t, tp), r) in enumerate(zip(prompts, settings, reqs)):
        tokens, logprobs, ref_logits = alone(model, p, n, t, tp, 100 + i, 256, kv_dtype)
        assert r.finish_reason == "length"
        assert r.tokens == tokens, f"request {i}"
        assert r.logprobs == logprobs, f"request {i}"
        assert len(logits[r.id]) == n
        for a, b in zip(logits[r.id], ref_logits):
            np.testing.assert_array_equal(a, b)
    st = engine.stats()
    assert st["running"] == 0 and st["waiting"] == 0 and st["tokens_generated"] == n * len(prompts)
    assert engine.memory_stats()["late_allocations"] == 0


def test_join_leave_cancel_overflow(model, rng):
    ctx_len = 64
    engine = gon.Engine(model, max_sequences=3, context_length=ctx_len, max_batch_tokens=16, text=False)
    p = [rng.integers(0, 998, size=n).tolist() for n in (7, 12, 50, 4, 9)]
    a = engine.submit(p[0], max_tokens=40, temperature=1.0, seed=1, default_stop_tokens=False)
    b = engine.submit(p[1], max_tokens=40, temperature=1.0, seed=2, default_stop_tokens=False)
    # c overflows: 50 prompt tokens + 40 wanted > 64 positions.
    c = engine.submit(p[2], max_tokens=40, temperature=1.0, seed=3, default_stop_tokens=False)
    for _ in range(5):
        engine.step()
    d = engine.submit(p[3], max_tokens=30, temperature=0.0, seed=4, default_stop_tokens=False)  # waits for a slot
    b.cancel()
    e = engine.submit(p[4], max_tokens=20, temperature=1.0, seed=5, default_stop_tokens=False)
    engine.run()
    for req, prompt, n, t, seed in ((a, p[0], 40, 1.0, 1), (d, p[3], 30, 0.0, 4), (e, p[4], 20, 1.0, 5)):
        tokens, logprobs, _ = alone(model, prompt, n, t, 1.0, seed, ctx_len)
        assert req.finish_reason == "length" and req.tokens == tokens and req.logprobs == logprobs
    assert b.finish_reason == "cancelled" and 0 < len(b.tokens) < 40
    with pytest.raises(gon.CancelledError):
        b.result()
    assert c.finish_reason == "context_full" and len(c.tokens) == ctx_len - 50
    tokens, logprobs, _ = alone(model, p[2], ctx_len - 50, 1.0, 1.0, 3, ctx_len)
    assert c.tokens == tokens
    with pytest.raises(gon.ContextOverflowError):
        list(c)


def test_prefix_reuse_between_requests(model, rng):
    engine = gon.Engine(model, max_sequences=2, context_length=200, max_batch_tokens=32, text=False,
                        rewind_window=64)
    turn1 = rng.integers(0, 998, size=30).tolist()
    first = engine.submit(turn1, max_tokens=10, temperature=0.0, default_stop_tokens=False)
    first.result()
    turn2 = turn1 + first.tokens + rng.integers(0, 998, size=12).tolist()
    second = engine.submit(turn2, max_tokens=10, temperature=0.0, default_stop_tokens=False)
    second.result()
    # Everything but the last sampled token of turn 1 (never processed) was cached.
    assert engine.stats()["prefix_tokens_reused"] == len(turn1) + len(first.tokens) - 1
    tokens, _, _ = alone(model, turn2, 10, 0.0, 1.0, 0, 200)
    assert second.tokens == tokens


def test_submit_errors(model):
    engine = gon.Engine(model, max_sequences=2, context_length=16, max_batch_tokens=8, text=False)
    with pytest.raises(gon.InvalidArgumentError):
        engine.submit([], max_tokens=4)
    with pytest.raises(gon.ContextOverflowError):
        engine.submit(list(range(16)), max_tokens=4)
    with pytest.raises(gon.TokenOutOfRangeError):
        engine.submit([1, 2, 1000], max_tokens=4)
    with pytest.raises(gon.InvalidArgumentError):
        engine.submit([1, 2], max_tokens=4, top_p=0.0)
    with pytest.raises(gon.InvalidArgumentError):
        engine.submit([1, 2], max_tokens=4, stop=["x"])  # no text mode
    with pytest.raises(gon.InvalidArgumentError):
        gon.Engine(model, max_sequences=0)
    zero = engine.submit([1, 2, 3], max_tokens=0)
    assert zero.result() == "" and zero.finish_reason == "length" and zero.tokens == []


def test_generate_batch_text(tmp_path, rng):
    path = write_checkpoint(tmp_path / "text", dict(preset="tiny", hidden_size=64, intermediate_size=32),
                            progress=False, tokenizer="real", seed=int(rng.integers(0, 2**31)))
    model = gon.Model(path)
    prompts = ["<|start|>user<|message|>Bonjour<|end|><|start|>assistant", "Hello, world", "1 2 3"]
    reqs = model.generate_batch(prompts, max_tokens=12, temperature=0.9, seed=7, stop=["\n\n"])
    for i, (prompt, r) in enumerate(zip(prompts, reqs)):
        expected = model.generate(prompt, max_tokens=12, temperature=0.9, seed=7 + i, stop=["\n\n"])
        text = "".join(expected)
        assert r.text == text and r.finish_reason == expected.finish_reason
    # Streaming through the handle gives the same pieces as Model.generate.
    engine = gon.Engine(model, max_sequences=2, context_length=64)
    h = engine.submit(prompts[0], max_tokens=12, temperature=0.9, seed=7, return_tokens=True)
    chunks = list(h)
    ref = list(model.generate(prompts[0], max_tokens=12, temperature=0.9, seed=7, return_tokens=True))
    assert [(c.text, c.token) for c in chunks] == [(c.text, c.token) for c in ref]


def test_stream_held_back_text_matches_generation(tmp_path, rng):
    """A request that reaches max_tokens in the middle of a UTF-8 sequence streams the
    token's own text and then the held-back bytes in a last piece without a token,
    exactly as Model.generate does (CI once met this ending by chance and differed)."""
    path = write_checkpoint(tmp_path / "text", dict(preset="tiny", hidden_size=64, intermediate_size=32),
                            progress=False, tokenizer="real", seed=int(rng.integers(0, 2**31)))
    model = gon.Model(path)
    prompt = "1 2 3"
    # About 1 in 100 draws ends on an incomplete sequence: search seeds with generate.
    start = int(rng.integers(0, 2**30))
    found = []
    for seed in range(start, start + 3000):
        ref = list(model.generate(prompt, max_tokens=2, temperature=1.0, seed=seed, return_tokens=True))
        if ref[-1].token == -1:
            found.append((seed, ref))
            if len(found) == 2:
                break
    assert found, "no seed ended on held-back text"
    engine = gon.Engine(model, max_sequences=2, context_length=32)
    handles = [(engine.submit(prompt, max_tokens=2, temperature=1.0, seed=seed, return_tokens=True), ref)
               for seed, ref in found]
    for h, ref in handles:
        got = [(c.text, c.token) for c in h]
        assert got == [(c.text, c.token) for c in ref]
        assert h.text == "".join(c.text for c in ref) and h.finish_reason == "length"
        assert h.tokens == [c.token for c in ref if c.token >= 0]


@pytest.mark.parametrize("loop_steps", [3, 16])
def test_decode_loops_give_the_tokens_of_single_steps(model, rng, loop_steps):
    """With decode_loop_steps, an Engine whose requests are all decoding runs several steps per step() (on a GPU
    one device loop; here the host's loop over the same steps). Requests still get their tokens alone: budgets,
    stop tokens and context ends met inside a loop, requests joining between loops, a cancel, and prefix reuse of
    a slot whose row went on decoding after its request ended (rewind_window=0: the sliding-window ring is as short
    as it can be, so cache writes past a request's end would show)."""
    ctx_len = 80
    engine = gon.Engine(model, max_sequences=3, context_length=ctx_len, max_batch_tokens=16, text=False,
                        rewind_window=0, decode_loop_steps=loop_steps)
    p = [rng.integers(0, 998, size=n).tolist() for n in (7, 12, 60, 4, 9, 5)]
    settings = [(1.0, 1.0), (0.8, 0.9), (1.0, 1.0), (0.0, 1.0), (1.2, 1.0), (1.0, 0.7)]
    ref = [alone(model, prompt, min(40, ctx_len - len(prompt)), t, tp, 10 + i, ctx_len, rewind=0)[:2]
           for i, (prompt, (t, tp)) in enumerate(zip(p, settings))]
    stop = ref[1][0][13]  # request 1 stops at its 14th token (or earlier, where that id came before)
    budgets = [40, 40, 40, 5, 40, 23]
    reqs = [engine.submit(p[i], max_tokens=budgets[i], temperature=settings[i][0], top_p=settings[i][1],
                          seed=10 + i, stop_tokens=[stop] if i == 1 else None, default_stop_tokens=False)
            for i in range(3)]
    while min(len(r.tokens) for r in reqs) < 1:
        engine.step()
    steps, room = engine.stats()["steps"], ctx_len - len(p[2]) - len(reqs[2].tokens)
    engine.step()
    assert engine.stats()["steps"] - steps == min(loop_steps, room)  # one step() ran a loop (as far as room allows)
    reqs += [engine.submit(p[i], max_tokens=budgets[i], temperature=settings[i][0], top_p=settings[i][1],
                           seed=10 + i, default_stop_tokens=False) for i in range(3, 6)]
    engine.run()
    for i, r in enumerate(reqs):
        tokens, logprobs = ref[i]
        if i == 1:
            n = tokens.index(stop) + 1
            assert r.finish_reason == "stop_token" and r.tokens == tokens[:n] and r.logprobs == logprobs[:n]
        elif i == 2:  # 60 prompt tokens + 40 wanted > 80 positions
            assert r.finish_reason == "context_full" and r.tokens == tokens[: ctx_len - 60]
        else:
            assert r.finish_reason == "length", i
            assert r.tokens == tokens[: budgets[i]] and r.logprobs == logprobs[: budgets[i]], i
    # A request that ends early in a loop while another goes on: its row keeps decoding to the loop's end,
    # writing the cache past the request's last token. With the shortest ring (rewind_window 0, steps of 4
    # tokens: 16 positions for a window of 4) those writes wrap over the window of the kept tokens, so a prompt
    # that continues the request must not reuse that cache (Sequence::wrote and rewind's high-water check); it
    # gets the tokens it gets alone.
    engine1 = gon.Engine(model, max_sequences=2, context_length=ctx_len, max_batch_tokens=4, text=False,
                         rewind_window=0, decode_loop_steps=16)
    toks = ref[0][0]
    at = next(i for i in range(1, len(toks)) if toks[i] not in toks[:i])  # a token first sampled in the loop
    other = engine1.submit(p[4], max_tokens=40, temperature=1.2, seed=14, default_stop_tokens=False)
    while not other.tokens:
        engine1.step()
    # Its prompt done, `first` samples its first token with a plain step and the rest in loops.
    first = engine1.submit(p[0], max_tokens=40, temperature=1.0, seed=10, stop_tokens=[toks[at]],
                           default_stop_tokens=False)
    loop = 0  # steps of the loop `first` ended in
    while engine1.has_work:
        steps, done = engine1.stats()["steps"], first.done
        engine1.step()
        if first.done and not done:
            loop = engine1.stats()["steps"] - steps
    assert first.tokens == toks[: at + 1] and first.finish_reason == "stop_token"
    assert other.tokens == ref[4][0][:40]
    turn = p[0] + first.tokens + rng.integers(0, 998, size=5).tolist()
    reused = engine1.stats()["prefix_tokens_reused"]
    again = engine1.submit(turn, max_tokens=12, temperature=0.0, default_stop_tokens=False)
    engine1.run()
    assert again.tokens == alone(model, turn, 12, 0.0, 1.0, 0, ctx_len, rewind=0)[0]
    # The loop wrote positions 7 .. 6 + loop (it can end before 16 steps: `other` drawing the stop id too ends
    # it); the kept prefix is processed up to position 6 + at and the next token reads from 4 positions back.
    # The ring of 16 wrapped over those when (6 + loop) - (7 + at) > 16 - 4: nothing is reused then, else all
    # 7 + at processed tokens are.
    assert loop > at
    wrapped = (6 + loop) - (7 + at) > 12
    assert engine1.stats()["prefix_tokens_reused"] - reused == (0 if wrapped else 7 + at), (loop, at)

    # A cancel between loops ends the request there; the others go on.
    engine = gon.Engine(model, max_sequences=2, context_length=ctx_len, max_batch_tokens=16, text=False,
                        decode_loop_steps=loop_steps)
    a = engine.submit(p[0], max_tokens=40, temperature=1.0, seed=10, default_stop_tokens=False)
    b = engine.submit(p[4], max_tokens=40, temperature=1.2, seed=14, default_stop_tokens=False)
    for _ in range(3):
        engine.step()
    b.cancel()
    engine.run()
    assert a.finish_reason == "length" and a.tokens == ref[0][0][:40]
    assert b.finish_reason == "cancelled" and 0 < len(b.tokens) < 40 and b.tokens == ref[4][0][: len(b.tokens)]
