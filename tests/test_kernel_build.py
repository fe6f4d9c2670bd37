"""triton_kernels/build.py gives the same cubins from one build to the next.

Triton's ptxas for sm_100a orders something by address: under address-space
randomization the same PTX came out as different (equivalent, registers
renamed) cubins from one run to the next, so wheels were not reproducible byte
for byte. build.py fixes the address layout of the processes it starts
(fixed_address_layout). Here, in a child process set up the way build.py sets
itself up: three kernels whose sm_100 cubins differed between builds before
are compiled to PTX once and assembled four times each by Triton's ptxas; every
assembly of a kernel must give the same bytes. Needs Triton, not a GPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

KERNEL_DIR = Path(__file__).resolve().parents[1] / "triton_kernels"
KERNELS = ["attention_prefill_d64_f32_of32", "linear_gemm_bias", "linear_gemm_m_bias"]

CHILD = r"""
import hashlib, os, subprocess, sys, tempfile
sys.path.insert(0, sys.argv[1])
import build
if not build.fixed_address_layout():
    print("NO-FIXED-LAYOUT")
    sys.exit(0)
import aot, triton
from triton.backends.compiler import GPUTarget
from triton.backends.nvidia.compiler import get_ptxas
from triton.compiler import ASTSource

ptxas = get_ptxas(100).path
variants = {v.name: v for v in aot.all_variants()}
for name in sys.argv[2].split(","):
    v = variants[name]
    aot.PDL = aot.tl.constexpr(True)  # what compile_variant sets for sm_90 and later
    src = ASTSource(fn=v.kernel, signature=v.full_signature(), constexprs=dict(v.constexprs), attrs=v.attrs())
    ck = triton.compile(src, target=GPUTarget("cuda", 100, 32),
                        options={"num_warps": v.num_warps, "num_stages": v.num_stages, "launch_pdl": True})
    with tempfile.TemporaryDirectory() as tmp:
        ptx = os.path.join(tmp, "k.ptx")
        with open(ptx, "w") as f:
            f.write(ck.asm["ptx"])
        digests = set()
        for i in range(4):
            out = os.path.join(tmp, f"k{i}.cubin")
            subprocess.run([ptxas, "-v", "--gpu-name=sm_100a", ptx, "-o", out], check=True, capture_output=True)
            with open(out, "rb") as f:
                digests.add(hashlib.sha256(f.read()).hexdigest())
    print(name, len(digests), flush=True)
"""


def test_sm100_cubins_are_reproducible(tmp_path):
    pytest.importorskip("triton")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(TRITON_CACHE_DIR=str(tmp_path / "cache"), TRITON_DISABLE_LINE_INFO="1")
    proc = subprocess.run([sys.executable, "-c", CHILD, str(KERNEL_DIR), ",".join(KERNELS)], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    if "NO-FIXED-LAYOUT" in proc.stdout:
        pytest.skip("this system refuses personality(ADDR_NO_RANDOMIZE): builds here are not byte-reproducible")
    counts = dict(line.rsplit(" ", 1) for line in proc.stdout.splitlines() if line.strip())
    assert counts == {name: "1" for name in KERNELS}, proc.stdout
