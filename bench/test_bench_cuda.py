"""CUDA benchmarks of the 20b preset (or GON_BENCH_MODEL / GON_BENCH_PRESET): decode at
batch 1 one `ctx.sample` step per token and in device loops (`ctx.sample_many`), with the
host's CPU time per token, against the memory-bandwidth floor; time to first token and
prefill of 1k and 8k tokens in chunks of 2048; aggregate decode of 64 sequences. Skipped
without a usable GPU. The measuring code is gpt_oss_native.bench's, shared with
`python -m gpt_oss_native bench --device cuda`.

    GON_BENCH_MODEL=/dev/shm/gon-20b pytest bench/test_bench_cuda.py --benchmark-only

Benchmarks measure; nothing here asserts a speed.
"""

from __future__ import annotations

import time

import pytest

import gpt_oss_native as gon
from conftest import record
from gpt_oss_native.bench import decode_tokens, measure_batched_decode, measure_prefill, random_prompt

pytestmark = pytest.mark.skipif(not gon._core.cuda_usable(), reason="no usable CUDA GPU here")

PROMPT = 1024
DECODE_TOKENS = 64


@pytest.fixture(scope="session")
def cuda_model(model_path):
    return gon.Model(model_path, device="cuda", progress=False)


@pytest.fixture(scope="session")
def cuda_bandwidth(cuda_model) -> float:
    return cuda_model.measure_read_bandwidth(4 << 30)


def _decode_context(model):
    ctx = gon.Context(model, context_length=PROMPT + DECODE_TOKENS + 8, max_batch_tokens=512)
    ctx.append(random_prompt(model, PROMPT, seed=1))
    ctx.process(logits="none")
    return ctx


def _record_decode(benchmark, name, model, bandwidth, seconds, tokens, thread_cpu):
    tok_s = tokens / seconds
    floor = bandwidth / model.decode_bytes_per_token
    record(benchmark, name, tok_s=tok_s, ms_per_token=seconds / tokens * 1e3, floor_tok_s=floor,
           pct_of_floor=100 * tok_s / floor, read_bw_gb_s=bandwidth / 1e9,
           thread_cpu_us_per_token=thread_cpu / tokens * 1e6)


def test_cuda_decode_batch1_steps(benchmark, cuda_model, cuda_bandwidth):
    """One `ctx.sample` per token: a graph launch, the sampled id back, the wait, every token."""
    ctx = _decode_context(cuda_model)
    cpu = []

    def decode():
        c = time.thread_time()
        decode_tokens(ctx, DECODE_TOKENS)
        cpu.append(time.thread_time() - c)

    benchmark.pedantic(decode, setup=lambda: ctx.rewind(PROMPT), rounds=3, iterations=1, warmup_rounds=1)
    _record_decode(benchmark, "cuda_decode_b1_steps", cuda_model, cuda_bandwidth, benchmark.stats.stats.min,
                   DECODE_TOKENS, min(cpu))


def test_cuda_decode_batch1_loop(benchmark, cuda_model, cuda_bandwidth):
    """`ctx.sample_many`: the same steps in one device loop (what generation uses on a GPU)."""
    ctx = _decode_context(cuda_model)
    cpu = []

    def decode():
        c = time.thread_time()
        n = len(ctx.sample_many(DECODE_TOKENS, temperature=0.0)[0])
        cpu.append(time.thread_time() - c)
        assert n == DECODE_TOKENS

    benchmark.pedantic(decode, setup=lambda: ctx.rewind(PROMPT), rounds=3, iterations=1, warmup_rounds=1)
    _record_decode(benchmark, "cuda_decode_b1_loop", cuda_model, cuda_bandwidth, benchmark.stats.stats.min,
                   DECODE_TOKENS, min(cpu))


@pytest.mark.parametrize("n", [1024, 8192])
def test_cuda_prefill_and_time_to_first_token(benchmark, cuda_model, n):
    """Prefill in chunks of 2048 (waiting for the GPU) and the first sampled token after it."""
    r = benchmark.pedantic(lambda: measure_prefill(cuda_model, n, max_batch_tokens=2048), rounds=1, iterations=1)
    record(benchmark, f"cuda_prefill_{n}", prefill_tok_s=r["prefill_tok_s"], ttft_ms=r["ttft_ms"])


def test_cuda_decode_64_sequences(benchmark, cuda_model):
    """Aggregate decode of 64 sequences after 1k-token prompts (Engine, device loops)."""
    r = benchmark.pedantic(lambda: measure_batched_decode(cuda_model, 64, PROMPT, DECODE_TOKENS), rounds=1,
                           iterations=1)
    record(benchmark, "cuda_decode_b64", tok_s=r["tok_s"], ms_per_step=r["ms_per_step"])
