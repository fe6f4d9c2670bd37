"""Decoding gives the same bits with programmatic dependent launch on or off: run as
`GON_CUDA_PDL=... python bench/gpu/pdl_bitwise.py MODEL OUT.npy` under each setting, then
`python bench/gpu/pdl_bitwise.py --compare A.npy B.npy`. A prefill of 50 tokens, then 40 one-token steps
(ctx.process) and 40 sampled tokens in a device loop; saves every step's logits and the loop's tokens."""

from __future__ import annotations

import sys

import numpy as np


def main() -> None:
    if sys.argv[1] == "--compare":
        a, b = np.load(sys.argv[2]), np.load(sys.argv[3])
        same = a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))
        print(f"bitwise {'equal' if same else 'DIFFERENT'}: {a.shape}, max |a - b| {np.max(np.abs(a - b)):.3g}")
        return
    import gpt_oss_native as gon

    m = gon.Model(sys.argv[1], device="cuda", progress=False)
    rng = np.random.default_rng(7)
    tokens = rng.integers(0, min(m.vocab_size, 4000), size=90)
    ctx = gon.Context(m, context_length=256, max_batch_tokens=64, kv_dtype="bf16")
    ctx.append(tokens[:50])
    ctx.process(logits="none")
    rows = []
    for t in range(50, 90):
        ctx.append(int(tokens[t]))
        ctx.process()
        rows.append(ctx.logits_host()[0].astype(np.float32))
    toks, _ = ctx.sample_many(40, temperature=0.0)
    rows.append(np.resize(np.asarray(toks, dtype=np.float32), rows[0].shape))
    np.save(sys.argv[2], np.stack(rows))


if __name__ == "__main__":
    main()
