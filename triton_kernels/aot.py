"""Ahead-of-time compilation of the project's Triton kernels into cubins.

Every kernel module of this folder lists its compiled forms in ``VARIANTS``:
one :class:`Variant` per combination of compile-time choices the C++ runtime
launches. ``build.py`` compiles each variant for each target architecture with
Triton's own compiler and ptxas (no GPU, no CUDA toolkit needed) and writes the
cubins and a manifest that the C++ CUDA backend embeds and checks at load.

Conventions every variant follows (the C++ launchers rely on them):

* ``signature`` lists every run-time argument in order with its Triton type
  (``*fp32``, ``*bf16``, ``*i32``, ``*u8``, ``*u64``, ``i32``, ``i64``,
  ``fp32``); constexprs are given in ``constexprs``. The launch passes exactly
  these arguments, then Triton's two scratch pointers.
* Pointer arguments are always 16-byte aligned (the runtime allocates so) and
  are hinted as such. An integer argument may be hinted divisible by 16 only if
  listed in ``div16``, and the runtime guarantees it for every launch of that
  variant (the C++ side checks before launching).
* A variant's name is unique across all modules; the C++ code names variants,
  never Triton functions.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Sequence, Tuple

import triton
import triton.language as tl

ARCHS = (80, 90, 100)  # sm_80 (Ampere, Ada), sm_90a (Hopper), sm_100a (Blackwell)


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str                      # unique; what the C++ launcher asks for
    kernel: Any                    # the @triton.jit function
    signature: Dict[str, str]      # run-time arguments in order -> Triton type
    constexprs: Dict[str, Any]     # compile-time values
    num_warps: int = 4
    num_stages: int = 2
    div16: Tuple[str, ...] = ()    # integer arguments hinted divisible by 16
    archs: Tuple[int, ...] = ARCHS
    # A hand-written PTX file of this folder instead of a Triton kernel (kernel is None): for what Triton cannot
    # express (calling the driver's device builtins). Assembled by Triton's own ptxas; its entry point has the
    # variant's name and the same parameters as a Triton kernel (the signature, then two unused scratch pointers).
    ptx: str = ""

    def attrs(self) -> dict:
        names = list(self.signature)
        hinted = {}
        for i, n in enumerate(names):
            if self.signature[n].startswith("*") or n in self.div16:
                hinted[(i,)] = [["tt.divisibility", 16]]
        return hinted

    def full_signature(self) -> dict:
        sig = dict(self.signature)
        for k in self.constexprs:
            sig[k] = "constexpr"
        return sig


def compile_variant(v: Variant, arch: int):
    """Compiles one variant for one architecture; returns (cubin bytes, metadata dict)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    for name in v.div16:
        if name not in v.signature or v.signature[name] not in ("i32", "i64"):
            raise ValueError(f"{v.name}: div16 names {name!r}, which is not an integer argument")
    if v.ptx:
        return assemble_ptx(v, arch)
    global PDL
    PDL = tl.constexpr(arch >= 90)  # griddepcontrol needs sm_90; read by pdl_begin when this compile traces it
    src = ASTSource(fn=v.kernel, signature=v.full_signature(), constexprs=dict(v.constexprs), attrs=v.attrs())
    ck = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                        options={"num_warps": v.num_warps, "num_stages": v.num_stages, "launch_pdl": bool(PDL)})
    if bool(PDL) != ("griddepcontrol.wait" in ck.asm["ptx"]):
        raise RuntimeError(f"{v.name} (sm_{arch}): programmatic dependent launch {'on' if PDL else 'off'} but the "
                           "kernel does not match (every kernel must start with pdl_begin())")
    md = ck.metadata
    meta = {
        "function": md.name,
        "num_warps": md.num_warps,
        "num_ctas": md.num_ctas,
        "shared": md.shared,
        "global_scratch_size": md.global_scratch_size,
        "global_scratch_align": md.global_scratch_align,
        "profile_scratch_size": md.profile_scratch_size,
        "launch_pdl": bool(md.launch_pdl),
        "launch_cooperative_grid": bool(md.launch_cooperative_grid),
    }
    return ck.asm["cubin"], meta


def assemble_ptx(v: Variant, arch: int):
    """Assembles a PTX variant with Triton's ptxas (the one its own kernels go through) for one architecture."""
    import os
    import subprocess
    import tempfile
    from pathlib import Path

    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    src = Path(__file__).resolve().parent / v.ptx
    if f".entry {v.name}(" not in src.read_text():
        raise ValueError(f"{v.name}: {v.ptx} has no entry point named {v.name}")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "k.cubin")
        r = subprocess.run([get_ptxas(arch).path, f"--gpu-name={sm_arch_from_capability(arch)}", str(src), "-o", out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{v.name} (sm_{arch}): ptxas failed:\n{r.stderr}")
        cubin = Path(out).read_bytes()
    meta = {"function": v.name, "num_warps": v.num_warps, "num_ctas": 1, "shared": 0, "global_scratch_size": 0,
            "global_scratch_align": 1, "profile_scratch_size": 0, "launch_pdl": False,
            "launch_cooperative_grid": False}
    return cubin, meta


# Programmatic dependent launch. The runtime can launch any kernel with the attribute that lets it start while
# the kernel before it on the stream is finishing (which ones: cuda/kernel_table.hpp pdl_for), so every kernel begins
# with pdl_begin() (or pdl_wait(), with pdl_trigger() later, where its dependents should be placed on the SMs only
# when it ends):
# griddepcontrol.wait (the earlier grid has completed and its writes are visible: nothing of this
# kernel reads or writes activations before it) and griddepcontrol.launch_dependents (the next kernel may be
# scheduled now; its programs wait in their own pdl_begin). A kernel that skipped the wait could finish before its
# predecessor and break the chain, so the compiled form of every kernel has both (compile_variant checks). PDL is
# set by compile_variant for sm_90 and later (griddepcontrol is a Hopper instruction); it stays off elsewhere (the
# interpreter has no griddepcontrol).
PDL = tl.constexpr(False)


@triton.jit
def pdl_begin():
    if PDL:
        tl.extra.cuda.gdc_wait()
        tl.extra.cuda.gdc_launch_dependents()


@triton.jit
def pdl_wait():
    """pdl_begin() without letting the next kernel be scheduled yet: for a short kernel whose dependents should be
    placed on the SMs when it ends (pdl_trigger() at its end; without it, at its exit), not while it starts."""
    if PDL:
        tl.extra.cuda.gdc_wait()


@triton.jit
def pdl_trigger():
    if PDL:
        tl.extra.cuda.gdc_launch_dependents()


# The kernel modules of this folder (imported by name: build.py and the tests put
# this folder first on sys.path; it is a source folder, never an installed package).
MODULES = ("elementwise", "linear", "moe", "moe_mma", "moe_gemm_mma", "attention", "sampling", "loop")


def all_variants() -> Sequence[Variant]:
    """Every variant of every kernel module, checked for unique names."""
    import importlib

    out = []
    seen = set()
    for mod in (importlib.import_module(m) for m in MODULES):
        for v in mod.VARIANTS:
            if v.name in seen:
                raise ValueError(f"duplicate variant name {v.name!r}")
            seen.add(v.name)
            out.append(v)
    return out
