"""How fast is it on this machine: ``python -m gpt_oss_native bench [MODEL]``.

One measuring code for the command and the pytest-benchmark suite (bench/):
each ``measure_*`` function runs one kind of measurement on a loaded model and
returns plain numbers, and both front ends call them.

    python -m gpt_oss_native bench                        # the embedded default model
    python -m gpt_oss_native bench /path/to/gpt-oss-20b --device cuda \\
        --prompt-tokens 128,1024,8192 --gen-tokens 64 --batch-sizes 1,4,16,64 \\
        --output results.json --plot results.png

Reported: load time; per prompt length, time to first token, prefill tok/s and
decode latency per token (median and p90) after that prompt; aggregate decode
throughput per batch size (an Engine with that many sequences; above 1 measured
in slices alternating with batch 1, with the ratio to it); peak host RSS
and backend memory; the read bandwidth of the backend's memory measured in the
same run and the decode floor it implies (decode_bytes_per_token /
bandwidth), with decode as a fraction of it. Prompts are random token ids
(speed does not depend on the text); decoding is greedy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import InvalidArgumentError

__all__ = ["measure_load", "measure_prefill", "measure_decode", "measure_batched_decode",
           "measure_batched_vs_batch1", "decode_tokens",
           "peak_host_rss", "run", "add_arguments", "main"]


# ---- measurements (shared with bench/) ------------------------------------------------

def random_prompt(model, n: int, seed: int = 0) -> np.ndarray:
    """`n` random token ids below the first special token (or the vocabulary size)."""
    hi = min(model.vocab_size, 199998)
    return np.random.default_rng(seed).integers(0, hi, size=n).astype(np.int32)


def measure_load(path, device: str, threads: Optional[int] = None):
    """(seconds, model): wall time of loading a checkpoint (files already cached: the warm load)."""
    import gpt_oss_native as gon

    t = time.perf_counter()
    model = gon.Model(path, device=device, threads=threads, progress=False)
    return time.perf_counter() - t, model


def decode_tokens(ctx, n: int) -> None:
    """`n` greedy decode steps: each ctx.sample() runs the pending token through the model
    (batch 1) and samples the next on the backend (what the pytest benchmark times)."""
    for _ in range(n):
        ctx.sample(temperature=0.0)


def measure_prefill(model, prompt_tokens: int, *, max_batch_tokens: int = 512, repeats: int = 2,
                    kv_dtype: str = "auto") -> Dict[str, float]:
    """Time to first token (append + prefill + the first sampled token) and prefill tok/s
    (the prefill alone), best of `repeats` after a warm-up."""
    import gpt_oss_native as gon

    prompt = random_prompt(model, prompt_tokens, seed=prompt_tokens)
    ctx = gon.Context(model, context_length=prompt_tokens + 1, max_batch_tokens=min(max_batch_tokens, prompt_tokens),
                      kv_dtype=kv_dtype)
    best_ttft = best_prefill = float("inf")
    for r in range(repeats + 1):
        ctx.reset()
        t0 = time.perf_counter()
        ctx.append(prompt)
        ctx.process(logits="none")
        ctx.synchronize()  # a GPU queues the work: wait for it
        ctx.rewind(prompt_tokens - 1)  # keep the cache; the last token runs again with its logits and sample
        t1 = time.perf_counter()
        ctx.sample(temperature=0.0)
        t2 = time.perf_counter()
        if r > 0:  # the first round warms up (graphs, caches)
            best_prefill = min(best_prefill, t1 - t0)
            best_ttft = min(best_ttft, t2 - t0)
    return {"prompt_tokens": prompt_tokens, "ttft_ms": best_ttft * 1e3, "prefill_tok_s": prompt_tokens / best_prefill}


def measure_decode(model, prompt_tokens: int, gen_tokens: int, *, kv_dtype: str = "auto",
                   warmup: int = 4) -> Dict[str, float]:
    """Decode latency per token at batch 1 after a prompt of `prompt_tokens`: each of
    `gen_tokens` greedy steps timed alone (median, p90, tok/s from the median), with
    the host's CPU time per token. On a GPU also the same tokens decoded by
    Context.sample_many (device-side loops: what generation uses there): tok/s
    and host CPU time per token ("loop_*")."""
    import gpt_oss_native as gon

    ctx = gon.Context(model, context_length=prompt_tokens + gen_tokens + warmup + 1,
                      max_batch_tokens=min(512, prompt_tokens), kv_dtype=kv_dtype)
    ctx.append(random_prompt(model, prompt_tokens, seed=1))
    ctx.process(logits="none")
    decode_tokens(ctx, warmup)
    times = []
    cpu0, thread0 = time.process_time(), time.thread_time()
    for _ in range(gen_tokens):
        t = time.perf_counter()
        ctx.sample(temperature=0.0)
        times.append(time.perf_counter() - t)
    cpu, thread_cpu = time.process_time() - cpu0, time.thread_time() - thread0
    times.sort()
    median = statistics.median(times)
    p90 = times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))]
    out = {"prompt_tokens": prompt_tokens, "gen_tokens": gen_tokens, "median_ms": median * 1e3,
           "p90_ms": p90 * 1e3, "tok_s": 1.0 / median,
           # CPU time of the whole process (all its threads) and of the calling thread, per token
           "host_cpu_us_per_token": cpu / gen_tokens * 1e6, "thread_cpu_us_per_token": thread_cpu / gen_tokens * 1e6}
    if model.device != "cpu":
        # The CPU has no device loop: sample_many is the loop of sample() measured above.
        ctx.rewind(prompt_tokens)
        ctx.sample_many(warmup, temperature=0.0)
        ctx.rewind(prompt_tokens)
        t, cpu0, thread0 = time.perf_counter(), time.process_time(), time.thread_time()
        n = len(ctx.sample_many(gen_tokens, temperature=0.0)[0])
        wall, cpu, thread_cpu = time.perf_counter() - t, time.process_time() - cpu0, time.thread_time() - thread0
        out.update({"loop_tok_s": n / wall, "loop_host_cpu_us_per_token": cpu / n * 1e6,
                    "loop_thread_cpu_us_per_token": thread_cpu / n * 1e6})
    return out


def _warm_engine(model, batch: int, prompt_tokens: int, decode_tokens: int, kv_dtype: str):
    """An Engine running `batch` greedy requests of random `prompt_tokens`-token prompts, stepped until
    every prompt is processed and one decode step taken, then one more Engine.step (the warm-up;
    on a GPU the second captures the device loop's graph). Every request can then decode at least
    `decode_tokens` more tokens: the ones whose prompts were done first decode while the others
    prefill (decode rows go first), so the budgets allow for the whole prefill."""
    import gpt_oss_native as gon

    chunk = max(batch, min(512, batch * prompt_tokens))
    max_tokens = -(-batch * prompt_tokens // chunk) + decode_tokens + 272  # + a device loop's overshoot (<= 256)
    engine = gon.Engine(model, max_sequences=batch, context_length=prompt_tokens + max_tokens + 8,
                        max_batch_tokens=chunk, kv_dtype=kv_dtype, text=False)
    reqs = [engine.submit(random_prompt(model, prompt_tokens, seed=100 + i), max_tokens=max_tokens,
                          temperature=0.0, default_stop_tokens=False) for i in range(batch)]
    while min(len(r.tokens) for r in reqs) < 2:
        engine.step()
    engine.step()
    return engine


def measure_batched_decode(model, batch: int, prompt_tokens: int, gen_tokens: int, *,
                           kv_dtype: str = "auto") -> Dict[str, float]:
    """Aggregate decode throughput of `batch` sequences in one Engine: every request's
    prompt is prefilled first, then about `gen_tokens` steps each decode one token of every
    sequence (on a GPU in device loops, several steps per Engine.step); tok/s = tokens
    generated / time."""
    engine = _warm_engine(model, batch, prompt_tokens, gen_tokens, kv_dtype)
    t = time.perf_counter()
    tokens = _engine_decode(engine, batch * gen_tokens)
    elapsed = time.perf_counter() - t
    steps = tokens / batch
    return {"batch": batch, "steps": steps, "tok_s": tokens / elapsed, "ms_per_step": elapsed / steps * 1e3}


def _engine_decode(engine, tokens: int) -> int:
    """Steps `engine` until it has generated at least `tokens` more tokens; returns how many it
    generated. Every request must still be running at the end (else the throughput would be that
    of a smaller batch)."""
    stats = engine.stats()
    start, running = stats["tokens_generated"], stats["running"]
    while engine.has_work and engine.stats()["tokens_generated"] - start < tokens:
        engine.step()
    stats = engine.stats()
    if stats["running"] != running:
        raise RuntimeError(f"bench: {running - stats['running']} of {running} requests ended during a measurement")
    return stats["tokens_generated"] - start


def measure_batched_vs_batch1(model, batch: int, prompt_tokens: int, gen_tokens: int, *, slices: int = 4,
                              kv_dtype: str = "auto") -> Dict[str, float]:
    """Aggregate decode of `batch` sequences against batch 1, in alternating slices: a Context
    (batch 1) and an Engine of `batch` sequences, both prefilled and warm, take turns decoding
    gen_tokens // slices steps each, `slices` times (in the order 1, b, b, 1, 1, b, ...), so both
    see the same state of a machine whose speed drifts (a shared VM's bandwidth can change by 2x
    between two measurements a minute apart). Per slice pair the ratio of the aggregate tok/s to
    batch 1's; returned: the medians of both throughputs, the median ratio and its range."""
    import gpt_oss_native as gon

    if batch < 2:
        raise InvalidArgumentError(f"measure_batched_vs_batch1 needs batch >= 2, got {batch}")
    per = max(1, gen_tokens // slices)
    total = per * slices
    length = prompt_tokens + total + 8
    ctx = gon.Context(model, context_length=length + 8, max_batch_tokens=min(512, prompt_tokens), kv_dtype=kv_dtype)
    ctx.append(random_prompt(model, prompt_tokens, seed=99))
    ctx.process(logits="none")
    decode_tokens(ctx, 2)
    engine = _warm_engine(model, batch, prompt_tokens, total, kv_dtype)
    if model.device != "cpu":
        ctx.sample_many(2, temperature=0.0)  # a GPU decodes in device loops (Engine too): warm that graph

    def one() -> float:
        t = time.perf_counter()
        if model.device == "cpu":
            decode_tokens(ctx, per)
        else:
            ctx.sample_many(per, temperature=0.0)
        return per / (time.perf_counter() - t)

    def many() -> float:
        t = time.perf_counter()
        n = _engine_decode(engine, batch * per)
        return n / (time.perf_counter() - t)

    ones, manys, ratios = [], [], []
    for i in range(slices):
        if i % 2 == 0:
            a = one()
            b = many()
        else:
            b = many()
            a = one()
        ones.append(a)
        manys.append(b)
        ratios.append(b / a)
    tok_s = statistics.median(manys)
    return {"batch": batch, "steps": total, "slices": slices, "tok_s": tok_s, "ms_per_step": batch / tok_s * 1e3,
            "batch1_tok_s": statistics.median(ones), "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios)}


def peak_host_rss() -> int:
    """Peak resident set of this process (VmHWM), bytes; 0 where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ---- the command --------------------------------------------------------------------------

def _int_list(text: str, name: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise InvalidArgumentError(f"--{name} expects comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise InvalidArgumentError(f"--{name} expects integers >= 1, got {text!r}")
    return values


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", default=None, help="checkpoint directory (default: the embedded model)")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--prompt-tokens", default="128,1024", help="prompt lengths, comma separated (default 128,1024)")
    p.add_argument("--gen-tokens", type=int, default=32, help="decoded tokens per measurement (default 32)")
    p.add_argument("--batch-sizes", default="1,4,16", help="sequences decoded together (default 1,4,16)")
    p.add_argument("--kv-dtype", default="auto", help="KV cache element type: auto, fp32, bf16")
    p.add_argument("--prefill-chunk", type=int, default=None,
                   help="tokens per forward pass of the prefill measurement (max_batch_tokens; "
                        "default 512 on the CPU, 2048 on a GPU)")
    p.add_argument("--output", default=None, help="write the results as JSON here")
    p.add_argument("--plot", default=None, help="draw throughput and latency plots into this PNG (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress line")


class _Steps:
    """A progress line of measurement steps on stderr (a terminal only, unless forced)."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total, self.done, self.enabled = total, 0, enabled and sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def __call__(self, label: str) -> None:
        self.done += 1
        if self.enabled:
            width = 24
            filled = int(width * self.done / self.total)
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total} "
                             f"{time.perf_counter() - self.t0:5.0f}s  {label[:40]:<40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def run(model_path, *, device: str = "auto", threads: Optional[int] = None, prompt_tokens: Sequence[int] = (128, 1024),
        gen_tokens: int = 32, batch_sizes: Sequence[int] = (1, 4, 16), kv_dtype: str = "auto",
        prefill_chunk: Optional[int] = None, progress: bool = True) -> dict:
    """Runs every measurement and returns the results (what ``--output`` writes)."""
    steps = _Steps(2 + 2 * len(prompt_tokens) + len(batch_sizes), progress)
    try:
        load_s, model = measure_load(model_path, device, threads)
        steps("load")
        bw = model.measure_read_bandwidth(1 << 31 if model.device == "cpu" else 4 << 30)
        steps("read bandwidth")
        floor = bw / model.decode_bytes_per_token
        if prefill_chunk is None:
            # The CPU's products are as fast per token from chunks of a few hundred tokens; a GPU's grouped
            # expert products fill their 128-row tiles only with a few thousand (H200, 20b: 1k prompt 20.5K
            # tok/s in chunks of 512, 27.3K in chunks of 2048).
            prefill_chunk = 512 if model.device == "cpu" else 2048
        prefill = []
        decode = []
        for n in prompt_tokens:
            if n + gen_tokens + 8 > model.config["max_context"]:
                raise InvalidArgumentError(f"--prompt-tokens {n} does not fit the model's context")
            prefill.append(measure_prefill(model, n, max_batch_tokens=prefill_chunk, kv_dtype=kv_dtype))
            steps(f"prefill {n}")
            d = measure_decode(model, n, gen_tokens, kv_dtype=kv_dtype)
            d["pct_of_floor"] = 100.0 * d["tok_s"] / floor
            decode.append(d)
            steps(f"decode after {n}")
        batched = []
        for b in batch_sizes:
            if b == 1:
                batched.append(measure_batched_decode(model, b, min(prompt_tokens), gen_tokens, kv_dtype=kv_dtype))
            else:
                batched.append(measure_batched_vs_batch1(model, b, min(prompt_tokens), gen_tokens, kv_dtype=kv_dtype))
            steps(f"batch {b}")
    finally:
        steps.close()
    return {
        "model": str(model.path),
        "device": model.device,
        "device_description": model.device_description,
        "threads": model.threads,
        "host": platform.node(),
        "weights_gb": model.weight_bytes / 1e9,
        "decode_gb_per_token": model.decode_bytes_per_token / 1e9,
        "load_s": load_s,
        "prefill_chunk": prefill_chunk,
        "read_bandwidth_gb_s": bw / 1e9,
        "decode_floor_tok_s": floor,
        "prefill": prefill,
        "decode": decode,
        "batched_decode": batched,
        "peak_host_rss_gb": peak_host_rss() / 1e9,
        "peak_backend_memory_gb": model.backend_memory_peak / 1e9,
        "kv_dtype": kv_dtype,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def format_table(r: dict) -> str:
    lines = [
        f"model: {r['model']} ({r['weights_gb']:.2f} GB; decode reads {r['decode_gb_per_token']:.3f} GB/token)",
        f"device: {r['device_description']}",
        f"load: {r['load_s']:.2f} s   read bandwidth: {r['read_bandwidth_gb_s']:.1f} GB/s   "
        f"decode floor: {r['decode_floor_tok_s']:.1f} tok/s",
        f"prefill in chunks of {r.get('prefill_chunk', 512)} tokens; decode greedy, one token per ctx.sample call "
        "(device loops: ctx.sample_many, what generation uses on a GPU)",
        "",
        f"{'prompt':>8} {'TTFT ms':>10} {'prefill tok/s':>14} {'decode ms/tok':>14} {'p90 ms':>8} "
        f"{'decode tok/s':>13} {'% floor':>8}",
    ]
    for p, d in zip(r["prefill"], r["decode"]):
        lines.append(f"{p['prompt_tokens']:>8} {p['ttft_ms']:>10.1f} {p['prefill_tok_s']:>14.1f} "
                     f"{d['median_ms']:>14.2f} {d['p90_ms']:>8.2f} {d['tok_s']:>13.2f} {d['pct_of_floor']:>7.0f}%")
    lines += ["", f"{'prompt':>8} {'host CPU us/token: one step per call':>38}"
                  + (f" {'device loop':>12} {'loop tok/s':>11}" if any("loop_tok_s" in d for d in r["decode"]) else "")]
    for d in r["decode"]:
        line = f"{d['prompt_tokens']:>8} {d['thread_cpu_us_per_token']:>38.1f}"
        if "loop_tok_s" in d:
            line += f" {d['loop_thread_cpu_us_per_token']:>12.1f} {d['loop_tok_s']:>11.1f}"
        lines.append(line)
    lines += ["", f"{'batch':>8} {'aggregate decode tok/s':>24} {'ms/step':>9}   x batch 1 (interleaved: median, range)"]
    for b in r["batched_decode"]:
        line = f"{b['batch']:>8} {b['tok_s']:>24.1f} {b['ms_per_step']:>9.2f}"
        if "ratio" in b:
            line += f"   {b['ratio']:.2f}x ({b['ratio_min']:.2f}-{b['ratio_max']:.2f})"
        lines.append(line)
    lines += ["", f"peak host RSS: {r['peak_host_rss_gb']:.2f} GB   peak backend memory: "
                  f"{r['peak_backend_memory_gb']:.2f} GB"]
    return "\n".join(lines)


def plot(r: dict, path: str) -> None:
    """Throughput against batch size and latency against prompt length, side by side."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise InvalidArgumentError("--plot needs matplotlib: pip install 'gpt-oss-native[plot]'") from None
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    bs = [x["batch"] for x in r["batched_decode"]]
    a.plot(bs, [x["tok_s"] for x in r["batched_decode"]], "o-")
    a.set_xscale("log", base=2)
    a.set_xlabel("sequences decoded together")
    a.set_ylabel("aggregate decode tok/s")
    a.set_title("throughput")
    a.grid(True, alpha=0.3)
    ps = [x["prompt_tokens"] for x in r["decode"]]
    b.plot(ps, [x["median_ms"] for x in r["decode"]], "o-", label="decode ms/token (median)")
    b.plot(ps, [x["ttft_ms"] for x in r["prefill"]], "s-", label="time to first token ms")
    b.set_xscale("log", base=2)
    b.set_yscale("log")
    b.set_xlabel("prompt tokens")
    b.set_ylabel("ms")
    b.set_title("latency")
    b.legend()
    b.grid(True, alpha=0.3)
    fig.suptitle(f"{os.path.basename(r['model'].rstrip('/'))} on {r['device_description']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_arguments(args: argparse.Namespace) -> None:
    """The options, checked before loading anything (InvalidArgumentError)."""
    _int_list(args.prompt_tokens, "prompt-tokens")
    _int_list(args.batch_sizes, "batch-sizes")
    if args.gen_tokens < 1:
        raise InvalidArgumentError("--gen-tokens must be >= 1")
    if args.threads is not None and args.threads < 1:
        raise InvalidArgumentError("--threads must be >= 1")
    if args.prefill_chunk is not None and args.prefill_chunk < 1:
        raise InvalidArgumentError("--prefill-chunk must be >= 1")
    if args.kv_dtype not in ("auto", "fp32", "bf16"):
        raise InvalidArgumentError(f"--kv-dtype must be auto, fp32 or bf16 (the KV cache's kv_dtype), "
                                   f"got {args.kv_dtype!r}")
    if args.plot:  # fail before measuring, not after
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise InvalidArgumentError("--plot needs matplotlib: pip install 'gpt-oss-native[plot]'") from None


def main(args: argparse.Namespace) -> int:
    check_arguments(args)
    prompt_tokens = _int_list(args.prompt_tokens, "prompt-tokens")
    batch_sizes = _int_list(args.batch_sizes, "batch-sizes")
    path = args.model
    if path is None:
        from ._default import default_model_path

        path = str(default_model_path())
        print(f"model: embedded default ({path})", file=sys.stderr)
    r = run(path, device=args.device, threads=args.threads, prompt_tokens=prompt_tokens, gen_tokens=args.gen_tokens,
            batch_sizes=batch_sizes, kv_dtype=args.kv_dtype, prefill_chunk=args.prefill_chunk,
            progress=not args.no_progress)
    print(format_table(r))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(r, f, indent=1)
        print(f"wrote {args.output}", file=sys.stderr)
    if args.plot:
        plot(r, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0
