"""Runs the project's Triton kernels (triton_kernels/) on the CPU with Triton's
interpreter, for the kernel tests: same code as the cubins, checked against
float64 references on machines without a GPU (CI included).

    from triton_interp import kernels
    k = kernels()                       # module namespace: k.elementwise.rmsnorm, ...
    k.elementwise.rmsnorm[(R,)](x, rows, w, y, R, H, eps, HAS_ROWS=0, OUT_BF16=0, BLOCK_H=64)

TRITON_INTERPRET must be set before the kernel modules are imported (the
@triton.jit decorator reads it), so they are imported here, once, under their
own names from the repository's triton_kernels/ folder.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
from pathlib import Path

KERNEL_DIR = Path(__file__).resolve().parents[1] / "triton_kernels"

_NS = None


def _numpy2_scalar_index() -> None:
    """Triton 3.6's interpreter turns scalar tensors into Python ints with
    int(array), which NumPy >= 2.4 refuses for a 1-element 1-D array (loop bounds
    from run-time arguments hit it). Convert through the element instead."""
    import numpy as np
    import triton.runtime.interpreter as interp

    original = interp._patch_lang_tensor
    if getattr(original, "_gon_patched", False):
        return

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(np.asarray(self.handle.data).reshape(-1)[0]))

    patched._gon_patched = True
    interp._patch_lang_tensor = patched


def _dot_and_bf16_fixes() -> None:
    """Triton 3.6's interpreter keeps bf16 values as their uint16 bit patterns but
    (1) tl.dot multiplies those bit patterns as integers, and (2) fp32 -> bf16
    casts truncate, where the GPU (cvt.rn.bf16.f32) rounds to nearest even.
    Make both do what the compiled kernels do. Float products also go through
    einsum rather than BLAS: on these small shared machines a BLAS call after
    a pause costs ~150 ms (its threads wake up), einsum well under 1 ms."""
    import numpy as np
    import triton.language as tl
    import triton.runtime.interpreter as interp

    builder = interp.InterpreterBuilder
    if getattr(builder, "_gon_bf16", False):
        return

    def widen(h):
        if h.dtype.scalar == tl.bfloat16:
            return (h.data.astype(np.uint32) << 16).view(np.float32)
        return h.data.astype(np.float32)

    original_dot = builder.create_dot
    floats = (tl.bfloat16, tl.float16, tl.float32)

    def create_dot(self, a, b, d, input_precision, max_num_imprecise_acc):
        if a.dtype.scalar in floats and b.dtype.scalar in floats and d.data.dtype == np.float32:
            spec = "ij,jk->ik" if a.data.ndim == 2 else "bij,bjk->bik"
            out = np.einsum(spec, widen(a), widen(b)).astype(np.float32) + d.data
            return interp.TensorHandle(out, d.dtype.scalar)
        return original_dot(self, a, b, d, input_precision, max_num_imprecise_acc)

    original_cast = builder.cast_impl

    def cast_impl(self, src, dst_type):
        if dst_type.scalar == tl.bfloat16 and src.dtype.scalar == tl.float32:
            bits = np.ascontiguousarray(src.data, dtype=np.float32).view(np.uint32)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            nan = (bits & 0x7FFFFFFF) > 0x7F800000
            rounded = np.where(nan, ((bits >> 16) | 0x40).astype(np.uint16), rounded)
            return interp.TensorHandle(rounded, tl.bfloat16)
        return original_cast(self, src, dst_type)

    builder.create_dot = create_dot
    builder.cast_impl = cast_impl
    builder.create_fp_trunc = lambda self, src, dst_type: self.cast_impl(src, dst_type)
    builder._gon_bf16 = True


def _fast_device_calls() -> None:
    """Each call of a @triton.jit helper from a kernel re-patches triton.language
    (about 2 ms: it walks the modules' members), although the kernel's launch
    has patched it already (and restores it when the grid is done). While a grid
    runs, patch each language module (triton.language, triton.language.core)
    once; helpers then cost what inlined code costs."""
    import inspect

    import triton.language as tl
    import triton.runtime.interpreter as interp

    if getattr(interp.InterpretedFunction, "_gon_fast", False):
        return
    active = []  # one set of patched module ids per running grid

    def langs(fn):
        return {id(v) for v in fn.__globals__.values() if inspect.ismodule(v) and v in (tl, tl.core)}

    grid_call = interp.GridExecutor.__call__

    def run_grid(self, *args, **kwargs):
        active.append(langs(self.fn))
        try:
            return grid_call(self, *args, **kwargs)
        finally:
            active.pop()

    def device_call(self, *args, **kwargs):
        need = langs(self.fn)
        if not active or not need <= active[-1]:
            interp._patch_lang(self.fn)
            if active:
                active[-1] |= need
        fn = self.rewrite()
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            raise interp.InterpreterError(repr(e)) from e

    interp.GridExecutor.__call__ = run_grid
    interp.InterpretedFunction.__call__ = device_call
    interp.InterpretedFunction._gon_fast = True


def kernels() -> types.SimpleNamespace:
    global _NS
    if _NS is None:
        os.environ["TRITON_INTERPRET"] = "1"
        _numpy2_scalar_index()
        _dot_and_bf16_fixes()
        _fast_device_calls()
        if str(KERNEL_DIR) not in sys.path:
            sys.path.insert(0, str(KERNEL_DIR))
        aot = importlib.import_module("aot")
        _NS = types.SimpleNamespace(**{m: importlib.import_module(m) for m in aot.MODULES}, aot=aot)
    return _NS
