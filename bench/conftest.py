"""Shared fixtures of the benchmarks (run with `pytest bench --benchmark-only`).

The benchmarks run the 20b preset: a random-weight checkpoint with the exact
shapes and dtypes of gpt-oss-20b (13.8 GB), written once by the project's
checkpoint writer into the cache directory (GON_BENCH_MODEL overrides the
path; GON_BENCH_PRESET=120b or tiny switches the preset). Derived figures
(tokens/s, percent of the bandwidth floor) are printed at the end of the run
and stored in each benchmark's extra_info (see --benchmark-json).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import gpt_oss_native as gon
from gpt_oss_native._default import cache_dir

PRESET = os.environ.get("GON_BENCH_PRESET", "20b")
_SUMMARY: list[tuple[str, str]] = []


def record(benchmark, name: str, **figures) -> None:
    """Stores derived figures in the benchmark's extra_info and the end-of-run summary."""
    for k, v in figures.items():
        benchmark.extra_info[k] = v
    _SUMMARY.append((name, ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                     for k, v in figures.items())))


def active_params(c: dict) -> float:
    """Weights one token multiplies by in the layers (attention, router, its experts); the
    unembedding, used for one row of logits per prompt, is left out."""
    H, I, k = c["hidden_size"], c["intermediate_size"], c["experts_per_token"]
    q, kv = c["num_heads"] * c["head_dim"], c["num_kv_heads"] * c["head_dim"]
    per_layer = (q + 2 * kv) * H + H * q + c["num_experts"] * H + k * (2 * I * H + H * I)
    return per_layer * c["num_layers"]


def time_prefill(benchmark, model, prompt, max_batch_tokens: int, context_length: int, rounds: int) -> float:
    """Best time (s) of reset + append + process(logits="last") of `prompt` in one context."""
    ctx = gon.Context(model, context_length=context_length, max_batch_tokens=max_batch_tokens)

    def run():
        ctx.reset()
        ctx.append(prompt)
        ctx.process(logits="last")

    benchmark.pedantic(run, rounds=rounds, iterations=1, warmup_rounds=0)
    return benchmark.stats.stats.min


@pytest.fixture(scope="session")
def model_path() -> Path:
    env = os.environ.get("GON_BENCH_MODEL")
    if env:
        return Path(env)
    path = cache_dir() / "models" / f"{PRESET}-hf-seed0"
    if not (path / "config.json").exists():
        from gpt_oss_native.checkpoint import write_checkpoint

        print(f"\nwriting the {PRESET} preset to {path} (once)")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_checkpoint(path, PRESET, format="hf", seed=0, progress=True)
    return path


@pytest.fixture(scope="session")
def model(model_path):
    return gon.Model(model_path, progress=True)


@pytest.fixture(scope="session")
def read_bandwidth(model) -> float:
    """Read bandwidth of the model's backend memory measured in this run, bytes/s."""
    return model.measure_read_bandwidth(1 << 31)


def pytest_terminal_summary(terminalreporter):
    if not _SUMMARY:
        return
    terminalreporter.section("gpt-oss-native derived figures")
    for name, text in _SUMMARY:
        terminalreporter.write_line(f"{name}: {text}")
