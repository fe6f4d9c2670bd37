"""Synthetic gpt-oss checkpoints: random weights in the exact layouts of the real releases.

Pure Python + numpy.  Two layouts (see docs/gpt-oss-model.md for the full tensor table):

* ``"hf"``: the Hugging Face layout - ``config.json`` (HF keys, ``quantization_config`` mxfp4),
  ``generation_config.json``, shards ``model-0000N-of-0000M.safetensors`` (each at most
  ``max_shard_bytes``) and ``model.safetensors.index.json``.
* ``"original"``: OpenAI's layout - ``config.json`` with the original keys and one
  ``model.safetensors`` with the ``block.N.*`` names (``attn.qkv`` = cat(q, k, v) on dim 0).
* ``"both"``: the HF layout in OUT and the original layout in OUT/original/ (like the real repos).

Determinism: every logical tensor (q, k, v, ... ; a layer's tensors are distinct from another
layer's) is cut into fixed chunks of ``_CHUNK`` elements (of its flattened row-major data) and
chunk ``i`` is drawn from ``Generator(PCG64(SeedSequence([_STREAM_VERSION, seed, layer + 1 (0
for non-layer tensors), crc32(logical name), i])))``.  So the same seed and config give
bit-identical tensors in both layouts (with the same numpy version), the original qkv is exactly
the concatenation of the HF q, k, v, and chunks can be generated in parallel.

Values: bf16 (round-to-nearest-even from fp32) weights and biases ~ N(0, 0.02), attention sinks
~ N(0, 0.5), norm scales ~ 1 + N(0, 0.05).  MXFP4 expert weights: each nibble is a Gaussian
N(0, 2.0) quantised to FP4 (sign-magnitude, so -0 = code 8 occurs), each 32-block has a
power-of-two scale 2^(s-127) with s in 118..122 (mostly 120 = 2^-7); dequantised std ~ 0.020.

Writing streams: each safetensors header is computed first, then tensors are generated and
written chunk by chunk (a few chunks of <= 8 MB in flight), so memory stays small for any preset.
Everything is written into a hidden temporary directory beside OUT that is renamed to OUT at the
end, so an interrupted write never leaves something that looks like a complete checkpoint.
"""


import argparse
import collections
import concurrent.futures
import copy
import json
import os
import pathlib
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import threading
import zlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence, Union

import numpy as np

try:  # normal case: imported as gpt_oss_native.checkpoint
    from ._progress import Progress, format_bytes
except ImportError:  # imported standalone by file path (package __init__ not importable yet)
    import importlib.util as _ilu

    _spec = _ilu.spec_from_file_location(
        "_gpt_oss_native_progress", pathlib.Path(__file__).with_name("_progress.py"))
    _mod = _ilu.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)  # type: ignore[union-attr]
    Progress, format_bytes = _mod.Progress, _mod.format_bytes

__all__ = [
    "PRESETS", "FP4_VALUES", "model_config", "original_config", "hf_tensor_specs",
    "original_tensor_specs", "write_checkpoint", "main_make_checkpoint",
    "DEFAULT_MAX_SHARD_BYTES", "write_trained_checkpoint", "quantize_mxfp4", "dequantize_mxfp4",
]

# ----------------------------------------------------------------------------------------------
# Configurations
# ----------------------------------------------------------------------------------------------

_DIMS = (
    "num_hidden_layers", "num_local_experts", "num_experts_per_tok", "vocab_size", "hidden_size",
    "intermediate_size", "head_dim", "num_attention_heads", "num_key_value_heads",
    "sliding_window",
)

PRESETS: dict[str, dict] = {
    "tiny": dict(num_hidden_layers=2, num_local_experts=4, num_experts_per_tok=2,
                 vocab_size=201088, hidden_size=128, intermediate_size=64, head_dim=32,
                 num_attention_heads=4, num_key_value_heads=2, sliding_window=16),
    "20b": dict(num_hidden_layers=24, num_local_experts=32, num_experts_per_tok=4,
                vocab_size=201088, hidden_size=2880, intermediate_size=2880, head_dim=64,
                num_attention_heads=64, num_key_value_heads=8, sliding_window=128),
    "120b": dict(num_hidden_layers=36, num_local_experts=128, num_experts_per_tok=4,
                 vocab_size=201088, hidden_size=2880, intermediate_size=2880, head_dim=64,
                 num_attention_heads=64, num_key_value_heads=8, sliding_window=128),
}

_MODULES_TO_NOT_CONVERT = ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                           "model.embed_tokens", "lm_head"]

# Keys of the full HF config that must keep their value (the runtime and transformers assume them).
_FIXED = {
    "model_type": "gpt_oss",
    "architectures": ["GptOssForCausalLM"],
    "tie_word_embeddings": False,
    "attention_bias": True,
    "hidden_act": "silu",
    "quantization_config": {"quant_method": "mxfp4",
                            "modules_to_not_convert": _MODULES_TO_NOT_CONVERT},
}

_DEFAULT_ROPE_SCALING = {
    "rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0,
    "original_max_position_embeddings": 4096, "truncate": False,
}

# Alternative (original-layout) spellings accepted in overrides.
_ALIASES = {"num_experts": "num_local_experts", "experts_per_token": "num_experts_per_tok"}


def _default_layer_types(n: int) -> list[str]:
    return ["sliding_attention" if i % 2 == 0 else "full_attention" for i in range(n)]


def _base_config(preset: str) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    d = PRESETS[preset]
    cfg = {
        "architectures": ["GptOssForCausalLM"],
        "model_type": "gpt_oss",
        "num_hidden_layers": d["num_hidden_layers"],
        "num_local_experts": d["num_local_experts"],
        "num_experts_per_tok": d["num_experts_per_tok"],
        "experts_per_token": d["num_experts_per_tok"],
        "vocab_size": d["vocab_size"],
        "hidden_size": d["hidden_size"],
        "intermediate_size": d["intermediate_size"],
        "head_dim": d["head_dim"],
        "num_attention_heads": d["num_attention_heads"],
        "num_key_value_heads": d["num_key_value_heads"],
        "sliding_window": d["sliding_window"],
        "layer_types": _default_layer_types(d["num_hidden_layers"]),
        "rope_theta": 150000,
        "rope_scaling": dict(_DEFAULT_ROPE_SCALING),
        "max_position_embeddings": 131072,
        "initial_context_length": 4096,
        "rms_norm_eps": 1e-05,
        "swiglu_limit": 7.0,
        "eos_token_id": 200002,
        "pad_token_id": 199999,
        "tie_word_embeddings": False,
        "attention_bias": True,
        "attention_dropout": 0.0,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "output_router_logits": False,
        "router_aux_loss_coef": 0.9,
        "use_cache": True,
        "quantization_config": copy.deepcopy(_FIXED["quantization_config"]),
    }
    return cfg


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _validate(cfg: dict) -> None:
    for k in _DIMS:
        v = cfg[k]
        if not _is_int(v) or v < 1:
            raise ValueError(f"{k} must be a positive integer, got {v!r}")
        cfg[k] = int(v)
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    if H % 32:
        raise ValueError(f"hidden_size must be a multiple of 32 (MXFP4 blocks), got {H}")
    if I % 32:
        raise ValueError(f"intermediate_size must be a multiple of 32 (MXFP4 blocks), got {I}")
    if cfg["head_dim"] % 2:
        raise ValueError(f"head_dim must be even (half-split RoPE), got {cfg['head_dim']}")
    nh, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    if nh % nkv:
        raise ValueError(f"num_attention_heads ({nh}) must be divisible by "
                         f"num_key_value_heads ({nkv})")
    E, k = cfg["num_local_experts"], cfg["num_experts_per_tok"]
    if k > E:
        raise ValueError(f"num_experts_per_tok ({k}) must be <= num_local_experts ({E})")
    if cfg["experts_per_token"] != k:
        raise ValueError(f"experts_per_token ({cfg['experts_per_token']}) must equal "
                         f"num_experts_per_tok ({k})")
    lt = cfg["layer_types"]
    if not isinstance(lt, (list, tuple)) or len(lt) != cfg["num_hidden_layers"]:
        raise ValueError(f"layer_types must be a list of num_hidden_layers="
                         f"{cfg['num_hidden_layers']} entries, got {lt!r}")
    bad = [t for t in lt if t not in ("sliding_attention", "full_attention")]
    if bad:
        raise ValueError(f"layer_types entries must be 'sliding_attention' or 'full_attention', "
                         f"got {bad[0]!r}")
    cfg["layer_types"] = list(lt)
    for key in ("eos_token_id", "pad_token_id"):
        v = cfg[key]
        ids = v if isinstance(v, list) else [v]
        for t in ids:
            if t is None:
                continue
            if not _is_int(t) or not (0 <= t < cfg["vocab_size"]):
                raise ValueError(f"{key}={v!r} must be token ids in [0, vocab_size="
                                 f"{cfg['vocab_size']}); override {key} too when shrinking "
                                 f"the vocabulary")
    for key in ("rope_theta", "rms_norm_eps", "swiglu_limit"):
        if not _is_num(cfg[key]) or cfg[key] <= 0:
            raise ValueError(f"{key} must be a positive number, got {cfg[key]!r}")
    for key in ("max_position_embeddings", "initial_context_length"):
        if not _is_int(cfg[key]) or cfg[key] < 1:
            raise ValueError(f"{key} must be a positive integer, got {cfg[key]!r}")
    rs = cfg["rope_scaling"]
    if not isinstance(rs, dict) or rs.get("rope_type") != "yarn":
        raise ValueError(f"rope_scaling must be a dict with rope_type 'yarn', got {rs!r}")
    for key in ("factor", "beta_fast", "beta_slow"):
        if not _is_num(rs.get(key)) or rs[key] <= 0:
            raise ValueError(f"rope_scaling[{key!r}] must be a positive number, got "
                             f"{rs.get(key)!r}")
    if not _is_int(rs.get("original_max_position_embeddings")) \
            or rs["original_max_position_embeddings"] < 1:
        raise ValueError("rope_scaling['original_max_position_embeddings'] must be a positive "
                         "integer")
    if rs.get("truncate") is not False:
        raise ValueError("rope_scaling['truncate'] must be False (gpt-oss YaRN does not "
                         "truncate; transformers would compute different frequencies)")
    unknown = set(rs) - set(_DEFAULT_ROPE_SCALING)
    if unknown:
        raise ValueError(f"unknown rope_scaling keys {sorted(unknown)}")


def model_config(preset_or_overrides: Union[str, dict, None] = "tiny") -> dict:
    """A full, validated config (HF key names) from a preset name, or from a dict of overrides.

    ``model_config("20b")``; ``model_config({"preset": "tiny", "num_hidden_layers": 3})`` (the
    ``"preset"`` key defaults to ``"tiny"``).  Overrides use HF names; the original spellings
    ``num_experts`` / ``experts_per_token`` are accepted too.  ``layer_types`` is recomputed
    (even layers sliding, odd full) unless given; ``experts_per_token`` follows
    ``num_experts_per_tok``; ``rope_scaling`` overrides are merged into the default.  A config
    previously returned by this function round-trips.  Raises ``ValueError`` for unknown keys
    and invalid values.
    """
    if preset_or_overrides is None:
        preset_or_overrides = "tiny"
    if isinstance(preset_or_overrides, str):
        return _finish(_base_config(preset_or_overrides), {})
    if not isinstance(preset_or_overrides, dict):
        raise ValueError(f"config must be a preset name or a dict, got "
                         f"{type(preset_or_overrides).__name__}")
    over = dict(preset_or_overrides)
    preset = over.pop("preset", "tiny")
    if not isinstance(preset, str):
        raise ValueError(f"preset must be a string, got {preset!r}")
    return _finish(_base_config(preset), over)


def _finish(cfg: dict, over: dict) -> dict:
    # resolve aliases
    norm: dict = {}
    for k, v in over.items():
        canon = _ALIASES.get(k, k)
        if canon in norm and norm[canon] != v:
            raise ValueError(f"conflicting values for {canon}: {norm[canon]!r} and {v!r} "
                             f"(given as {k})")
        if k == "experts_per_token" and "num_experts_per_tok" in over \
                and over["num_experts_per_tok"] != v:
            raise ValueError(f"conflicting values: experts_per_token={v!r}, "
                             f"num_experts_per_tok={over['num_experts_per_tok']!r}")
        norm[canon] = v
    for k, v in norm.items():
        if k not in cfg:
            raise ValueError(f"unknown config key {k!r}; known keys: {sorted(cfg)}")
        if k in _FIXED:
            if v != _FIXED[k]:
                raise ValueError(f"{k} cannot be changed (must be {_FIXED[k]!r}), got {v!r}")
            continue
        if k == "rope_scaling":
            if not isinstance(v, dict):
                raise ValueError(f"rope_scaling must be a dict, got {v!r}")
            merged = dict(cfg["rope_scaling"])
            merged.update(v)
            cfg["rope_scaling"] = merged
            continue
        cfg[k] = copy.deepcopy(v)
    cfg["experts_per_token"] = cfg["num_experts_per_tok"]
    if "layer_types" not in norm:
        n = cfg["num_hidden_layers"]
        if _is_int(n) and n >= 1:
            cfg["layer_types"] = _default_layer_types(int(n))
    _validate(cfg)
    return cfg


def original_config(config: Union[str, dict]) -> dict:
    """The original-layout config.json (OpenAI key names) for a config.

    The original layout has no ``layer_types``: its layers alternate sliding (even) and full
    (odd). A config with other layer types cannot be written in it (``ValueError``).
    """
    cfg = model_config(config)
    if cfg["layer_types"] != _default_layer_types(cfg["num_hidden_layers"]):
        raise ValueError("the original layout cannot express layer_types other than alternating "
                         "sliding (even layers) / full (odd layers); use format='hf'")
    rs = cfg["rope_scaling"]
    return {
        "num_hidden_layers": cfg["num_hidden_layers"],
        "num_experts": cfg["num_local_experts"],
        "experts_per_token": cfg["num_experts_per_tok"],
        "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["hidden_size"],
        "intermediate_size": cfg["intermediate_size"],
        "swiglu_limit": cfg["swiglu_limit"],
        "head_dim": cfg["head_dim"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "sliding_window": cfg["sliding_window"],
        "initial_context_length": cfg["initial_context_length"],
        "rope_theta": cfg["rope_theta"],
        "rope_scaling_factor": rs["factor"],
        "rope_ntk_alpha": rs["beta_slow"],
        "rope_ntk_beta": rs["beta_fast"],
    }


def _generation_config(cfg: dict) -> dict:
    eos = [200002, 199999, 200012]
    eos = [t for t in eos if t < cfg["vocab_size"]] or cfg["eos_token_id"]
    g = {"do_sample": True, "eos_token_id": eos, "pad_token_id": cfg["pad_token_id"]}
    if 199998 < cfg["vocab_size"]:
        g = {"bos_token_id": 199998, **g}
    return g


# ----------------------------------------------------------------------------------------------
# Tensor generation
# ----------------------------------------------------------------------------------------------

FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
              -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)

_STREAM_VERSION = 1
_CHUNK = 1 << 22                 # elements per random stream chunk (fixed: part of the format)
_W_STD = 0.02                    # weights and biases
_SINK_STD = 0.5
_NORM_STD = 0.05
_FP4_SIGMA = 2.0                 # std of the Gaussian quantised to FP4 (units of the block scale)
_SCALE_PROBS = {118: 0.02, 119: 0.18, 120: 0.60, 121: 0.18, 122: 0.02}

DEFAULT_MAX_SHARD_BYTES = 5_000_000_000


def _build_luts() -> tuple[np.ndarray, np.ndarray]:
    # One nibble from 8 random bits: inverse-CDF of N(0, sigma) at (b + 0.5) / 256, quantised to
    # the nearest FP4 magnitude, sign kept (negative values rounding to 0 give code 8 = -0).
    nd = statistics.NormalDist(0.0, _FP4_SIGMA)
    mags = np.array(FP4_VALUES[:8])
    codes = np.empty(256, np.uint8)
    for b in range(256):
        x = nd.inv_cdf((b + 0.5) / 256.0)
        m = int(np.argmin(np.abs(mags - abs(x))))
        codes[b] = m | (8 if x < 0 else 0)
    u = np.arange(65536, dtype=np.uint32)
    lut16 = (codes[u & 0xFF] | (codes[u >> 8] << 4)).astype(np.uint8)
    # Scale byte from 8 random bits.
    scale_lut = np.empty(256, np.uint8)
    pos = 0
    items = sorted(_SCALE_PROBS.items())
    counts = [int(round(p * 256)) for _, p in items]
    counts[len(counts) // 2] += 256 - sum(counts)
    for (s, _), c in zip(items, counts):
        scale_lut[pos:pos + c] = s
        pos += c
    assert pos == 256
    return lut16, scale_lut


_FP4_LUT16, _SCALE_LUT = _build_luts()


def _name_id(logical: str) -> int:
    return zlib.crc32(logical.encode("utf-8")) & 0xFFFFFFFF


@dataclass(frozen=True)
class _Part:
    """One logical tensor (or all of it) with its random stream."""
    layer: int          # -1 for non-layer tensors
    logical: str        # stable logical name, e.g. "attn.q.weight"
    kind: str           # "normal" | "fp4" | "scale"
    numel: int
    mean: float = 0.0
    std: float = 0.0

    def n_chunks(self) -> int:
        return (self.numel + _CHUNK - 1) // _CHUNK

    def make_chunk(self, seed: int, i: int) -> np.ndarray:
        n = min(_CHUNK, self.numel - i * _CHUNK)
        ss = np.random.SeedSequence(
            [_STREAM_VERSION, seed, self.layer + 1, _name_id(self.logical), i])
        rng = np.random.Generator(np.random.PCG64(ss))
        if self.kind == "normal":
            x = rng.standard_normal(n, dtype=np.float32)
            x *= np.float32(self.std)
            if self.mean:
                x += np.float32(self.mean)
            return _f32_to_bf16_bits(x)
        if self.kind == "fp4":
            r = rng.integers(0, 65536, size=n, dtype=np.uint16)
            return np.take(_FP4_LUT16, r)
        if self.kind == "scale":
            r = rng.integers(0, 256, size=n, dtype=np.uint8)
            return np.take(_SCALE_LUT, r)
        raise AssertionError(self.kind)


def _f32_to_bf16_bits(x: np.ndarray) -> np.ndarray:
    """fp32 -> bf16 bit patterns (uint16, little-endian), round to nearest even. No NaNs here."""
    u = x.view(np.uint32)
    t = (u >> 16).astype(np.uint16)
    t &= 1
    t += 0x7FFF
    u += t
    u >>= 16
    return u.astype("<u2")


@dataclass
class _Tensor:
    name: str
    dtype: str                       # "BF16" | "U8"
    shape: tuple
    parts: list = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * (2 if self.dtype == "BF16" else 1)


def _layer_parts(cfg: dict, L: int) -> dict:
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    E, hd = cfg["num_local_experts"], cfg["head_dim"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    W, S = _W_STD, _NORM_STD

    def normal(name, n, std=W, mean=0.0):
        return _Part(L, name, "normal", n, mean, std)

    return {
        "attn.norm": normal("attn.norm.scale", H, S, 1.0),
        "q.w": normal("attn.q.weight", nq * hd * H),
        "q.b": normal("attn.q.bias", nq * hd),
        "k.w": normal("attn.k.weight", nkv * hd * H),
        "k.b": normal("attn.k.bias", nkv * hd),
        "v.w": normal("attn.v.weight", nkv * hd * H),
        "v.b": normal("attn.v.bias", nkv * hd),
        "o.w": normal("attn.out.weight", H * nq * hd),
        "o.b": normal("attn.out.bias", H),
        "sinks": normal("attn.sinks", nq, _SINK_STD),
        "mlp.norm": normal("mlp.norm.scale", H, S, 1.0),
        "gate.w": normal("mlp.gate.weight", E * H),
        "gate.b": normal("mlp.gate.bias", E),
        "mlp1.blocks": _Part(L, "mlp.mlp1_weight.blocks", "fp4", E * 2 * I * (H // 32) * 16),
        "mlp1.scales": _Part(L, "mlp.mlp1_weight.scales", "scale", E * 2 * I * (H // 32)),
        "mlp1.bias": normal("mlp.mlp1_bias", E * 2 * I),
        "mlp2.blocks": _Part(L, "mlp.mlp2_weight.blocks", "fp4", E * H * (I // 32) * 16),
        "mlp2.scales": _Part(L, "mlp.mlp2_weight.scales", "scale", E * H * (I // 32)),
        "mlp2.bias": normal("mlp.mlp2_bias", E * H),
    }


def _global_parts(cfg: dict) -> dict:
    V, H = cfg["vocab_size"], cfg["hidden_size"]
    return {
        "embedding": _Part(-1, "embedding.weight", "normal", V * H, 0.0, _W_STD),
        "unembedding": _Part(-1, "unembedding.weight", "normal", V * H, 0.0, _W_STD),
        "norm": _Part(-1, "norm.scale", "normal", H, 1.0, _NORM_STD),
    }


def _hf_tensors(cfg: dict) -> list:
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    E, hd, V = cfg["num_local_experts"], cfg["head_dim"], cfg["vocab_size"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    g = _global_parts(cfg)
    out = [_Tensor("model.embed_tokens.weight", "BF16", (V, H), [g["embedding"]])]
    for L in range(cfg["num_hidden_layers"]):
        p = _layer_parts(cfg, L)
        pre = f"model.layers.{L}."
        out += [
            _Tensor(pre + "input_layernorm.weight", "BF16", (H,), [p["attn.norm"]]),
            _Tensor(pre + "self_attn.q_proj.weight", "BF16", (nq * hd, H), [p["q.w"]]),
            _Tensor(pre + "self_attn.q_proj.bias", "BF16", (nq * hd,), [p["q.b"]]),
            _Tensor(pre + "self_attn.k_proj.weight", "BF16", (nkv * hd, H), [p["k.w"]]),
            _Tensor(pre + "self_attn.k_proj.bias", "BF16", (nkv * hd,), [p["k.b"]]),
            _Tensor(pre + "self_attn.v_proj.weight", "BF16", (nkv * hd, H), [p["v.w"]]),
            _Tensor(pre + "self_attn.v_proj.bias", "BF16", (nkv * hd,), [p["v.b"]]),
            _Tensor(pre + "self_attn.o_proj.weight", "BF16", (H, nq * hd), [p["o.w"]]),
            _Tensor(pre + "self_attn.o_proj.bias", "BF16", (H,), [p["o.b"]]),
            _Tensor(pre + "self_attn.sinks", "BF16", (nq,), [p["sinks"]]),
            _Tensor(pre + "post_attention_layernorm.weight", "BF16", (H,), [p["mlp.norm"]]),
            _Tensor(pre + "mlp.router.weight", "BF16", (E, H), [p["gate.w"]]),
            _Tensor(pre + "mlp.router.bias", "BF16", (E,), [p["gate.b"]]),
            _Tensor(pre + "mlp.experts.gate_up_proj_blocks", "U8", (E, 2 * I, H // 32, 16),
                    [p["mlp1.blocks"]]),
            _Tensor(pre + "mlp.experts.gate_up_proj_scales", "U8", (E, 2 * I, H // 32),
                    [p["mlp1.scales"]]),
            _Tensor(pre + "mlp.experts.gate_up_proj_bias", "BF16", (E, 2 * I), [p["mlp1.bias"]]),
            _Tensor(pre + "mlp.experts.down_proj_blocks", "U8", (E, H, I // 32, 16),
                    [p["mlp2.blocks"]]),
            _Tensor(pre + "mlp.experts.down_proj_scales", "U8", (E, H, I // 32),
                    [p["mlp2.scales"]]),
            _Tensor(pre + "mlp.experts.down_proj_bias", "BF16", (E, H), [p["mlp2.bias"]]),
        ]
    out += [
        _Tensor("model.norm.weight", "BF16", (H,), [g["norm"]]),
        _Tensor("lm_head.weight", "BF16", (V, H), [g["unembedding"]]),
    ]
    return out


def _original_tensors(cfg: dict) -> list:
    H, I = cfg["hidden_size"], cfg["intermediate_size"]
    E, hd, V = cfg["num_local_experts"], cfg["head_dim"], cfg["vocab_size"]
    nq, nkv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    g = _global_parts(cfg)
    qkv = (nq + 2 * nkv) * hd
    out = [_Tensor("embedding.weight", "BF16", (V, H), [g["embedding"]])]
    for L in range(cfg["num_hidden_layers"]):
        p = _layer_parts(cfg, L)
        pre = f"block.{L}."
        out += [
            _Tensor(pre + "attn.norm.scale", "BF16", (H,), [p["attn.norm"]]),
            _Tensor(pre + "attn.qkv.weight", "BF16", (qkv, H), [p["q.w"], p["k.w"], p["v.w"]]),
            _Tensor(pre + "attn.qkv.bias", "BF16", (qkv,), [p["q.b"], p["k.b"], p["v.b"]]),
            _Tensor(pre + "attn.sinks", "BF16", (nq,), [p["sinks"]]),
            _Tensor(pre + "attn.out.weight", "BF16", (H, nq * hd), [p["o.w"]]),
            _Tensor(pre + "attn.out.bias", "BF16", (H,), [p["o.b"]]),
            _Tensor(pre + "mlp.norm.scale", "BF16", (H,), [p["mlp.norm"]]),
            _Tensor(pre + "mlp.gate.weight", "BF16", (E, H), [p["gate.w"]]),
            _Tensor(pre + "mlp.gate.bias", "BF16", (E,), [p["gate.b"]]),
            _Tensor(pre + "mlp.mlp1_weight.blocks", "U8", (E, 2 * I, H // 32, 16),
                    [p["mlp1.blocks"]]),
            _Tensor(pre + "mlp.mlp1_weight.scales", "U8", (E, 2 * I, H // 32),
                    [p["mlp1.scales"]]),
            _Tensor(pre + "mlp.mlp1_bias", "BF16", (E, 2 * I), [p["mlp1.bias"]]),
            _Tensor(pre + "mlp.mlp2_weight.blocks", "U8", (E, H, I // 32, 16),
                    [p["mlp2.blocks"]]),
            _Tensor(pre + "mlp.mlp2_weight.scales", "U8", (E, H, I // 32), [p["mlp2.scales"]]),
            _Tensor(pre + "mlp.mlp2_bias", "BF16", (E, H), [p["mlp2.bias"]]),
        ]
    out += [
        _Tensor("norm.scale", "BF16", (H,), [g["norm"]]),
        _Tensor("unembedding.weight", "BF16", (V, H), [g["unembedding"]]),
    ]
    return out


def hf_tensor_specs(config: Union[str, dict] = "tiny") -> list:
    """[(name, dtype, shape)] of the HF layout, in file order ("BF16" / "U8")."""
    return [(t.name, t.dtype, t.shape) for t in _hf_tensors(model_config(config))]


def original_tensor_specs(config: Union[str, dict] = "tiny") -> list:
    """[(name, dtype, shape)] of the original layout, in file order."""
    return [(t.name, t.dtype, t.shape) for t in _original_tensors(model_config(config))]


# ----------------------------------------------------------------------------------------------
# safetensors writing
# ----------------------------------------------------------------------------------------------

def _safetensors_header(tensors: Sequence[_Tensor]) -> bytes:
    meta: dict = {"__metadata__": {"format": "pt"}}
    off = 0
    for t in tensors:
        meta[t.name] = {"dtype": t.dtype, "shape": list(t.shape),
                        "data_offsets": [off, off + t.nbytes]}
        off += t.nbytes
    js = json.dumps(meta, separators=(",", ":")).encode("utf-8")
    js += b" " * ((-len(js)) % 8)
    return struct.pack("<Q", len(js)) + js


@dataclass
class _File:
    relpath: str
    tensors: list
    header: bytes = b""

    def __post_init__(self):
        self.header = _safetensors_header(self.tensors)

    @property
    def data_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    @property
    def nbytes(self) -> int:
        return len(self.header) + self.data_bytes


def _shard(tensors: list, max_shard_bytes: int) -> list:
    groups: list = [[]]
    size = 0
    for t in tensors:
        if groups[-1] and size + t.nbytes > max_shard_bytes:
            groups.append([])
            size = 0
        groups[-1].append(t)
        size += t.nbytes
    n = len(groups)
    return [_File(f"model-{i + 1:05d}-of-{n:05d}.safetensors", g) for i, g in enumerate(groups)]


def _plan(cfg: dict, fmt: str, max_shard_bytes: int) -> tuple:
    """(json files {relpath: obj}, safetensors files [_File])."""
    jsons: dict = {}
    files: list = []
    if fmt in ("hf", "both"):
        shards = _shard(_hf_tensors(cfg), max_shard_bytes)
        weight_map = {}
        for f in shards:
            for t in f.tensors:
                weight_map[t.name] = f.relpath
        jsons["config.json"] = cfg
        jsons["generation_config.json"] = _generation_config(cfg)
        jsons["model.safetensors.index.json"] = {
            "metadata": {"total_size": sum(f.data_bytes for f in shards)},
            "weight_map": dict(sorted(weight_map.items())),
        }
        files += shards
    if fmt in ("original", "both"):
        sub = "original/" if fmt == "both" else ""
        jsons[sub + "config.json"] = original_config(cfg)
        files.append(_File(sub + "model.safetensors", _original_tensors(cfg)))
    return jsons, files


def _chunk_jobs(files: list, seed: int) -> Iterator[tuple]:
    for fi, f in enumerate(files):
        for t in f.tensors:
            for part in t.parts:
                for i in range(part.n_chunks()):
                    yield fi, part, i


def _write_files(root: pathlib.Path, files: list, seed: int, prog: Progress,
                 workers: int) -> None:
    total = sum(f.nbytes for f in files)
    done = 0
    prog.update(0, total)
    jobs = _chunk_jobs(files, seed)
    inflight: collections.deque = collections.deque()
    max_inflight = 2 * workers + 2
    cur_fi = -1
    fh = None
    written = 0

    def open_file(fi):
        nonlocal fh, cur_fi, done, written
        close_file()
        cur_fi = fi
        path = root / files[fi].relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "wb")
        fh.write(files[fi].header)
        written = len(files[fi].header)
        done += len(files[fi].header)

    def close_file():
        nonlocal fh
        if fh is not None:
            assert written == files[cur_fi].nbytes, (files[cur_fi].relpath, written)
            fh.close()
            fh = None

    ex = concurrent.futures.ThreadPoolExecutor(max_workers=workers,
                                               thread_name_prefix="ckpt-gen")
    try:
        exhausted = False
        while True:
            while not exhausted and len(inflight) < max_inflight:
                try:
                    fi, part, i = next(jobs)
                except StopIteration:
                    exhausted = True
                    break
                inflight.append((fi, ex.submit(part.make_chunk, seed, i)))
            if not inflight:
                break
            fi, fut = inflight.popleft()
            arr = fut.result()
            while cur_fi < fi:  # also handles (theoretical) files without tensors
                open_file(cur_fi + 1)
            fh.write(memoryview(arr).cast("B"))
            written += arr.nbytes
            done += arr.nbytes
            del arr, fut
            prog.update(done, total)
        while cur_fi < len(files) - 1:
            open_file(cur_fi + 1)
        close_file()
    finally:
        for _, fut in inflight:
            fut.cancel()
        ex.shutdown(wait=True, cancel_futures=True)
        if fh is not None:
            fh.close()


def write_checkpoint(out_dir, config: Union[str, dict] = "tiny", format: str = "hf",
                     seed: int = 0, progress: Union[bool, Callable[[int, int], None]] = True,
                     *, max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
                     overwrite: bool = False, workers: Optional[int] = None,
                     tokenizer: str = "auto") -> pathlib.Path:
    """Write a synthetic checkpoint to ``out_dir`` and return its path.

    ``config``: a preset name ("tiny", "20b", "120b") or an overrides dict for
    :func:`model_config`.  ``format``: "hf", "original" or "both" (HF in out_dir, original in
    out_dir/original).  ``progress``: True prints progress to stderr, a callable receives
    ``(done_bytes, total_bytes)`` instead, False is silent.  ``out_dir`` must not exist or be an
    empty directory unless ``overwrite`` (then an existing directory is replaced once the new
    checkpoint is complete).  ``max_shard_bytes`` caps the data size of each HF shard (a tensor
    larger than the cap gets a shard of its own).  ``workers``: generator threads (default: CPU
    count, at most 8).  ``tokenizer``: the ``tokenizer.json`` written beside the weights (see
    ``_vocab.py``): "real" (o200k_harmony, needs the quicktok-v1 package), "bytes" (the 256 bytes
    and the harmony special tokens), "auto" (real when available, else bytes; none for models whose
    vocabulary is smaller than o200k_harmony's 201088 ids) or "none".
    """
    if tokenizer not in ("auto", "real", "bytes", "none"):
        raise ValueError(f"tokenizer must be 'auto', 'real', 'bytes' or 'none', got {tokenizer!r}")
    if format not in ("hf", "original", "both"):
        raise ValueError(f"format must be 'hf', 'original' or 'both', got {format!r}")
    if not _is_int(seed) or not (0 <= seed < 2 ** 63):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not _is_int(max_shard_bytes) or max_shard_bytes < 1:
        raise ValueError(f"max_shard_bytes must be a positive integer, got {max_shard_bytes!r}")
    seed = int(seed)
    cfg = model_config(config)
    out = _check_out_dir(out_dir, overwrite)

    jsons, files = _plan(cfg, format, max_shard_bytes)
    total = sum(f.nbytes for f in files)
    free = shutil.disk_usage(out.parent).free
    if free < total + (64 << 20):
        raise OSError(f"not enough disk space in {out.parent}: need {format_bytes(total)}, "
                      f"{format_bytes(free)} free")
    if workers is None:
        workers = max(1, min(8, os.cpu_count() or 1))

    if callable(progress):
        prog = Progress("make-checkpoint", total, enabled=False, callback=progress)
    else:
        prog = Progress(f"writing {out.name}", total, enabled=bool(progress))

    def fill(tmp: pathlib.Path) -> None:
        for rel, obj in jsons.items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(json.dumps(obj, indent=2) + "\n")
        with prog:
            _write_files(tmp, files, seed, prog, workers)
        _write_tokenizer(tmp, cfg, tokenizer)

    _commit(out, fill)
    return out


def _check_out_dir(out_dir, overwrite: bool) -> pathlib.Path:
    out = pathlib.Path(out_dir).expanduser().absolute()
    if out.exists():
        if not out.is_dir():
            raise FileExistsError(f"{out} exists and is not a directory")
        if any(out.iterdir()) and not overwrite:
            raise FileExistsError(f"{out} exists and is not empty (pass overwrite=True / "
                                  f"--force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def _commit(out: pathlib.Path, fill: Callable[[pathlib.Path], None]) -> None:
    """Runs fill(tmp) on a hidden temporary directory beside out, then renames it to out
    (replacing what was there), so an interrupted write leaves nothing that looks complete."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        fill(tmp)
        os.chmod(tmp, 0o755)
        if out.exists():
            if any(out.iterdir()):
                old = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
                os.rename(out, old / "x")
                os.rename(tmp, out)
                shutil.rmtree(old, ignore_errors=True)
            else:
                out.rmdir()
                os.rename(tmp, out)
        else:
            os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_tokenizer(root: pathlib.Path, cfg: dict, which: str) -> None:
    from ._vocab import VOCAB_SIZE, write_tokenizer_json

    if which == "none" or (which == "auto" and cfg["vocab_size"] < VOCAB_SIZE):
        return
    if cfg["vocab_size"] < VOCAB_SIZE:
        raise ValueError(f"a tokenizer needs vocab_size >= {VOCAB_SIZE} (o200k_harmony's ids), "
                         f"got {cfg['vocab_size']}")
    write_tokenizer_json(root / "tokenizer.json", real={"auto": None, "real": True, "bytes": False}[which])


# ----------------------------------------------------------------------------------------------
# Trained weights
# ----------------------------------------------------------------------------------------------

_FP4_MAGNITUDES = np.array(FP4_VALUES[:8], dtype=np.float32)


def mxfp4_exponents(w: np.ndarray) -> np.ndarray:
    """The shared exponent of each 32-wide block along the last axis of float32 ``w``: the
    smallest e with max|block| <= 6 * 2^e (exactly, via frexp), clamped to [-127, 127]."""
    w = np.asarray(w, dtype=np.float32)
    blocks = w.reshape(w.shape[:-1] + (w.shape[-1] // 32, 32))
    amax = np.abs(blocks).max(axis=-1) / np.float32(6.0)
    mant, exp = np.frexp(amax)                   # amax/6 = mant * 2^exp, mant in [0.5, 1)
    e = np.where(mant == 0.5, exp - 1, exp)      # ceil(log2(amax / 6))
    e = np.where(amax == 0, -127, e)
    return np.clip(e, -127, 127).astype(np.int32)


def quantize_mxfp4(w: np.ndarray) -> tuple:
    """Float expert weights [..., out, in] (``in`` a multiple of 32) to MXFP4 ``(blocks, scales)``:
    blocks uint8 [..., out, in/32, 16], scales uint8 [..., out, in/32] (E8M0, bias 127), in the
    checkpoint layout (docs/gpt-oss-model.md). Each block's scale is the smallest power of two that
    puts its largest magnitude within 6; each value is rounded to the nearest FP4 value (ties to the
    smaller magnitude). Values already on that grid are represented exactly."""
    w = np.asarray(w, dtype=np.float32)
    if w.ndim < 2 or w.shape[-1] % 32:
        raise ValueError(f"MXFP4 needs a last axis that is a multiple of 32, got shape {w.shape}")
    e = mxfp4_exponents(w)
    blocks = w.reshape(w.shape[:-1] + (w.shape[-1] // 32, 32))
    x = np.abs(blocks) / np.ldexp(np.float32(1.0), e)[..., None].astype(np.float32)
    mid = (_FP4_MAGNITUDES[1:] + _FP4_MAGNITUDES[:-1]) / 2
    mag = np.searchsorted(mid, x, side="left").astype(np.uint8)      # nearest, ties to the smaller
    codes = mag | np.where(np.signbit(blocks) & (mag > 0), 8, 0).astype(np.uint8)
    packed = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    return np.ascontiguousarray(packed), (e + 127).astype(np.uint8)


def dequantize_mxfp4(blocks: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """MXFP4 blocks [..., n, 16] and scales [..., n] back to float32 [..., n * 32]."""
    lut = np.array(FP4_VALUES, dtype=np.float32)
    lo, hi = lut[blocks & 0x0F], lut[blocks >> 4]
    vals = np.stack([lo, hi], axis=-1).reshape(blocks.shape[:-1] + (32,))
    vals = vals * np.ldexp(np.float32(1.0), scales.astype(np.int32) - 127)[..., None].astype(np.float32)
    return vals.reshape(blocks.shape[:-2] + (blocks.shape[-2] * 32,))


class _GivenPart:
    """A tensor's data given as an array (a trained weight) instead of a random stream."""

    def __init__(self, data: np.ndarray):
        self.data = np.ascontiguousarray(data).reshape(-1)

    def n_chunks(self) -> int:
        return (self.data.size + _CHUNK - 1) // _CHUNK

    def make_chunk(self, seed: int, i: int) -> np.ndarray:
        return self.data[i * _CHUNK:(i + 1) * _CHUNK]


def write_trained_checkpoint(out_dir, config: Union[str, dict], tensors: dict, *,
                             tokenizer: Union[None, str, dict, os.PathLike] = None,
                             generation_config: Optional[dict] = None,
                             extra_files: Optional[dict] = None, overwrite: bool = False,
                             max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES) -> pathlib.Path:
    """Write given (trained) tensors as a checkpoint in the Hugging Face layout; return its path.

    ``config``: as for :func:`model_config`.  ``tensors``: every tensor of
    :func:`hf_tensor_specs` by name, nothing else: BF16 ones as float arrays (rounded to bf16,
    nearest even), the MXFP4 ``*_blocks`` / ``*_scales`` as uint8 arrays (see
    :func:`quantize_mxfp4`); shapes must match.  ``tokenizer``: the tokenizer.json document (a
    dict, its text, or a path to copy), or None for none.  ``generation_config``: replaces the
    default generation_config.json.  ``extra_files``: {relative path: str or bytes} written
    beside the weights.  Written atomically like :func:`write_checkpoint`.
    """
    cfg = model_config(config)
    specs = _hf_tensors(cfg)
    names = {t.name for t in specs}
    missing, unknown = sorted(names - set(tensors)), sorted(set(tensors) - names)
    if missing or unknown:
        raise ValueError(f"tensors do not match the config: missing {missing[:5]}, unknown {unknown[:5]}")
    for t in specs:
        a = np.asarray(tensors[t.name])
        if tuple(a.shape) != tuple(t.shape):
            raise ValueError(f"{t.name}: shape {tuple(a.shape)}, the config needs {tuple(t.shape)}")
        if t.dtype == "U8":
            if a.dtype != np.uint8:
                raise ValueError(f"{t.name}: MXFP4 data must be uint8, got {a.dtype}")
            t.parts = [_GivenPart(a)]
        else:
            if a.dtype.kind != "f":
                raise ValueError(f"{t.name}: expected a float array, got {a.dtype}")
            f = np.ascontiguousarray(a, dtype=np.float32).copy()
            if not np.isfinite(f).all():
                raise ValueError(f"{t.name}: not finite")
            t.parts = [_GivenPart(_f32_to_bf16_bits(f.reshape(-1)))]
    out = _check_out_dir(out_dir, overwrite)
    shards = _shard(specs, max_shard_bytes)
    weight_map = {t.name: f.relpath for f in shards for t in f.tensors}
    jsons = {
        "config.json": cfg,
        "generation_config.json": generation_config if generation_config is not None
        else _generation_config(cfg),
        "model.safetensors.index.json": {
            "metadata": {"total_size": sum(f.data_bytes for f in shards)},
            "weight_map": dict(sorted(weight_map.items())),
        },
    }

    def fill(tmp: pathlib.Path) -> None:
        for rel, obj in jsons.items():
            (tmp / rel).write_text(json.dumps(obj, indent=2) + "\n")
        _write_files(tmp, shards, 0, Progress("write", 0, enabled=False), 1)
        if tokenizer is not None:
            if isinstance(tokenizer, dict):
                (tmp / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
            elif isinstance(tokenizer, str) and tokenizer.lstrip().startswith("{"):
                (tmp / "tokenizer.json").write_text(tokenizer, encoding="utf-8")
            else:
                shutil.copyfile(tokenizer, tmp / "tokenizer.json")
        for rel, data in (extra_files or {}).items():
            p = tmp / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(data, bytes):
                p.write_bytes(data)
            else:
                p.write_text(data, encoding="utf-8")

    _commit(out, fill)
    return out


# ----------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------

_CLI_OVERRIDES = [
    ("--layers", "num_hidden_layers", "number of layers"),
    ("--experts", "num_local_experts", "experts per layer"),
    ("--top-k", "num_experts_per_tok", "active experts per token"),
    ("--hidden", "hidden_size", "hidden size (multiple of 32)"),
    ("--intermediate", "intermediate_size", "expert intermediate size (multiple of 32)"),
    ("--heads", "num_attention_heads", "query heads"),
    ("--kv-heads", "num_key_value_heads", "key/value heads"),
    ("--head-dim", "head_dim", "head dimension (even)"),
    ("--sliding-window", "sliding_window", "sliding window of the even layers"),
    ("--vocab", "vocab_size", "vocabulary size"),
]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gpt-oss-native make-checkpoint",
        description="Write a synthetic gpt-oss checkpoint (random weights, real layout).")
    p.add_argument("out", metavar="OUT", help="output directory (must not exist or be empty)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny",
                   help="model size (default: tiny)")
    p.add_argument("--format", choices=["hf", "original", "both"], default="hf",
                   help="hf (default), original, or both (HF in OUT, original in OUT/original)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    for flag, key, help_ in _CLI_OVERRIDES:
        p.add_argument(flag, dest=key, type=int, default=None, metavar="N", help=help_)
    p.add_argument("--window", dest="sliding_window_alias", type=int, default=None,
                   metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=JSON",
                   help="any other HF config override, value parsed as JSON "
                        "(e.g. --set rms_norm_eps=1e-6); repeatable")
    p.add_argument("--max-shard-gb", type=float, default=DEFAULT_MAX_SHARD_BYTES / 1e9,
                   help="maximum HF shard size in GB (default %(default)s)")
    p.add_argument("--tokenizer", choices=["auto", "real", "bytes", "none"], default="auto",
                   help="tokenizer.json beside the weights: real o200k_harmony (needs quicktok-v1), "
                        "bytes (256 byte tokens + specials), auto (default: real when available) "
                        "or none")
    p.add_argument("--force", action="store_true", help="replace OUT if it is not empty")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    return p


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def main_make_checkpoint(argv: Optional[list] = None) -> int:
    """``make-checkpoint [--preset tiny|20b|120b] [--format hf|original|both] [--seed N]
    [--layers N ...] OUT``.  Returns the exit status."""
    p = _parser()
    try:
        args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as e:  # --help or a usage error (argparse already printed it)
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else 2)
    over: dict = {"preset": args.preset}
    for _, key, _ in _CLI_OVERRIDES:
        v = getattr(args, key)
        if v is not None:
            over[key] = v
    if args.sliding_window_alias is not None:
        over["sliding_window"] = args.sliding_window_alias
    for s in args.sets:
        if "=" not in s:
            print(f"make-checkpoint: error: --set expects KEY=JSON, got {s!r}", file=sys.stderr)
            return 2
        k, v = s.split("=", 1)
        try:
            over[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            over[k.strip()] = v
    # SIGTERM -> KeyboardInterrupt, so a terminated write removes its temporary directory too.
    old_term = None
    if threading.current_thread() is threading.main_thread():
        try:
            old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
        except (ValueError, OSError):
            old_term = None
    try:
        path = write_checkpoint(args.out, over, format=args.format, seed=args.seed,
                                progress=not args.quiet,
                                max_shard_bytes=max(1, int(args.max_shard_gb * 1e9)),
                                overwrite=args.force, tokenizer=args.tokenizer)
    except (ValueError, FileExistsError, OSError, RuntimeError) as e:
        print(f"make-checkpoint: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("make-checkpoint: interrupted; nothing written", file=sys.stderr)
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    if not args.quiet:
        cfg = model_config(over)
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        print(f"wrote {args.format} checkpoint (preset {args.preset}, "
              f"{cfg['num_hidden_layers']} layers, {cfg['num_local_experts']} experts, "
              f"seed {args.seed}, {format_bytes(size)}) to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_make_checkpoint())
