"""CPU benchmarks of the 20b preset: load time, peak resident memory, decode at
batch 1 against the memory-bandwidth floor, prefill of 128 and 1024 tokens.

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

DECODE_TOKENS = 16


def _prompt(n, vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=n)


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
    ctx.append(_prompt(64, model.vocab_size))
    ctx.process()

    def setup():
        ctx.rewind(64)
        ctx.process()  # the prompt's last logits again, outside the timing

    def decode():  # one token = one forward pass at batch 1 + sampling
        for _ in range(DECODE_TOKENS):
            ctx.sample(temperature=0.0)
            ctx.process()

    benchmark.pedantic(decode, setup=setup, rounds=3, iterations=1)
    per_token = benchmark.stats.stats.min / DECODE_TOKENS
    tok_s = 1.0 / per_token
    bytes_per_token = model.decode_bytes_per_token
    floor_tok_s = read_bandwidth / bytes_per_token
    record(benchmark, "decode_b1", tok_s=tok_s, ms_per_token=per_token * 1e3, gb_per_token=bytes_per_token / 1e9,
           read_bw_gb_s=read_bandwidth / 1e9, floor_tok_s=floor_tok_s, pct_of_floor=100 * tok_s / floor_tok_s,
           effective_gb_s=bytes_per_token * tok_s / 1e9, threads=model.threads)


def _prefill(benchmark, model, n, batch, name):
    prompt = _prompt(n, model.vocab_size, seed=n)
    t = time_prefill(benchmark, model, prompt, batch, context_length=max(2048, n + 1), rounds=2)
    flops = 2.0 * n * active_params(model.config)
    record(benchmark, name, tok_s=n / t, seconds=t, max_batch_tokens=batch, gflop_s=flops / t / 1e9)


def test_prefill_128(benchmark, model):
    _prefill(benchmark, model, 128, 128, "prefill_128")


def test_prefill_1024(benchmark, model):
    _prefill(benchmark, model, 1024, 256, "prefill_1024")
