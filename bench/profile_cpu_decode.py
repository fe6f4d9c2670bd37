"""Where a CPU decode step's time goes, per operation, at batch 1 and at several sequences.

    python bench/profile_cpu_decode.py MODEL [--batches 1,8] [--steps 8] [--prompt-tokens 64]

For each batch size, two child processes run with GON_PROFILE=1 (the runtime's per-operation
timer, printed at exit): one decodes 2 steps after the warm-up, the other 2 + --steps. The
difference of their tables is the time of --steps decode steps alone (the prompt's prefill and
the warm-up cancel out; the model is loaded with its default prefetch, which reads the weights in
when they fit in memory); printed per step, with the difference of the decode loops' wall times
per step below. Batch 1 decodes one Context with
ctx.sample; larger batches step an Engine of that many greedy sequences (the set-up of
bench.measure_batched_decode). The timer rounds to milliseconds per operation and process:
use enough steps that this does not matter.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

CHILD = r"""
import sys, time
import gpt_oss_native as gon
from gpt_oss_native.bench import _warm_engine, _engine_decode, decode_tokens, random_prompt
path, batch, steps, prompt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
model = gon.Model(path)
if batch == 1:
    ctx = gon.Context(model, context_length=prompt + steps + 16, max_batch_tokens=prompt)
    ctx.append(random_prompt(model, prompt, seed=99))
    ctx.process(logits="none")
    decode_tokens(ctx, 2)
    t = time.perf_counter()
    decode_tokens(ctx, steps)
    n = steps
else:
    engine = _warm_engine(model, batch, prompt, steps, "auto")
    t = time.perf_counter()
    n = _engine_decode(engine, batch * steps) // batch
print(f"WALL {(time.perf_counter() - t) * 1e3:.3f}", flush=True)
"""

ROW = re.compile(r"^\s+(\S+)\s+([0-9.]+) s")


def run(model: str, batch: int, steps: int, prompt: int) -> tuple[dict, float]:
    env = dict(os.environ, GON_PROFILE="1")
    p = subprocess.run([sys.executable, "-c", CHILD, model, str(batch), str(steps), str(prompt)], env=env,
                       capture_output=True, text=True, check=True)
    ops = {m.group(1): float(m.group(2)) for line in p.stderr.splitlines() if (m := ROW.match(line))}
    wall = float(next(line.split()[1] for line in p.stdout.splitlines() if line.startswith("WALL")))
    return ops, wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    tables = {}
    for b in batches:
        short, wall_short = run(a.model, b, 2, a.prompt_tokens)
        long, wall_long = run(a.model, b, 2 + a.steps, a.prompt_tokens)
        tables[b] = ({op: (long[op] - short.get(op, 0.0)) / a.steps * 1e3 for op in long},
                     (wall_long - wall_short) / a.steps)
    ops = list(next(iter(tables.values()))[0])
    print("ms per decode step" + "".join(f"{'batch ' + str(b):>12}" for b in batches))
    for op in ops:
        print(f"  {op:<16}" + "".join(f"{tables[b][0].get(op, 0.0):12.2f}" for b in batches))
    print(f"  {'sum of ops':<16}" + "".join(f"{sum(tables[b][0].values()):12.2f}" for b in batches))
    print(f"  {'wall per step':<16}" + "".join(f"{tables[b][1]:12.2f}" for b in batches))
    # The operations run one after another inside the decode loop, so their sum cannot exceed its wall time by
    # more than the timer's rounding (1 ms per operation and process) unless the two processes saw different
    # machines (a page cache being refilled, another load, a clock change): then the table is not to be trusted.
    slack = 2.0 * len(ops) / a.steps
    for b in batches:
        total, wall = sum(tables[b][0].values()), tables[b][1]
        if total > wall * 1.02 + slack:
            print(f"warning: at batch {b} the operations sum to {total:.1f} ms per step, more than the wall time "
                  f"{wall:.1f} ms: the short and long runs did not see the same machine; run again", file=sys.stderr)


if __name__ == "__main__":
    main()
