"""Long-context attention on the CPU: a 2-layer model with gpt-oss-20b's attention
shape (64 query heads, 8 kv heads, head_dim 64, one sliding-window layer of 128
and one full-attention layer, hidden 2880) and tiny experts, so attention
dominates what is timed.

    pytest bench/test_bench_attention.py --benchmark-only

Figures: prefill of an 8192-token prompt (GFLOP/s counting attention's
multiply-adds and the weight products), and the extra time per decoded token
at 8192 positions of context over 64 positions, per full-attention layer, next
to the floor set by reading that layer's KV cache (fp32) at the measured read
bandwidth. Benchmarks measure; nothing here asserts a speed.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import gpt_oss_native as gon
from gpt_oss_native._default import cache_dir
from conftest import active_params, record, time_prefill

LONG = 8192
CONFIG = {"preset": "20b", "num_hidden_layers": 2, "num_local_experts": 4, "intermediate_size": 64}


@pytest.fixture(scope="module")
def attn_model():
    path = cache_dir() / "models" / "attn20b-2layer-seed0"
    if not (path / "config.json").exists():
        from gpt_oss_native.checkpoint import write_checkpoint

        path.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(path, CONFIG, format="hf", seed=0, tokenizer="none", progress=True)
    return gon.Model(path, progress=False)


def _prompt(model, n):
    return np.random.default_rng(n).integers(0, model.vocab_size, size=n)


def _attention_flops(c, n):
    """Multiply-adds x 2 of QK and PV for a causal prompt of n tokens, all layers."""
    per_key = 4 * c["num_heads"] * c["head_dim"]
    total = 0
    for sliding in c["layer_is_sliding"]:
        keys = np.minimum(np.arange(1, n + 1), c["sliding_window"]) if sliding else np.arange(1, n + 1)
        total += per_key * int(keys.sum())
    return float(total)


def test_prefill_8k_attention(benchmark, attn_model):
    t = time_prefill(benchmark, attn_model, _prompt(attn_model, LONG), 512, context_length=LONG + 64, rounds=1)
    c = attn_model.config
    att, wts = _attention_flops(c, LONG), 2.0 * LONG * active_params(c)
    record(benchmark, "prefill_8k_attention", seconds=t, tok_s=LONG / t, attention_gflop=att / 1e9,
           gflop_s=(att + wts) / t / 1e9)


def test_decode_at_8k_context(benchmark, attn_model, read_bandwidth):
    c = attn_model.config

    def per_token(n, rounds=3, steps=8):
        ctx = gon.Context(attn_model, context_length=n + 64, max_batch_tokens=512)
        ctx.append(_prompt(attn_model, n))
        ctx.process()
        best = float("inf")
        for _ in range(rounds):
            t = time.perf_counter()
            for _ in range(steps):
                ctx.sample(temperature=0.0)
                ctx.process()
            best = min(best, (time.perf_counter() - t) / steps)
        return best

    short = per_token(64)
    long_ = benchmark.pedantic(lambda: per_token(LONG), rounds=1, iterations=1)
    full_layers = c["layer_is_sliding"].count(False)
    extra_ms = (long_ - short) * 1e3 / full_layers
    kv_bytes = 2 * 4 * c["num_kv_heads"] * c["head_dim"] * LONG  # K and V of one full layer, fp32
    floor_ms = kv_bytes / read_bandwidth * 1e3
    record(benchmark, "decode_8k_attention", ms_per_token_8k=long_ * 1e3, ms_per_token_64=short * 1e3,
           attention_ms_per_full_layer=extra_ms, kv_mb_per_full_layer=kv_bytes / 1e6,
           floor_ms_per_full_layer=floor_ms, pct_of_floor=100 * floor_ms / max(extra_ms, 1e-9))
