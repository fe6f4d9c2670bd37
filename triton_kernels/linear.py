"""Dense weight products: the attention projections, the router and the
unembedding (bf16 weights [N, K] row-major, bf16 bias [N], fp32 accumulation).

Contracts (K is a multiple of 32 for every model the runtime loads):
  linear_gemv(x, rows, norm_w, w, b, y, M, N, K, ldy, eps)    grid (cdiv(N, BLOCK_N),)
      Decode and small batches (M <= M_PAD <= 8): x fp32 [*, K] (row stride K);
      input row m is x[rows[m]] if HAS_ROWS else x[m]; with NORM it is first
      RMS-normalised: xhat = x / sqrt(mean(x^2) + eps) * norm_w (norm_w bf16 [K]).
      y[m, n] (= or +=, ACCUMULATE) sum_k w[n, k] xhat[m, k] (+ b[n] if HAS_BIAS),
      y fp32 with row stride ldy. Products and sums in fp32 (no tf32): results
      agree with a float64 reference to ~1e-6 relative. Must stream w at close
      to the memory bandwidth for M = 1 (the decode path).
  linear_gemm(x, w, b, y, M, N, K, ldx, ldy)                  grid (cdiv(M, BLOCK_M), cdiv(N, BLOCK_N))
      Prefill and larger batches: x bf16 [M, K] (row stride ldx), tensor cores
      with fp32 accumulation; y fp32 (ACCUMULATE: +=) or bf16 (OUT_BF16) with
      row stride ldy; HAS_BIAS.

VARIANTS: names "linear_gemv_m{M_PAD}[_norm][_rows][_bias][_acc]" and
"linear_gemm[_bias][_acc][_obf16]"; tile sizes are this file's choice and are
read by the runtime from the manifest (BLOCK_N, BLOCK_M).
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant

VARIANTS = []
