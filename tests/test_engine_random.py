"""The Engine under random schedules, against every request run alone.

tests/test_engine.py checks chosen schedules; here each run draws new ones from
fresh entropy (printed on failure): engine shapes (sequences, context length,
tokens per step, rewind window, KV dtype, host decode loops), requests joining
at random steps with random prompts (a third of them extending an earlier
request's prompt and tokens, so the cache of a common prefix is reused), token
budgets, sampling settings, stop tokens, cancellations and context overflows.
Every request must get bitwise the tokens and logprobs it gets alone in a
Context (a cancelled one a prefix of them), end for the reason its tokens
imply, and no engine may allocate after creation.
"""

from __future__ import annotations

import pytest

import gpt_oss_native as gon
from gpt_oss_native.checkpoint import write_checkpoint

V = 1000
CONFIGS = {
    "window4": dict(preset="tiny", num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2, hidden_size=64,
                    intermediate_size=96, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                    sliding_window=4, vocab_size=V, eos_token_id=V - 1, pad_token_id=V - 2),
    "window7": dict(preset="tiny", num_hidden_layers=3, num_local_experts=8, num_experts_per_tok=4, hidden_size=96,
                    intermediate_size=64, num_attention_heads=6, num_key_value_heads=3, head_dim=16,
                    sliding_window=7, vocab_size=V, eos_token_id=V - 1, pad_token_id=V - 2),
}
SCHEDULES = 30  # per model


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def model(request, random_model):
    return random_model(CONFIGS[request.param], "engine_random")


def alone(model, prompt, max_tokens, temperature, top_p, seed, context_length, kv_dtype):
    """Tokens and logprobs of `prompt` continued alone, up to max_tokens or a full context."""
    ctx = gon.Context(model, context_length=context_length, kv_dtype=kv_dtype)
    ctx.append(prompt)
    tokens, logprobs = [], []
    while len(tokens) < max_tokens and len(prompt) + len(tokens) < context_length:
        t, lp = ctx.sample(temperature=temperature, top_p=top_p, seed=seed)
        tokens.append(t)
        logprobs.append(lp)
    return tokens, logprobs


def random_schedule(model, rng):
    """Runs one random schedule to the end; returns the engine's settings and its requests."""
    ctx_len = int(rng.integers(8, 160))
    settings = dict(max_sequences=int(rng.integers(1, 7)), context_length=ctx_len,
                    max_batch_tokens=int(rng.integers(1, 48)), kv_dtype=str(rng.choice(["fp32", "bf16"])),
                    rewind_window=[None, 0, 8, 64][int(rng.integers(0, 4))],
                    decode_loop_steps=[0, 1, 3, 16][int(rng.integers(0, 4))])
    engine = gon.Engine(model, text=False, **settings)
    to_submit, requests, finished, step = int(rng.integers(1, 14)), [], [], 0
    while to_submit or engine.has_work:
        while to_submit and rng.random() < 0.4:
            to_submit -= 1
            if finished and rng.random() < 0.4:  # continue an earlier conversation, cut anywhere
                earlier = finished[int(rng.integers(0, len(finished)))]
                prompt = earlier[:int(rng.integers(0, len(earlier) + 1))]
                prompt += rng.integers(0, V - 2, size=int(rng.integers(1, 10))).tolist()
            else:
                prompt = rng.integers(0, V - 2, size=int(rng.integers(1, 60))).tolist()
            prompt = prompt[:ctx_len - 1]
            r = dict(prompt=prompt, max_tokens=int(rng.integers(0, 60)),
                     temperature=float(rng.choice([0.0, 0.7, 1.0, 1.5])), top_p=float(rng.choice([1.0, 0.9, 0.3])),
                     seed=int(rng.integers(0, 2**30)), stop_tokens=[],
                     cancel_at=step + int(rng.integers(0, 30)) if rng.random() < 0.15 else None)
            r["alone"] = alone(model, prompt, r["max_tokens"], r["temperature"], r["top_p"], r["seed"], ctx_len,
                               settings["kv_dtype"])
            if r["alone"][0] and rng.random() < 0.3:  # a stop token the request meets (and one it may not)
                r["stop_tokens"] = [int(rng.choice(r["alone"][0])), int(rng.integers(0, V))]
            r["handle"] = engine.submit(prompt, max_tokens=r["max_tokens"], temperature=r["temperature"],
                                        top_p=r["top_p"], seed=r["seed"], stop_tokens=r["stop_tokens"],
                                        default_stop_tokens=False)
            requests.append(r)
        for r in requests:
            if r["cancel_at"] == step and not r["handle"].done:
                r["handle"].cancel()
        if engine.has_work:
            engine.step()
        step += 1
        for r in requests:
            if r["handle"].done and not r.get("seen"):
                r["seen"] = True
                finished.append(r["prompt"] + list(r["handle"].tokens))
    assert engine.memory_stats()["late_allocations"] == 0
    return settings, requests


def check(settings, r):
    """Empty when request r got what it gets alone, else what differs."""
    tokens, logprobs = r["alone"]
    stops = [i for i, t in enumerate(tokens) if t in r["stop_tokens"]]
    if stops:
        tokens, logprobs = tokens[:stops[0] + 1], logprobs[:stops[0] + 1]
    h = r["handle"]
    got, reason = list(h.tokens), h.finish_reason
    if reason == "cancelled":
        ok = got == tokens[:len(got)]
    else:
        expected = "stop_token" if stops else "length" if len(tokens) == r["max_tokens"] else "context_full"
        ok = got == tokens and list(h.logprobs) == logprobs and reason == expected
    if ok:
        return ""
    return (f"{settings} prompt of {len(r['prompt'])}, max_tokens {r['max_tokens']}, temperature {r['temperature']},"
            f" top_p {r['top_p']}, stops {r['stop_tokens']}, cancel at step {r['cancel_at']}: {reason}, "
            f"{len(got)} tokens {got[:12]}... alone {len(tokens)} {tokens[:12]}...")


def test_random_schedules_equal_alone(model, rng):
    failures, counts = [], {}
    for _ in range(SCHEDULES):
        settings, requests = random_schedule(model, rng)
        for r in requests:
            reason = r["handle"].finish_reason
            counts[reason] = counts.get(reason, 0) + 1
            if why := check(settings, r):
                failures.append(why)
    assert not failures, f"{len(failures)} requests differ from alone:\n" + "\n".join(failures[:10])
    # The schedules reach every way a request can end.
    assert {"length", "stop_token", "context_full", "cancelled"} <= set(counts), counts


WORDS = ["Hello", " world", "é", "日本", "😀", "\n", "\n\n", " ", "1", " 2", "<|start|>", "<|message|>", "abc",
         "Bonjour", "ß", "🙂x"]


def test_random_text_requests_equal_generate(tmp_path, rng):
    """Text streaming with stop strings: random prompts (multi-byte characters, special tokens), stop strings cut
    from the text each request makes alone (so they end it, in the middle of a token or across several), several
    requests per engine: each streams the (text, token) pieces of Model.generate and ends for the same reason."""
    path = write_checkpoint(tmp_path / "text", dict(preset="tiny", hidden_size=64, intermediate_size=32),
                            progress=False, tokenizer="real", seed=int(rng.integers(0, 2**31)))
    model = gon.Model(path)
    counts = {}
    for _ in range(12):
        ctx_len = int(rng.integers(32, 96))  # above the longest prompt (7 pieces of 1-2 tokens each)
        engine = gon.Engine(model, max_sequences=int(rng.integers(1, 5)), context_length=ctx_len,
                            max_batch_tokens=int(rng.integers(1, 24)))
        jobs = []
        for _ in range(int(rng.integers(1, 6))):
            prompt = "".join(rng.choice(WORDS, size=int(rng.integers(1, 8))))
            args = dict(max_tokens=int(rng.integers(0, 24)), temperature=float(rng.choice([0.0, 1.0, 1.5])),
                        seed=int(rng.integers(0, 2**30)), return_tokens=True)
            text = "".join(c.text for c in model.generate(prompt, context_length=ctx_len, **args))
            if text and rng.random() < 0.5:
                start = int(rng.integers(0, len(text)))
                args["stop"] = [text[start:start + int(rng.integers(1, 4))]]
            ref = model.generate(prompt, context_length=ctx_len, **args)
            expected = [(c.text, c.token) for c in ref]
            jobs.append((engine.submit(prompt, **args), expected, ref.finish_reason, prompt, args))
        engine.run()
        for h, expected, reason, prompt, args in jobs:
            got = []
            try:
                for c in h:
                    got.append((c.text, c.token))
            except gon.ContextOverflowError:  # the Engine's way to end a full context (Model.generate just stops)
                assert h.finish_reason == "context_full"
            assert (got, h.finish_reason) == (expected, reason), f"prompt {prompt!r}, {args}, context {ctx_len}"
            counts[reason] = counts.get(reason, 0) + 1
    assert {"length", "stop_string"} <= set(counts), counts
