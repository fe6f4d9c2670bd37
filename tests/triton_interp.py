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


def kernels() -> types.SimpleNamespace:
    global _NS
    if _NS is None:
        os.environ["TRITON_INTERPRET"] = "1"
        _numpy2_scalar_index()
        if str(KERNEL_DIR) not in sys.path:
            sys.path.insert(0, str(KERNEL_DIR))
        aot = importlib.import_module("aot")
        _NS = types.SimpleNamespace(**{m: importlib.import_module(m) for m in aot.MODULES}, aot=aot)
    return _NS
