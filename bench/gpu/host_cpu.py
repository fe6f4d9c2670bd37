"""Where the host's CPU time per decoded token goes on CUDA: the calling thread's
CPU time (time.thread_time) per step of several loops over one Context.

    python bench/gpu/host_cpu.py MODEL [MODEL ...] [--tokens 256]

  sample       ctx.sample(temperature=0): the forward graph, device sampling, the token back
  loop         ctx.sample_many(N, temperature=0): the same steps in device-side loops (one
               launch and one wait per 256 tokens), per token
  process      ctx.append(t); ctx.process(logits="none"); ctx.synchronize(): the graph without sampling
  synchronize  ctx.synchronize() on an idle stream: the event record and wait alone
The wall time per step is printed beside it; a model with few layers (the
embedded default) shows the fixed cost per step, a full-size one the part that
grows with the graph's kernel count.
"""

from __future__ import annotations

import argparse
import time

import gpt_oss_native as gon
from gpt_oss_native.bench import random_prompt


def per_step(fn, n):
    fn()
    t, c = time.perf_counter(), time.thread_time()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e6, (time.thread_time() - c) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--tokens", type=int, default=256)
    args = ap.parse_args()
    for path in args.models:
        m = gon.Model(path, device="cuda", progress=False)
        n = args.tokens
        ctx = gon.Context(m, context_length=128 + 4 * n + 16, max_batch_tokens=128)
        ctx.append(random_prompt(m, 128))
        ctx.process(logits="none")
        rows = {
            "sample": per_step(lambda: ctx.sample(temperature=0.0), n),
            "process": per_step(lambda: (ctx.append(1), ctx.process(logits="none"), ctx.synchronize()), n),
            "synchronize": per_step(ctx.synchronize, n),
        }
        ctx.sample_many(8, temperature=0.0)  # captures the loop's graph
        t, c = time.perf_counter(), time.thread_time()
        k = len(ctx.sample_many(n, temperature=0.0)[0])
        rows["loop"] = ((time.perf_counter() - t) / k * 1e6, (time.thread_time() - c) / k * 1e6)
        print(f"{path} ({m.config['num_layers']} layers)")
        for k, (wall, cpu) in rows.items():
            print(f"  {k:<12} wall {wall:8.1f} us/step   thread CPU {cpu:7.1f} us/step")


if __name__ == "__main__":
    main()
