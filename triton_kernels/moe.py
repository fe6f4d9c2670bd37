"""The mixture of experts: MXFP4 expert weights (blocks [E, N, K/32, 16] u8,
scales [E, N, K/32] u8 E8M0, bias [E, N] bf16; element k of row n is nibble
(k % 32) % 2 (low first) of byte (k % 32) // 2 of block k // 32, value
FP4[nibble] * 2^(scale - 127), FP4 = [0, .5, 1, 1.5, 2, 3, 4, 6, -0, -.5, -1,
-1.5, -2, -3, -4, -6]). mlp1 has 2I rows, gate and up interleaved (gate =
rows 0::2, up = rows 1::2); swiglu: g = min(gate, limit), u = clamp(up,
-limit, limit), act = (u + 1) * g * sigmoid(alpha * g). mlp2 has H rows.

Contracts (T tokens, K_TOP experts per token, P = T * K_TOP pairs; pair
p = t * K_TOP + j is token t's j-th expert ids[p] with weight weights[p]):
  moe_mlp1_gemv(xn, ids, blocks, scales, bias, act, T, H, I, K_TOP, limit, alpha)
                                                      grid (T * K_TOP, cdiv(2I, BLOCK_N))
      act[p, i] = swiglu(mlp1_{ids[p]}(xn[p // K_TOP]))[i]; xn, act fp32;
      fp32 products (exact decode of the weights), for decode and small T.
  moe_mlp2_gemv(act, ids, weights, blocks, scales, bias, x, T, H, I, K_TOP)
                                                      grid (T, cdiv(H, BLOCK_N))
      x[t, n] += sum_j weights[t, j] * (mlp2_{ids[t, j]}(act[t * K_TOP + j])[n])
      (j in increasing order: deterministic; no atomics).
  Grouped path (prefill, batched decode), tokens grouped by expert:
  moe_sort(ids, P, E, pair_order, pair_pos, tiles, num_tiles)       grid (1,)
      A stable counting sort of the pairs by expert: pair_order[g] = pair at
      grouped position g (pairs of an expert in increasing p), pair_pos[p] = g.
      tiles i32 [max_tiles, 3] = (expert, first grouped row, row count <= BLOCK_M)
      covering every expert's rows, num_tiles[0] = how many;
      max_tiles = cdiv(P, BLOCK_M) + E (the runtime allocates that many).
  moe_mlp1_gemm(xn, pair_order, tiles, num_tiles, blocks, scales, bias, act, H, I, K_TOP, limit, alpha)
                                                      grid (max_tiles, cdiv(2I, BLOCK_N))
      xn bf16 [T, H]; act bf16 [P, I] in grouped order: act[g] = swiglu(mlp1_e(xn[pair_order[g] // K_TOP]));
      programs whose tile index >= num_tiles[0] return at once.
  moe_mlp2_gemm(act, tiles, num_tiles, blocks, scales, bias, y2, H, I)
                                                      grid (max_tiles, cdiv(H, BLOCK_N))
      y2 fp32 [P, H] in grouped order: y2[g] = mlp2_e(act[g]).
  moe_combine(y2, pair_pos, weights, x, T, H, K_TOP)  grid (T, cdiv(H, BLOCK_H))
      x[t] += sum_j weights[t, j] * y2[pair_pos[t * K_TOP + j]] (j increasing).

Router logits come from linear.linear_gemv/gemm (N = E), top-k from
elementwise.topk_softmax. BLOCK_M (moe_sort and the gemm kernels must agree),
BLOCK_N and BLOCK_H are read by the runtime from the manifest.
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant

VARIANTS = []
