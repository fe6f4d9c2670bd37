"""CPU benchmarks of the 20b preset: load time, peak resident memory, decode at
batch 1 against the memory-bandwidth floor, aggregate decode of 8 sequences,
prefill of 128 and 1024 tokens. The measuring code is gpt_oss_native.bench's,
shared with `python -m gpt_oss_native bench`.

    pytest bench --benchmark-only

Benchmarks measure; nothing here asserts a speed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import gpt_oss_native as gon
from conftest import active_params, record, time_prefill
from gpt_oss_native.bench import decode_tokens, measure_batched_vs_batch1, random_prompt

DECODE_TOKENS = 16


def test_load(benchmark, model_path, model):
    # `model` (session fixture) has loaded once already, so the files are in the
    # page cache: this is the warm load time (map, validate, prefetch).
    loaded = benchmark.pedantic(lambda: gon.Model(model_path, progress=False), rounds=3, iterations=1)
    record(benchmark, "load", seconds=benchmark.stats.stats.mean, weight_gb=loaded.weight_bytes / 1e9)


def test_peak_resident_memory(benchmark, model_path):
    """Peak RSS of a fresh process that loads the model, prefills 128 tokens and decodes 16.

    Read from /proc/self/status (VmHWM, and RssFile/RssAnon at the end): getrusage()'s
    ru_maxrss would report the peak of this pytest process, which exec() passes on."""
    script = f"""
import json, resource, time, numpy as np, gpt_oss_native as gon

def status():
    out = {{}}
    for line in open("/proc/self/status"):
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0]) * 1024
    return out

t = time.perf_counter()
m = gon.Model({str(model_path)!r}, progress=False)
load = time.perf_counter() - t
ctx = gon.Context(m, context_length=4096, max_batch_tokens=128)
ctx.append(np.random.default_rng(0).integers(0, m.vocab_size, size=128))
ctx.process()
for _ in range({DECODE_TOKENS}):
    ctx.sample(temperature=0.0)
print(json.dumps({{"status": status(), "load_s": load, "weights": m.weight_bytes, "arena": ctx.memory_stats()}}))
"""

    def run():
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
        return json.loads(out.strip().splitlines()[-1])

    result = benchmark.pedantic(run, rounds=1, iterations=1)
    arena = result["arena"]["host_bytes"] + result["arena"]["device_bytes"]
    st = result["status"]
    record(benchmark, "peak_rss", peak_rss_gb=st["VmHWM"] / 1e9, rss_file_gb=st["RssFile"] / 1e9,
           rss_anon_gb=st["RssAnon"] / 1e9, weight_gb=result["weights"] / 1e9, context_arena_gb=arena / 1e9,
           load_s_fresh_process=result["load_s"])


def test_decode_batch1(benchmark, model, read_bandwidth):
    ctx = gon.Context(model, context_length=4096, max_batch_tokens=128)
    ctx.append(random_prompt(model, 64))
    ctx.process(logits="none")

    def setup():
        ctx.rewind(64)  # the cache of the prompt stays; the first sample runs its last token again

    def decode():  # one token = one forward pass at batch 1 with sampling on the backend
        decode_tokens(ctx, DECODE_TOKENS)

    benchmark.pedantic(decode, setup=setup, rounds=3, iterations=1)
    per_token = benchmark.stats.stats.min / DECODE_TOKENS
    tok_s = 1.0 / per_token
    bytes_per_token = model.decode_bytes_per_token
    floor_tok_s = read_bandwidth / bytes_per_token
    record(benchmark, "decode_b1", tok_s=tok_s, ms_per_token=per_token * 1e3, gb_per_token=bytes_per_token / 1e9,
           read_bw_gb_s=read_bandwidth / 1e9, floor_tok_s=floor_tok_s, pct_of_floor=100 * tok_s / floor_tok_s,
           effective_gb_s=bytes_per_token * tok_s / 1e9, threads=model.threads)


def test_decode_8_sequences(benchmark, model):
    """Aggregate decode of 8 sequences (64-token prompts) against batch 1, in slices that
    alternate with batch-1 decoding (the ratio is of measurements seconds apart, not minutes:
    this machine's bandwidth drifts). One pass over the dense weights serves all 8; the experts
    read are those any of the 8 chose (about 21 of 32 per layer for random routing, against 4
    at batch 1)."""
    result = benchmark.pedantic(lambda: measure_batched_vs_batch1(model, 8, 64, 2 * DECODE_TOKENS), rounds=1,
                                iterations=1)
    c = model.config
    E, k = c["num_experts"], c["experts_per_token"]
    expected_experts = E * (1 - (1 - k / E) ** 8)
    record(benchmark, "decode_b8", tok_s=result["tok_s"], ms_per_step=result["ms_per_step"],
           batch1_tok_s=result["batch1_tok_s"], ratio=result["ratio"], ratio_min=result["ratio_min"],
           ratio_max=result["ratio_max"], expected_distinct_experts_per_layer=expected_experts)


def _prefill(benchmark, model, n, batch, name):
    prompt = random_prompt(model, n, seed=n)
    t = time_prefill(benchmark, model, prompt, batch, context_length=max(2048, n + 1), rounds=2)
    flops = 2.0 * n * active_params(model.config)
    record(benchmark, name, tok_s=n / t, seconds=t, max_batch_tokens=batch, gflop_s=flops / t / 1e9)


def test_prefill_128(benchmark, model):
    _prefill(benchmark, model, 128, 128, "prefill_128")


def test_prefill_1024(benchmark, model):
    _prefill(benchmark, model, 1024, 256, "prefill_1024")
