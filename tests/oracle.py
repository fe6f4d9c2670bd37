"""The independent reference: Hugging Face transformers' GptOssForCausalLM on the CPU in fp32.

    from oracle import load_reference, reference_logits
    logits = reference_logits(model_dir, tokens)      # float32 [T, vocab]

Loads a checkpoint in the HF layout with the MXFP4 experts dequantised to fp32
(``Mxfp4Config(dequantize=True)``), eager attention (the implementation that applies the
attention sinks exactly as the model defines them), and fails loudly on anything that would make
the reference silently wrong: missing / unexpected / mismatched tensors (transformers only warns
and random-initialises), parameters or the RoPE buffers not in fp32, a different attention
implementation, YaRN without ``truncate: false``.  Each model directory is loaded once per process
(cache keyed by its real path and the modification times of its config and index).

torch and transformers are imported lazily, so importing this module is cheap.
"""

from __future__ import annotations

import os
import pathlib
import threading
from typing import Union

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

__all__ = ["load_reference", "reference_logits", "clear_cache", "numpy_reference_logits"]

_CACHE: dict = {}
_LOCK = threading.Lock()


def _cache_key(model_dir) -> tuple:
    d = pathlib.Path(model_dir).expanduser().resolve()
    stamps = []
    for name in ("config.json", "model.safetensors.index.json", "model.safetensors"):
        p = d / name
        if p.exists():
            st = p.stat()
            stamps.append((name, st.st_mtime_ns, st.st_size))
    return (str(d), tuple(stamps))


def _load(model_dir: pathlib.Path):
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from transformers import GptOssForCausalLM, Mxfp4Config

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} has no config.json (not an HF-layout checkpoint)")
    model, info = GptOssForCausalLM.from_pretrained(
        str(model_dir),
        dtype=torch.float32,
        quantization_config=Mxfp4Config(dequantize=True),
        attn_implementation="eager",
        output_loading_info=True,
        local_files_only=True,
    )
    problems = {k: v for k, v in info.items() if v}  # missing/unexpected/mismatched/error_msgs
    if problems:
        raise AssertionError(f"transformers did not load {model_dir} cleanly: {problems}")
    model.eval()
    cfg = model.config
    if cfg._attn_implementation != "eager":
        raise AssertionError(f"attention implementation is {cfg._attn_implementation!r}, "
                             f"expected 'eager'")
    bad = [n for n, p in model.named_parameters() if p.dtype != torch.float32]
    bad += [n for n, b in model.named_buffers() if b.is_floating_point() and b.dtype != torch.float32]
    if bad:
        raise AssertionError(f"reference tensors not in fp32: {bad[:5]}")
    rp = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    if rp.get("rope_type") != "yarn" or rp.get("truncate") is not False:
        raise AssertionError(f"unexpected rope parameters {rp!r} (need yarn, truncate=False)")
    return model


def load_reference(model_dir):
    """The transformers reference model for an HF-layout checkpoint directory (eval, fp32)."""
    key = _cache_key(model_dir)
    with _LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = _load(pathlib.Path(key[0]))
            _CACHE[key] = model
    return model


def clear_cache() -> None:
    """Forget all cached reference models (frees their memory)."""
    with _LOCK:
        _CACHE.clear()


def reference_logits(model_or_dir, tokens: Union[list, np.ndarray]) -> np.ndarray:
    """Teacher-forced logits, float32 [T, vocab]: one forward pass over the whole sequence
    (positions 0..T-1, no cache), row t = the prediction after tokens[: t + 1]."""
    import torch

    if isinstance(model_or_dir, (str, os.PathLike)):
        model = load_reference(model_or_dir)
    else:
        model = model_or_dir
    ids = np.asarray(tokens)
    if ids.ndim != 1 or ids.size == 0:
        raise ValueError(f"tokens must be a non-empty 1-D sequence, got shape {ids.shape}")
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"tokens must be integers, got {ids.dtype}")
    vocab = model.config.vocab_size
    if ids.min() < 0 or ids.max() >= vocab:
        raise ValueError(f"token ids must be in [0, {vocab})")
    input_ids = torch.from_numpy(ids.astype(np.int64)).reshape(1, -1)
    with torch.no_grad():
        out = model(input_ids=input_ids, use_cache=False)
    logits = out.logits[0].to(torch.float32).numpy()
    if not np.isfinite(logits).all():
        raise AssertionError("reference logits contain NaN/inf")
    return np.ascontiguousarray(logits)


# ----------------------------------------------------------------------------------------------
# A second, transformers-free reference: float64 numpy, written from docs/gpt-oss-model.md.
# Slow (meant for tiny models and short sequences); used to cross-check the transformers oracle.
# ----------------------------------------------------------------------------------------------

_FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                 -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float64)


def _read_safetensors(path) -> dict:
    """Raw safetensors reader: name -> float64 array (BF16/F32) or uint8 array (U8)."""
    import json
    import struct

    data = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = np.frombuffer(data, dtype=np.uint8, count=e - b, offset=base + b)
        shape = tuple(info["shape"])
        if info["dtype"] == "BF16":
            u = raw.view("<u2").astype(np.uint32) << 16
            out[name] = u.view(np.float32).astype(np.float64).reshape(shape)
        elif info["dtype"] == "F32":
            out[name] = raw.view("<f4").astype(np.float64).reshape(shape)
        elif info["dtype"] == "U8":
            out[name] = raw.reshape(shape).copy()
        else:
            raise ValueError(f"unsupported dtype {info['dtype']} for {name}")
    return out


def _mxfp4(blocks, scales) -> np.ndarray:
    vals = np.empty(blocks.shape[:-1] + (32,), np.float64)
    vals[..., 0::2] = _FP4[blocks & 0x0F]
    vals[..., 1::2] = _FP4[blocks >> 4]
    vals *= np.ldexp(1.0, scales.astype(np.int64) - 127)[..., None]
    return vals.reshape(blocks.shape[:-2] + (-1,))


def _round_bf16(x: np.ndarray) -> np.ndarray:
    """float64 -> float32 -> bf16 (round to nearest even) -> float64."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def numpy_reference_logits(model_dir, tokens, kv_bf16: bool = False) -> np.ndarray:
    """Teacher-forced logits [T, vocab] (float64) of an HF-layout checkpoint, computed in float64
    numpy straight from the formulas in docs/gpt-oss-model.md (no torch, no transformers).
    ``kv_bf16`` rounds every key (after RoPE) and value to bf16, as a bf16 KV cache stores them."""
    import json
    import math

    d = pathlib.Path(model_dir)
    cfg = json.loads((d / "config.json").read_text())
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    w: dict = {}
    for shard in sorted(set(idx["weight_map"].values())):
        w.update(_read_safetensors(d / shard))
    tokens = np.asarray(tokens, dtype=np.int64)
    T = tokens.size
    hd, nq, nkv = cfg["head_dim"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps, K = cfg["rms_norm_eps"], cfg["num_experts_per_tok"]
    limit, alpha = cfg.get("swiglu_limit", 7.0), 1.702

    def rms(x, scale):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * scale

    # YaRN RoPE (truncate: false)
    theta, rs = cfg["rope_theta"], cfg["rope_scaling"]
    factor, l0 = rs["factor"], rs["original_max_position_embeddings"]

    def corr(beta):
        return (hd / 2) * math.log(l0 / (beta * 2 * math.pi)) / math.log(theta)

    low, high = corr(rs["beta_fast"]), corr(rs["beta_slow"])
    i = np.arange(hd // 2)
    extrap = 1.0 / theta ** (2 * i / hd)
    interp = extrap / factor
    mask = 1 - np.clip((i - low) / (high - low), 0, 1)
    inv_freq = interp * (1 - mask) + extrap * mask
    conc = 0.1 * math.log(factor) + 1
    ang = np.arange(T)[:, None] * inv_freq[None]
    cos, sin = (np.cos(ang) * conc)[:, None], (np.sin(ang) * conc)[:, None]

    def rope(x):  # [T, heads, hd], half-split
        x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
        return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)

    qi, kj = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    x = w["model.embed_tokens.weight"][tokens]
    for layer in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        h = rms(x, w[p + "input_layernorm.weight"])
        proj = {n: h @ w[p + f"self_attn.{n}_proj.weight"].T + w[p + f"self_attn.{n}_proj.bias"]
                for n in "qkv"}
        q = rope(proj["q"].reshape(T, nq, hd))
        k = rope(proj["k"].reshape(T, nkv, hd))
        v = proj["v"].reshape(T, nkv, hd)
        if kv_bf16:
            k, v = _round_bf16(k), _round_bf16(v)
        allowed = kj <= qi
        if cfg["layer_types"][layer] == "sliding_attention":
            allowed &= kj > qi - cfg["sliding_window"]
        sinks = w[p + "self_attn.sinks"]
        att = np.empty((T, nq, hd))
        for hh in range(nq):
            kv = hh // (nq // nkv)
            s = np.where(allowed, q[:, hh] @ k[:, kv].T / math.sqrt(hd), -np.inf)
            s = np.concatenate([s, np.full((T, 1), sinks[hh])], 1)
            pr = np.exp(s - s.max(1, keepdims=True))
            pr /= pr.sum(1, keepdims=True)
            att[:, hh] = pr[:, :T] @ v[:, kv]
        x = x + att.reshape(T, -1) @ w[p + "self_attn.o_proj.weight"].T \
            + w[p + "self_attn.o_proj.bias"]
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        logits_r = h @ w[p + "mlp.router.weight"].T + w[p + "mlp.router.bias"]
        e = p + "mlp.experts."
        w1 = _mxfp4(w[e + "gate_up_proj_blocks"], w[e + "gate_up_proj_scales"])  # [E, 2I, H]
        w2 = _mxfp4(w[e + "down_proj_blocks"], w[e + "down_proj_scales"])        # [E, H, I]
        b1, b2 = w[e + "gate_up_proj_bias"], w[e + "down_proj_bias"]
        moe = np.zeros_like(x)
        for t in range(T):
            top = np.argsort(-logits_r[t], kind="stable")[:K]
            g = np.exp(logits_r[t][top] - logits_r[t][top].max())
            g /= g.sum()
            for ex, gw in zip(top, g):
                u = w1[ex] @ h[t] + b1[ex]
                gate, up = np.minimum(u[0::2], limit), np.clip(u[1::2], -limit, limit)
                act = (up + 1) * gate / (1 + np.exp(-alpha * gate))
                moe[t] += gw * (w2[ex] @ act + b2[ex])
        x = x + moe
    x = rms(x, w["model.norm.weight"])
    return x @ w["lm_head.weight"].T
