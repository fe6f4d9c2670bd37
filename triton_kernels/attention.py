"""Attention with sinks and sliding windows over the KV cache.

KV cache of one layer (written by elementwise.rope_kv_store): K and V, fp32 or
bf16 (KV_BF16), element d of kv head g of position p of sequence slot s at
[s * seq_stride + (g * capacity + p % capacity) * HD + d]. Query head h uses kv
head h // (NQ // NKV). A query at position p of slot s sees the keys of slot s
at positions lo..p, lo = max(0, p - window + 1) if window > 0 else 0 (all of
them are in the cache: the runtime keeps rings large enough). Scores
q.k * scale; the softmax runs over the keys plus the head's sink logit
(sinks bf16 [NQ]), whose column is then dropped. qkv fp32 [T, qkv_stride]
holds q (heads 0..NQ-1, already rotated) at column h * HD.

Contracts:
  attention_decode(qkv, positions, seqs, k_cache, v_cache, part_ml, part_o,
                   T, qkv_stride, seq_stride, capacity, window, scale, NQ, NKV, HD)
                                              grid (T, NKV, NUM_SPLITS)
      One token and kv head per (t, g); its keys split into NUM_SPLITS
      contiguous ranges (any split of lo..p; a range may be empty). Writes for
      each query head h of the group and split s: part_ml fp32 [T, NQ, NUM_SPLITS, 2]
      = (m, l) with m the split's max score (-inf if empty) and l = sum exp(score - m);
      part_o fp32 [T, NQ, NUM_SPLITS, HD] = sum exp(score - m) v.
  attention_combine(part_ml, part_o, sinks, out, T, NQ, HD, out_stride)
                                              grid (T, NQ)
      out[t, h * HD + d] = sum_s e^(m_s - M) o_s[d] / (e^(sink_h - M) + sum_s e^(m_s - M) l_s),
      M = max(sink_h, m_s); out fp32 or bf16 (OUT_BF16), row stride out_stride.
  attention_prefill(qkv, tiles, k_cache, v_cache, sinks, out, num_tiles, qkv_stride, out_stride,
                    seq_stride, capacity, window, scale, NQ, NKV, HD)
                                              grid (num_tiles, NQ)
      tiles i32 [num_tiles, 4] = (first row, count <= BLOCK_M, seq slot, first
      position): rows first..first+count-1 are tokens of that slot at consecutive
      positions (their keys are in the cache already). Flash attention on the
      tensor cores (bf16 operands, fp32 accumulation and softmax), out as in
      attention_combine (OUT_BF16).

NUM_SPLITS, BLOCK_M and the head-dimension block are variant constexprs the
runtime reads from the manifest.
"""

from __future__ import annotations

import triton
import triton.language as tl

from aot import Variant

VARIANTS = []
