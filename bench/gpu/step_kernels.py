"""The kernels of one decoding step as the captured graph runs them, each timed
by Nsight Compute (its graph nodes profiled one by one: the kernels' own
durations, without launch gaps or overlap), summed per kernel name.

    ncu --graph-profiling node --clock-control none --metrics gpu__time_duration.sum \
        --nvtx --nvtx-include "gon_step/" --csv --log-file OUT.csv \
        python bench/gpu/step_kernels.py MODEL [--batch 1] [--prompt 1024]
    python bench/gpu/step_kernels.py --table OUT.csv

The first form decodes after a prompt and marks the last step with an NVTX range
(the only one ncu profiles); --table prints the step's kernels from ncu's CSV:
per kernel and grid the launches, the total and mean microseconds, and the share of the sum.
"""

from __future__ import annotations

import argparse
import collections
import csv
import sys


def table(path: str) -> None:
    rows = collections.OrderedDict()
    with open(path) as f:
        lines = [ln for ln in f if ln.startswith('"')]
    for r in csv.DictReader(lines):
        if r.get("Metric Name") != "gpu__time_duration.sum":
            continue
        scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}[r["Metric Unit"]]
        us = float(r["Metric Value"].replace(",", "")) * scale
        name = f'{r["Kernel Name"]} {r["Grid Size"].replace(" ", "")}'  # one row per kernel and grid
        n, t = rows.get(name, (0, 0.0))
        rows[name] = (n + 1, t + us)
    total = sum(t for _, t in rows.values())
    print(f"{'kernel (grid)':<52} {'calls':>6} {'total us':>10} {'us/call':>9} {'share':>6}")
    for name, (n, t) in sorted(rows.items(), key=lambda kv: -kv[1][1]):
        print(f"{name[:52]:<52} {n:>6} {t:>10.1f} {t / n:>9.2f} {100 * t / total:>5.1f}%")
    print(f"{'sum':<52} {sum(n for n, _ in rows.values()):>6} {total:>10.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", nargs="?")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--prompt", type=int, default=1024)
    ap.add_argument("--table", default=None)
    args = ap.parse_args()
    if args.table:
        table(args.table)
        return
    import torch  # NVTX ranges
    import gpt_oss_native as gon
    from gpt_oss_native.bench import random_prompt

    m = gon.Model(args.model, device="cuda", progress=False)
    if args.batch != 1:
        sys.exit("only --batch 1 for now")
    ctx = gon.Context(m, context_length=args.prompt + 16, max_batch_tokens=512)
    ctx.append(random_prompt(m, args.prompt))
    ctx.process(logits="none")
    for _ in range(2):  # the step's graph is captured by the first
        ctx.sample(temperature=0.0)
    ctx.synchronize()
    torch.cuda.nvtx.range_push("gon_step")
    ctx.sample(temperature=0.0)
    ctx.synchronize()
    torch.cuda.nvtx.range_pop()
    print("ok")


if __name__ == "__main__":
    main()
