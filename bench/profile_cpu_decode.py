"""Where a CPU decode step's time goes, per operation, at batch 1 and at several sequences.

    python bench/profile_cpu_decode.py MODEL [--batches 1,8] [--steps 8] [--rounds 3] [--prompt-tokens 64]
                                       [--variants "VAR=VALUE[+VAR=VALUE...] ..."]

One process (GON_PROFILE=1: the runtime times every operation) loads the model once and sets up,
warm, a Context for batch 1 (decoded with ctx.sample, as the pytest benchmark does) and one Engine
of greedy sequences per larger batch (the set-up of bench.measure_batched_decode). Then, --rounds
times, each batch size decodes --steps steps in turn (the order reversed every other round, as in
bench.measure_batched_vs_batch1), and the operations' running sums (gon._core.profile_totals) are
read before and after each slice. So every batch size sees the same machine at nearly the same time:
a shared VM's speed drifts by tens of percent within minutes, which made the difference of two
processes' tables (how this tool worked before) add up to more than the wall time.

Printed: per operation, the median over the rounds of its ms per step; the sum of the operations,
the wall time per step and what the wall time holds besides the operations (the Engine's
scheduling, Python); and per larger batch its aggregate tok/s over batch 1's, median and range over
the rounds (the ratio of issue 7, measured the way `measure_batched_vs_batch1` does).

--variants: each word is a set of environment variables, set before every slice of that variant
(the words take turns within each round, in alternating order), and a table is printed per word.
Only switches the runtime reads on every call can differ this way (GON_MATMUL_ISA, GON_PROFILE and
GON_THREADS are read once); an empty word ("-") is the environment as started.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--steps", type=int, default=8, help="decode steps per slice")
    ap.add_argument("--rounds", type=int, default=3, help="slices per batch size")
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--variants", default="-", help="words of VAR=VALUE joined by +, '-' for none")
    a = ap.parse_args()
    variants = a.variants.split()
    for v in variants:
        if v != "-" and not all("=" in kv for kv in v.split("+")):
            ap.error(f"--variants: {v!r} is not VAR=VALUE[+VAR=VALUE...]")
    batches = sorted({int(b) for b in a.batches.split(",")})
    if batches[0] < 1 or a.steps < 1 or a.rounds < 1 or a.prompt_tokens < 1:
        ap.error("batches, --steps, --rounds and --prompt-tokens must be positive")
    if os.environ.get("GON_PROFILE", "0") in ("", "0"):
        # The runtime reads GON_PROFILE once, at its first timed operation: start again with it set.
        os.execve(sys.executable, [sys.executable, *sys.argv], dict(os.environ, GON_PROFILE="1"))

    import gpt_oss_native as gon
    from gpt_oss_native.bench import _engine_decode, _warm_engine, decode_tokens, random_prompt

    if not gon._core.profile_enabled():
        sys.exit("GON_PROFILE is set but the runtime's profiler is off")
    model = gon.Model(a.model)
    total = a.steps * a.rounds * len(variants)
    runners = {}
    for b in batches:
        if b == 1:
            ctx = gon.Context(model, context_length=a.prompt_tokens + total + 16, max_batch_tokens=a.prompt_tokens)
            ctx.append(random_prompt(model, a.prompt_tokens, seed=99))
            ctx.process(logits="none")
            decode_tokens(ctx, 2)
            runners[b] = (lambda ctx=ctx: decode_tokens(ctx, a.steps) or a.steps)
        else:
            engine = _warm_engine(model, b, a.prompt_tokens, total, "auto")
            runners[b] = (lambda engine=engine, b=b: _engine_decode(engine, b * a.steps) // b)

    base_env = dict(os.environ)
    per_op = {(v, b): [] for v in variants for b in batches}  # per round: {op: ms per step}
    walls = {(v, b): [] for v in variants for b in batches}   # per round: ms per step
    for r in range(a.rounds):
        for v in (variants if r % 2 == 0 else variants[::-1]):
            os.environ.clear()
            os.environ.update(base_env)
            if v != "-":
                os.environ.update(kv.split("=", 1) for kv in v.split("+"))
            for b in (batches if r % 2 == 0 else batches[::-1]):
                before = gon._core.profile_totals()
                t = time.perf_counter()
                steps = runners[b]()
                wall = (time.perf_counter() - t) * 1e3
                after = gon._core.profile_totals()
                per_op[v, b].append({op: (after[op][0] - before[op][0]) * 1e3 / steps for op in after})
                walls[v, b].append(wall / steps)
    os.environ.clear()
    os.environ.update(base_env)
    for v in variants:
        if len(variants) > 1:
            print(f"--- variant {v}")
        report(a, model, batches, {b: per_op[v, b] for b in batches}, {b: walls[v, b] for b in batches})
    sys.stdout.flush()  # before the runtime's own table, printed to stderr at exit


def report(a, model, batches, per_op, walls) -> None:
    ops = list(per_op[batches[0]][0])
    med = {b: {op: statistics.median(d[op] for d in per_op[b]) for op in ops} for b in batches}
    print(f"ms per decode step, median of {a.rounds} slices of {a.steps} steps (threads: {model.threads})")
    print(f"  {'operation':<16}" + "".join(f"{'batch ' + str(b):>12}" for b in batches))
    for op in ops:
        print(f"  {op:<16}" + "".join(f"{med[b][op]:12.2f}" for b in batches))
    sums = {b: statistics.median(sum(d.values()) for d in per_op[b]) for b in batches}
    wall_med = {b: statistics.median(walls[b]) for b in batches}
    print(f"  {'sum of ops':<16}" + "".join(f"{sums[b]:12.2f}" for b in batches))
    print(f"  {'wall per step':<16}" + "".join(f"{wall_med[b]:12.2f}" for b in batches))
    print(f"  {'wall - ops':<16}" + "".join(
        f"{statistics.median(w - sum(d.values()) for w, d in zip(walls[b], per_op[b])):12.2f}" for b in batches))
    print(f"  {'wall range':<16}" + "".join(f"{min(walls[b]):>5.1f}-{max(walls[b]):<6.1f}" for b in batches))
    if batches[0] == 1:
        for b in batches[1:]:
            ratios = [b * w1 / wb for w1, wb in zip(walls[1], walls[b])]
            print(f"aggregate decode at {b} sequences / batch 1: {statistics.median(ratios):.2f}x "
                  f"({min(ratios):.2f}-{max(ratios):.2f} over {a.rounds} slice pairs)")


if __name__ == "__main__":
    main()
