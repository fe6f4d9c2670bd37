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


def _dot_scaled() -> None:
    """Triton 3.6's interpreter has no tl.dot_scaled. Emulate the case the kernels use, as the GPU
    lowering on sm_80/90/100 does it: lhs bf16 without scale; rhs e2m1 packed two per byte along K (first
    element in the low nibble) with E8M0 scales [N, K/32]; each FP4 value times its scale formed as a bf16
    (scale byte s -> bf16 bits s << 7, so 0 gives 0 and 255 gives +inf, or NaN without fast_math),
    products summed in float32."""
    import numpy as np
    import triton.language as tl
    import triton.runtime.interpreter as interp
    from triton._C.libtriton import ir

    if getattr(interp.InterpreterBuilder, "_gon_dot_scaled", False):
        return
    fp4 = np.array([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], dtype=np.float64)

    def create_dot_scaled(self, lhs, lhs_scale, lhs_format, rhs, rhs_scale, rhs_format, fast_math, lhs_k_pack,
                          rhs_k_pack, acc):
        fmt = ir.ScaleDotElemTypeTY
        if (lhs_format != fmt.BF16 or lhs_scale is not None or rhs_format != fmt.E2M1 or rhs_scale is None
                or not rhs_k_pack or rhs.data.ndim != 2):
            raise NotImplementedError("interpreter dot_scaled: only bf16 x (e2m1 with scales, packed along K)")
        a = interp._convert_float(lhs.data, tl.bfloat16, tl.float32, None).view(np.float32)
        a = a.reshape(lhs.data.shape).astype(np.float64)
        packed = rhs.data.astype(np.uint8)                                   # [K/2, N]
        vals = fp4[np.stack([packed & 0xF, packed >> 4], axis=1).reshape(-1, packed.shape[1])]   # [K, N]
        s = rhs_scale.data.astype(np.int64)                                  # [N, K/32]
        scale = np.where(s == 0, 0.0, np.where(s == 255, np.inf if fast_math else np.nan, np.ldexp(1.0, s - 127)))
        b = vals * np.repeat(scale.T, 32, axis=0)
        out = (a @ b + acc.data.astype(np.float64)).astype(np.float32)
        return interp.TensorHandle(out, tl.float32)

    interp.InterpreterBuilder.create_dot_scaled = create_dot_scaled
    interp.InterpreterBuilder._gon_dot_scaled = True

    # the interpreter hands the format strings over bare; the semantic layer expects constexprs
    semantic_dot_scaled = interp.TritonSemantic.dot_scaled

    def dot_scaled(self, lhs, lhs_scale, lhs_format, rhs, rhs_scale, rhs_format, *args, **kwargs):
        wrap = lambda f: tl.constexpr(f) if isinstance(f, str) else f
        return semantic_dot_scaled(self, lhs, lhs_scale, wrap(lhs_format), rhs, rhs_scale, wrap(rhs_format), *args,
                                   **kwargs)

    interp.TritonSemantic.dot_scaled = dot_scaled


def kernels() -> types.SimpleNamespace:
    global _NS
    if _NS is None:
        os.environ["TRITON_INTERPRET"] = "1"
        _numpy2_scalar_index()
        _dot_and_bf16_fixes()
        _dot_scaled()
        _fast_device_calls()
        if str(KERNEL_DIR) not in sys.path:
            sys.path.insert(0, str(KERNEL_DIR))
        aot = importlib.import_module("aot")
        _NS = types.SimpleNamespace(**{m: importlib.import_module(m) for m in aot.MODULES}, aot=aot)
    return _NS
