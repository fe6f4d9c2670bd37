"""Runs the project's Triton kernels (triton_kernels/) on the CPU with Triton's
interpreter, for the kernel tests: same code as the cubins, checked against
float64 references on machines without a GPU (CI included).

    from triton_interp import kernels
    k = kernels()                       # module namespace: k.elementwise.rmsnorm, ...
    k.elementwise.rmsnorm[(R,)](x, rows, w, y, R, H, eps, HAS_ROWS=0, OUT_BF16=0, BLOCK_H=64)

TRITON_INTERPRET must be set before the kernel modules are imported (the
@triton.jit decorator reads it), so they are imported here, once, under their
own names from the repository's triton_kernels/ folder.

Triton 3.6's interpreter is patched where it departs from the GPU: scalar
indices under NumPy >= 2.4, tl.dot on bf16 operands (it multiplied the bit
patterns), float32 -> bf16 rounding (it truncated) and tl.dot_scaled (missing;
emulated for the bf16 x MXFP4 case the MoE kernels use).
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


def _bf16_dot() -> None:
    """Triton 3.6's interpreter keeps bf16 tensors as their uint16 bit patterns and
    multiplies those in tl.dot. Widen bf16 operands to float32 first (exact), as the
    tensor cores do; the float32 accumulation is unchanged."""
    import numpy as np
    import triton.language as tl
    import triton.runtime.interpreter as interp

    original = interp.InterpreterBuilder.create_dot
    if getattr(original, "_gon_patched", False):
        return

    def widen(h):
        if h.dtype.scalar == tl.bfloat16:
            data = interp._convert_float(h.data, tl.bfloat16, tl.float32, None).view(np.float32)
            return interp.TensorHandle(data.reshape(h.data.shape), tl.float32)
        return h

    def patched(self, a, b, d, input_precision, max_num_imprecise_acc):
        return original(self, widen(a), widen(b), d, input_precision, max_num_imprecise_acc)

    patched._gon_patched = True
    interp.InterpreterBuilder.create_dot = patched


def _bf16_round() -> None:
    """Triton 3.6's interpreter truncates float32 -> bf16 conversions (x.to(tl.bfloat16));
    the GPU rounds to nearest even. Round the same way here (NaN stays NaN)."""
    import numpy as np
    import triton.language as tl
    import triton.runtime.interpreter as interp

    original = interp.InterpreterBuilder.cast_impl
    if getattr(original, "_gon_patched", False):
        return

    def patched(self, src, dst_type):
        if src.dtype.scalar == tl.float32 and dst_type.scalar == tl.bfloat16:
            bits = np.ascontiguousarray(src.data, dtype=np.float32).view(np.uint32).astype(np.uint64)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
            nan = np.isnan(src.data)
            rounded[nan] = ((bits[nan] >> 16) | 0x40).astype(np.uint16)
            return interp.TensorHandle(rounded, tl.bfloat16)
        return original(self, src, dst_type)

    patched._gon_patched = True
    interp.InterpreterBuilder.cast_impl = patched
    interp.InterpreterBuilder.create_fp_trunc = lambda self, src, dst_type: self.cast_impl(src, dst_type)


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
        _bf16_dot()
        _bf16_round()
        _dot_scaled()
        if str(KERNEL_DIR) not in sys.path:
            sys.path.insert(0, str(KERNEL_DIR))
        aot = importlib.import_module("aot")
        _NS = types.SimpleNamespace(**{m: importlib.import_module(m) for m in aot.MODULES}, aot=aot)
    return _NS
