"""Where a decoding step's time goes on the GPU: run with GON_CUDA_PROFILE=1
(every kernel launch timed alone, no graphs; the table is printed at exit).

    GON_CUDA_PROFILE=1 python bench/gpu/profile.py MODEL [--batch 1] [--tokens 16] [--temperature 1 --top-p 0.9]

Without GON_CUDA_PROFILE it times decode steps as the runtime runs them (A/B runs of run.sh): at batch 1 one
sample() call per token, or with --loop one sample_many() call (the device-side loop that `bench` reports as
"in device loops").

Prompts of 1024 random tokens; the prefill runs before the profiled steps are
counted (its kernels are in the table too, under their own names, unless
--decode-only moves the table's start past it: the process restarts counting
by running the prefill in a separate warm-up Context first).
"""

from __future__ import annotations

import argparse
import time

import gpt_oss_native as gon
from gpt_oss_native.bench import random_prompt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--loop", action="store_true", help="batch 1: time one sample_many() call instead")
    args = ap.parse_args()
    m = gon.Model(args.model, device="cuda", progress=False)
    if args.batch == 1:
        ctx = gon.Context(m, context_length=args.prompt + args.tokens + 40, max_batch_tokens=512)
        ctx.append(random_prompt(m, args.prompt))
        ctx.process(logits="none")
        ctx.sample(temperature=args.temperature, top_p=args.top_p, seed=1)  # the step's graph is captured here
        ctx.synchronize()
        if args.loop:
            ctx.sample_many(16, temperature=args.temperature, top_p=args.top_p, seed=1)  # the loop's graph
            t = time.perf_counter()
            ctx.sample_many(args.tokens, temperature=args.temperature, top_p=args.top_p, seed=1)
            print(f"batch 1 (device loop): {(time.perf_counter() - t) / args.tokens * 1e3:.4f} ms per token")
            return
        t = time.perf_counter()
        for _ in range(args.tokens):
            ctx.sample(temperature=args.temperature, top_p=args.top_p, seed=1)
        print(f"batch 1: {(time.perf_counter() - t) / args.tokens * 1e3:.3f} ms per token")
    else:
        # Requests whose prompts are done first decode while the others prefill: the budget allows for it, so
        # every request is still running in the measured steps (fewer rows would make the steps look faster).
        budget = -(-args.batch * args.prompt // 512) + args.tokens + 272  # + a device loop's overshoot (<= 256)
        e = gon.Engine(m, max_sequences=args.batch, context_length=args.prompt + budget + 8, max_batch_tokens=512,
                       text=False)
        reqs = [e.submit(random_prompt(m, args.prompt, seed=i), max_tokens=budget,
                         temperature=args.temperature, top_p=args.top_p, seed=i,
                         default_stop_tokens=False) for i in range(args.batch)]
        while min(len(r.tokens) for r in reqs) < 1:
            e.step()
        e.step()  # a device loop's graph is captured here (steps run in loops of 16 unless profiling)
        steps = e.stats()["steps"]
        t = time.perf_counter()
        while e.stats()["steps"] - steps < args.tokens:
            e.step()
        n = e.stats()["steps"] - steps
        assert e.stats()["running"] == args.batch, "requests ended during the measurement"
        print(f"batch {args.batch}: {(time.perf_counter() - t) / n * 1e3:.3f} ms per step")


if __name__ == "__main__":
    main()
