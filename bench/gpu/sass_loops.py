"""Instruction counts of the compiled kernels' loops, without a GPU: compiles
variants of triton_kernels/ for an architecture (Triton's own ptxas), disassembles
the cubin with the cuobjdump that ships with Triton, and prints every loop (a
backward branch) with its instruction count and mix; with --kb-per-iter, the
count per KB of weights a warp streams per iteration (the figure to hold against
the issue budget: an H200 SM issues ~228 warp instructions in the time its share
of 4.7 TB/s delivers 1 KB).

    python bench/gpu/sass_loops.py moe_mlp1_gemm_m16 [NAME ...] [--arch 90] [--kb-per-iter 1.0]

Used in bench/RESULTS.md for the expert products (run 28's notes).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "triton_kernels"))
import aot  # noqa: E402
import triton  # noqa: E402

CUOBJDUMP = os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "cuobjdump")
_LINE = re.compile(r"\s+/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;")


def disassemble(variant, arch: int):
    cubin, meta = aot.compile_variant(variant, arch)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        text = subprocess.run([CUOBJDUMP, "-sass", path], capture_output=True, text=True, check=True).stdout
    return [(int(m.group(1), 16), m.group(2)) for m in map(_LINE.match, text.splitlines()) if m], meta


def opcode(ins: str) -> str:
    words = ins.split()
    if words and words[0].startswith("@"):  # predicated
        words = words[1:]
    return words[0].split(".")[0] if words else "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("names", nargs="+", help="variant names (as in the manifest)")
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--kb-per-iter", type=float, default=None,
                    help="KB of weights one warp streams per iteration of the main loop (applied to every loop "
                         "printed: read it for the main one)")
    args = ap.parse_args()
    variants = {v.name: v for v in aot.all_variants()}
    for name in args.names:
        if name not in variants:
            sys.exit(f"no variant {name!r}")
        ins, meta = disassemble(variants[name], args.arch)
        print(f"{name} (sm_{args.arch}): {len(ins)} instructions, {meta['shared']} B shared memory")
        for addr, text in ins:
            m = re.search(r"BRA\b.*?(0x[0-9a-f]+)\s*$", text)
            if not m or int(m.group(1), 16) >= addr:
                continue
            body = [t for a, t in ins if int(m.group(1), 16) <= a <= addr]
            mix = collections.Counter(opcode(t) for t in body).most_common(12)
            line = f"  loop {int(m.group(1), 16):#06x}..{addr:#06x}: {len(body)} instructions"
            if args.kb_per_iter:
                line += f" ({len(body) / args.kb_per_iter:.0f} per KB per warp)"
            print(line + "; " + ", ".join(f"{k} {n}" for k, n in mix))


if __name__ == "__main__":
    main()
