"""The CUDA backend against the CPU backend (which tests/test_oracle.py checks
against transformers), on a GPU. Skipped where no usable GPU is present (run
them there with bench/gpu/run.sh); on a machine without one only the tests of
the clear error remain.

Tolerances (decode path: fp32 products from the exact weights; prefill path:
bf16 activations on the tensor cores; KV cache fp32 or bf16):
  * teacher-forced logits, decode path (steps of <= 8 tokens: fp32 products, the
    dense ones of 3-8 rows as fp32 activations in two bf16 parts on the tensor cores):
    max |delta| <= 2e-3 of the logit range with an fp32 KV cache (5e-3 bf16),
    KL(cpu || cuda) per row <= 1e-5 (1e-4), top-1 agreement wherever the CPU's
    top-2 margin exceeds the bound;
  * prefill path (chunks of many tokens: bf16 activations on the tensor cores,
    bf16 attention probabilities): a median row within 1e-2 of the range, every
    row within 0.15 (a near-tied router choice may pick another expert for a
    token, as with any bf16 inference), mean KL <= 2e-3, top-1 agreement on at
    least 95% of the clear rows;
  * greedy decoding of the trained default model: the CPU's tokens.
"""

from __future__ import annotations

import numpy as np
import pytest

import gpt_oss_native as gon
from gpt_oss_native.checkpoint import write_checkpoint

CUDA = gon._core.cuda_usable()
needs_gpu = pytest.mark.skipif(not CUDA, reason="no usable CUDA GPU here (the GPU suite runs on a GPU machine)")


def test_cuda_device_error_or_model(small_model_path):
    """device='cuda' either works or raises BackendUnavailableError saying why; 'auto' always works."""
    if CUDA:
        assert gon.Model(small_model_path, device="cuda").device == "cuda"
    else:
        with pytest.raises(gon.BackendUnavailableError, match="cuda"):
            gon.Model(small_model_path, device="cuda")
    m = gon.Model(small_model_path, device="auto")
    assert m.device == ("cuda" if CUDA else "cpu")
    ctx = gon.Context(m, context_length=32)
    ctx.append([1, 2, 3])
    assert 0 <= ctx.sample(temperature=0.0)[0] < m.vocab_size


MID = dict(preset="tiny", num_hidden_layers=3, num_local_experts=8, num_experts_per_tok=4, hidden_size=256,
           intermediate_size=192, num_attention_heads=8, num_key_value_heads=2, head_dim=64, sliding_window=8,
           vocab_size=3000, eos_token_id=2999, pad_token_id=2998)
ODD = dict(preset="tiny", num_hidden_layers=2, num_local_experts=5, num_experts_per_tok=2, hidden_size=96,
           intermediate_size=64, num_attention_heads=8, num_key_value_heads=1, head_dim=40, sliding_window=5,
           vocab_size=1001, eos_token_id=1000, pad_token_id=999)


@pytest.fixture(scope="module", params=["mid", "odd"])
def pair(request, tmp_path_factory):
    cfg = MID if request.param == "mid" else ODD
    seed = int(np.random.SeedSequence().entropy % (2**31))
    path = write_checkpoint(tmp_path_factory.mktemp(request.param) / "ckpt", cfg, format="hf", seed=seed,
                            progress=False)
    return gon.Model(path, device="cpu"), gon.Model(path, device="cuda"), f"{request.param} seed={seed}"


def _logits(model, tokens, batch, kv_dtype):
    ctx = gon.Context(model, context_length=256, max_batch_tokens=batch, logits_capacity=len(tokens),
                      kv_dtype=kv_dtype)
    ctx.append(tokens)
    ctx.process(logits="all")
    return ctx.logits_host().astype(np.float64)


def _compare(cpu, gpu, rel_tol, kl_tol, info, loose=False, flips=0, pct=95):
    """loose: the prefill path's statistics (median row, the pct-th percentile row, mean KL, top-1 agreement of at
    least pct %) instead of the worst row."""
    assert np.isfinite(gpu).all(), info
    span = cpu.max() - cpu.min()
    rows = np.abs(cpu - gpu).max(1) / span
    rel = rows.max()
    p = np.exp(cpu - cpu.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    lq = gpu - gpu.max(1, keepdims=True)
    lq -= np.log(np.exp(lq).sum(1, keepdims=True))
    lp = np.log(np.maximum(p, 1e-300))
    kls = (p * (lp - lq)).sum(1)
    kl = kls.mean() if loose else kls.max()
    top2 = np.sort(cpu, 1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * rel_tol * span
    agree = (cpu.argmax(1) == gpu.argmax(1))[clear].mean() if clear.any() else 1.0
    print(f"{info}: max|d|/range {rel:.2e} (median row {np.median(rows):.2e}), KL {'mean' if loose else 'max'} "
          f"{kl:.2e}, top-1 agreement {agree:.3f} ({clear.sum()} clear rows)")
    if loose:
        # bf16 activations: a row whose router has a near tie may pick another expert and part by a tenth of the
        # range or more (seen: 0.167 on one row of 180), so the bound is on the median and a high percentile,
        # with the worst row only kept from garbage
        assert np.median(rows) <= rel_tol and np.percentile(rows, pct) <= 5 * rel_tol and rel <= 0.5, \
            f"{info}: rows {np.sort(rows)[-5:]}"
        assert kl <= kl_tol, f"{info}: mean KL = {kl:.3g}"
        assert agree >= pct / 100, info
    else:
        # flips: rows that may leave the bound (to at most 0.15 of the range) because the router's top-k had a
        # near tie that the other backend broke the other way; every other row holds the strict bounds
        out = rows > rel_tol
        assert out.sum() <= flips and rel <= 0.15, f"{info}: max |delta| / range = {rel:.3g}, rows {np.sort(rows)[-5:]}"
        assert kls[~out].max(initial=0.0) <= kl_tol, f"{info}: KL = {kls[~out].max(initial=0.0):.3g}"
        assert agree == 1.0, info


@needs_gpu
@pytest.mark.parametrize("kv_dtype", ["fp32", "bf16"])
def test_teacher_forced_decode_path(pair, rng, kv_dtype):
    cpu_model, gpu_model, info = pair
    tokens = rng.integers(0, cpu_model.vocab_size, size=60)
    cpu = _logits(cpu_model, tokens, 4, kv_dtype)
    gpu = _logits(gpu_model, tokens, 4, kv_dtype)  # steps of 4 tokens: the fp32 gemv path, graphs
    # bf16 KV: where the two backends' fp32 keys differ in the last bits, a key can round to another bf16, which moves
    # the router logits by ~1e-3 of their scale: enough to break a near tie of the top-k the other way now and then
    # (GPU run 27: 5.3e-2 of the range on one row of 60, median row 6.7e-5, top-1 still agreeing); one such row is
    # allowed, the others hold the bounds
    _compare(cpu, gpu, 2e-3 if kv_dtype == "fp32" else 5e-3, 1e-5 if kv_dtype == "fp32" else 1e-4,
             f"{info} decode {kv_dtype}", flips=0 if kv_dtype == "fp32" else 1)


@needs_gpu
def test_teacher_forced_prefill_path(pair, rng):
    cpu_model, gpu_model, info = pair
    tokens = rng.integers(0, cpu_model.vocab_size, size=200)
    cpu = _logits(cpu_model, tokens, 100, "fp32")
    gpu = _logits(gpu_model, tokens, 100, "bf16")  # chunks of 100: tensor cores, tiled attention
    _compare(cpu, gpu, 1e-2, 2e-3, f"{info} prefill", loose=True)


@needs_gpu
def test_prefill_then_decode_equals_one_prefill(pair, rng):
    _, gpu_model, info = pair
    tokens = rng.integers(0, gpu_model.vocab_size, size=90)
    whole = _logits(gpu_model, tokens, 90, "bf16")
    ctx = gon.Context(gpu_model, context_length=256, max_batch_tokens=64, kv_dtype="bf16")
    # 40 decode steps, bounds on the 90th percentile row and 90% top-1 agreement: about one row in 50 parts by a
    # tenth of the range on these random models (a router near tie broken the other way by the bf16 prefill, the
    # same with either decode path: NOTES run 39), so 20 rows under a 95th-percentile bound failed whenever two did
    ctx.append(tokens[:50])
    ctx.process(logits="none")
    rows = []
    for t in range(50, 90):
        ctx.append(int(tokens[t]))
        ctx.process()
        rows.append(ctx.logits_host()[0].astype(np.float64))
    _compare(whole[50:], np.stack(rows), 1e-2, 2e-3, f"{info} prefill+decode", loose=True, pct=90)


@needs_gpu
def test_batched_decode_equals_each_alone():
    """Four sequences of different prompt lengths decoded together (steps of 1 to 4 rows as they join and leave)
    give the greedy tokens of each decoded alone. On the trained default model (clear margins): a random model's
    near ties in its experts' choice would let the 4-row steps (fp32 activations as two bf16 parts on the tensor
    cores, ~1e-5 of a row's scale) and the one-row steps (fp32) part ways."""
    from gpt_oss_native._default import default_model_path, default_prompt

    model = gon.Model(default_model_path(), device="cuda")
    full = model.tokenizer.encode(default_prompt(), allowed_special="all")
    prompts = [full[:n] for n in (3, 11, len(full), 7)]
    engine = gon.Engine(model, max_sequences=4, context_length=160, max_batch_tokens=64, text=False)
    reqs = [engine.submit(p, max_tokens=48 + 8 * i, temperature=0.0, default_stop_tokens=False)
            for i, p in enumerate(prompts)]
    engine.run()
    for p, r in zip(prompts, reqs):
        ctx = gon.Context(model, context_length=160)
        ctx.append(p)
        alone = [ctx.sample(temperature=0.0)[0] for _ in range(len(r.tokens))]
        same = next((i for i, (a, b) in enumerate(zip(r.tokens, alone)) if a != b), len(alone))
        assert same == len(alone) and len(alone) >= 48, f"prompt of {len(p)}: first difference at step {same}"


@needs_gpu
def test_logits_dlpack_is_a_cuda_tensor(pair, rng):
    import torch

    _, gpu_model, _ = pair
    ctx = gon.Context(gpu_model, context_length=32)
    ctx.append(rng.integers(0, gpu_model.vocab_size, size=5))
    ctx.process()
    t = torch.from_dlpack(ctx.logits)
    assert t.is_cuda and t.shape == (1, gpu_model.vocab_size)
    np.testing.assert_array_equal(t.cpu().numpy(), ctx.logits_host())


@needs_gpu
def test_out_of_memory_is_clear_and_recoverable(pair):
    _, gpu_model, _ = pair
    with pytest.raises(gon.OutOfMemoryError):
        gon.Engine(gpu_model, max_sequences=65536, context_length=131072, text=False)
    ctx = gon.Context(gpu_model, context_length=32)  # still usable
    ctx.append([1, 2, 3])
    assert 0 <= ctx.sample(temperature=0.0)[0] < gpu_model.vocab_size


@needs_gpu
@pytest.mark.parametrize("kv_dtype", ["fp32", "bf16"])
def test_greedy_decoding_of_the_trained_default_model_matches_the_cpu(kv_dtype):
    # The embedded default model is trained (clear top-1 margins), so the decode path's fp32 products give the
    # CPU's greedy tokens; 256 steps without stopping at its end-of-reply tokens.
    from gpt_oss_native._default import default_model_path, default_prompt

    path = default_model_path()
    tokens = {}
    for device in ("cpu", "cuda"):
        model = gon.Model(path, device=device)
        prompt = model.tokenizer.encode(default_prompt(), allowed_special="all")
        ctx = gon.Context(model, context_length=len(prompt) + 264, kv_dtype=kv_dtype)
        ctx.append(prompt)
        tokens[device] = [ctx.sample(temperature=0.0)[0] for _ in range(256)]
    same = next((i for i, (a, b) in enumerate(zip(tokens["cpu"], tokens["cuda"])) if a != b), 256)
    assert same == 256, f"{kv_dtype}: first difference at step {same}"


@needs_gpu
@pytest.mark.parametrize("temperature,top_p", [(0.0, 1.0), (0.8, 1.0), (1.0, 0.9)])
def test_device_loop_gives_the_tokens_of_single_steps(pair, rng, temperature, top_p):
    """Context.sample_many on CUDA runs its steps as one WHILE conditional graph node (one launch for many tokens):
    the same tokens and logprobs as that many sample() calls with the same seed, bitwise (the loop's body is the
    same captured step); the cache it leaves is that of single steps; a stop token and the end of the context end
    it."""
    _, gpu_model, info = pair
    prompt = rng.integers(0, gpu_model.vocab_size, size=int(rng.integers(3, 40)))
    seed = int(rng.integers(0, 2**63))
    n = 100
    args = dict(temperature=temperature, top_p=top_p, seed=seed)
    ref = gon.Context(gpu_model, context_length=256)
    ref.append(prompt)
    steps = [ref.sample(**args) for _ in range(n)]
    ctx = gon.Context(gpu_model, context_length=256)
    ctx.append(prompt)
    ids, lps = ctx.sample_many(n, **args)
    assert ids.dtype == np.int32 and lps.dtype == np.float32
    assert ids.tolist() == [t for t, _ in steps], info
    np.testing.assert_array_equal(lps, np.array([lp for _, lp in steps], np.float32), err_msg=info)
    np.testing.assert_array_equal(ctx.tokens, ref.tokens)
    assert ctx.num_processed == ref.num_processed
    assert ctx.sample(**args) == ref.sample(**args)  # the cache the loop left is that of single steps

    stop = int(ids[37])
    extra = gpu_model.vocab_size - 1
    first = next(i for i, t in enumerate(ids.tolist()) if t in (stop, extra))
    ctx = gon.Context(gpu_model, context_length=256)
    ctx.append(prompt)
    ids2, _ = ctx.sample_many(n, stop_tokens=[extra, stop], **args)
    assert ids2.tolist() == ids[: first + 1].tolist(), info
    assert ctx.num_tokens == len(prompt) + first + 1

    ctx = gon.Context(gpu_model, context_length=len(prompt) + 10)
    ctx.append(prompt)
    assert ctx.sample_many(n, **args)[0].tolist() == ids[:10].tolist()
    with pytest.raises(gon.ContextOverflowError):
        ctx.sample_many(1, **args)


@needs_gpu
def test_streamed_generation_in_device_loops_matches_single_steps():
    """Model.generate on CUDA samples in device loops of 16 tokens and accepts them into the context one piece at a
    time: the tokens, text and logprobs of sampling one by one; a stop string ends it with the context holding
    exactly the tokens returned; leaving the iteration early leaves the context at the pieces taken."""
    from gpt_oss_native._default import default_model_path, default_prompt

    model = gon.Model(default_model_path(), device="cuda")
    prompt = model.tokenizer.encode(default_prompt(), allowed_special="all")
    seed = int(np.random.SeedSequence().entropy % (2**63))
    ref = gon.Context(model, context_length=len(prompt) + 200)
    ref.append(prompt)
    steps = [ref.sample(temperature=0.9, seed=seed) for _ in range(150)]
    want = [t for t, _ in steps]

    ctx = gon.Context(model, context_length=len(prompt) + 200)
    ctx.append(prompt)
    gen = ctx.generate(max_tokens=150, temperature=0.9, seed=seed, default_stop_tokens=False, return_tokens=True)
    chunks = list(gen)
    assert gen.tokens == want
    np.testing.assert_array_equal(np.array(gen.logprobs, np.float32), np.array([lp for _, lp in steps], np.float32))
    assert ctx.tokens.tolist() == prompt + want
    text = model.tokenizer.decode(want)
    assert "".join(c.text for c in chunks) == text

    # a stop string in the middle of a chunk: the context holds the tokens up to it, and goes on from there
    cut = len(model.tokenizer.decode(want[:41]))
    stop = text[cut - 3: cut]
    assert stop
    ctx = gon.Context(model, context_length=len(prompt) + 200)
    ctx.append(prompt)
    gen = ctx.generate(max_tokens=150, temperature=0.9, seed=seed, stop=stop, default_stop_tokens=False)
    out = "".join(gen)
    assert gen.finish_reason == "stop_string" and out == text[: text.index(stop)]
    assert ctx.tokens.tolist() == prompt + gen.tokens
    assert ctx.sample(temperature=0.9, seed=seed)[0] == want[len(gen.tokens)]

    ctx = gon.Context(model, context_length=len(prompt) + 200)
    ctx.append(prompt)
    gen = iter(ctx.generate(max_tokens=150, temperature=0.9, seed=seed, default_stop_tokens=False,
                            return_tokens=True))
    assert [next(gen).token for _ in range(21)] == want[:21]
    assert ctx.num_tokens == len(prompt) + 21  # the rest of the chunk stays ahead of the context
    ctx.append([want[21]])  # the context changed: the tokens ahead are dropped
    assert ctx.tokens.tolist() == prompt + want[:22]
    assert ctx.sample(temperature=0.9, seed=seed)[0] == want[22]
