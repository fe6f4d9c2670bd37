"""Bad input raises the package's own exceptions with a useful message, never
a crash: missing and damaged checkpoints, wrong tensors, unknown quantisation,
out-of-range tokens, overflowing a context, invalid arguments."""

from __future__ import annotations

import json
import math
import shutil
import struct

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import gpt_oss_native as gon


@pytest.fixture
def ckpt(small_model_path, tmp_path):
    """A private copy of the small checkpoint (HF layout and original/) to damage."""
    dst = tmp_path / "ckpt"
    shutil.copytree(small_model_path, dst)
    return dst


def _shard(ckpt):
    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    return ckpt / sorted(set(index["weight_map"].values()))[0]


def test_missing_paths(tmp_path):
    with pytest.raises(gon.CheckpointNotFoundError, match="does not exist"):
        gon.Model(tmp_path / "nope")
    with pytest.raises(FileNotFoundError):  # also a standard FileNotFoundError
        gon.Model(tmp_path / "nope")
    with pytest.raises(gon.CheckpointNotFoundError, match="config.json"):
        gon.Model(tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(gon.InvalidArgumentError):
        gon.Model(tmp_path / "notes.txt")


def test_missing_shard(ckpt):
    _shard(ckpt).unlink()
    with pytest.raises(gon.CheckpointNotFoundError, match="shard"):
        gon.Model(ckpt)


def test_truncated_shard(ckpt):
    shard = _shard(ckpt)
    data = shard.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 100, 7, 0):
        shard.write_bytes(data[:cut])
        with pytest.raises(gon.CorruptCheckpointError):
            gon.Model(ckpt)


def test_corrupted_header(ckpt, rng):
    shard = _shard(ckpt)
    data = bytearray(shard.read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    damaged = bytearray(data)
    damaged[8 + 1] = ord("#")
    shard.write_bytes(bytes(damaged))
    with pytest.raises(gon.CorruptCheckpointError, match="JSON"):
        gon.Model(ckpt)
    damaged = bytearray(data)
    damaged[:8] = struct.pack("<Q", len(data) * 4)
    shard.write_bytes(bytes(damaged))
    with pytest.raises(gon.CorruptCheckpointError):
        gon.Model(ckpt)
    # Random damage inside the header: a clean error or (rarely) a checkpoint that still loads.
    for _ in range(30):
        damaged = bytearray(data)
        for pos in rng.integers(8, 8 + n, size=3):
            damaged[pos] = int(rng.integers(0, 256))
        shard.write_bytes(bytes(damaged))
        try:
            gon.Model(ckpt)
        except gon.CheckpointError:
            pass


def test_wrong_shape_and_dtype(ckpt):
    shard = _shard(ckpt)
    tensors = load_file(shard)
    name = "model.layers.0.self_attn.q_proj.weight"
    original = tensors[name]
    tensors[name] = original[:-16].clone()
    save_file(tensors, shard)
    with pytest.raises(gon.CorruptCheckpointError, match=r"q_proj.weight.*shape"):
        gon.Model(ckpt)
    tensors[name] = original.view(torch.float16)
    save_file(tensors, shard)
    with pytest.raises(gon.CorruptCheckpointError, match=r"dtype F16, expected BF16"):
        gon.Model(ckpt)
    tensors[name] = original
    del tensors["model.layers.1.mlp.router.bias"]
    save_file(tensors, shard)
    with pytest.raises(gon.CorruptCheckpointError, match="index lists tensor 'model.layers.1.mlp.router.bias'"):
        gon.Model(ckpt)
    idx_path = ckpt / "model.safetensors.index.json"
    idx = json.loads(idx_path.read_text())
    del idx["weight_map"]["model.layers.1.mlp.router.bias"]
    idx_path.write_text(json.dumps(idx))
    with pytest.raises(gon.CorruptCheckpointError, match="missing tensor 'model.layers.1.mlp.router.bias'"):
        gon.Model(ckpt)


def test_config_mismatch_and_unsupported(ckpt):
    cfg_path = ckpt / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg2 = dict(cfg, hidden_size=96)
    cfg_path.write_text(json.dumps(cfg2))
    with pytest.raises(gon.CorruptCheckpointError, match="shape"):
        gon.Model(ckpt)
    cfg2 = dict(cfg, quantization_config={"quant_method": "gptq"})
    cfg_path.write_text(json.dumps(cfg2))
    with pytest.raises(gon.UnsupportedCheckpointError, match="gptq"):
        gon.Model(ckpt)
    cfg_path.write_text(json.dumps(dict(cfg, model_type="llama")))
    with pytest.raises(gon.UnsupportedCheckpointError, match="llama"):
        gon.Model(ckpt)
    cfg_path.write_text(json.dumps(dict(cfg, hidden_size=100)))
    with pytest.raises(gon.UnsupportedCheckpointError, match="multiple of 32"):
        gon.Model(ckpt)
    cfg_path.write_text(json.dumps(dict(cfg, num_hidden_layers="two")))
    with pytest.raises(gon.CorruptCheckpointError, match="num_hidden_layers"):
        gon.Model(ckpt)
    cfg_path.write_text(json.dumps({k: v for k, v in cfg.items() if k != "vocab_size"}))
    with pytest.raises(gon.CorruptCheckpointError, match="vocab_size"):
        gon.Model(ckpt)
    cfg_path.write_text('{"model_type": "gpt_oss",')
    with pytest.raises(gon.CorruptCheckpointError, match="invalid JSON"):
        gon.Model(ckpt)


@pytest.mark.parametrize("change,error,match", [
    ({"rms_norm_eps": -1e-5}, gon.CorruptCheckpointError, "rms_norm_eps"),
    ({"rms_norm_eps": 0.0}, gon.CorruptCheckpointError, "rms_norm_eps"),
    ({"head_dim": None, "hidden_size": 64, "num_attention_heads": 96}, gon.CorruptCheckpointError, "head_dim"),
    ({"num_experts_per_tok": 9}, gon.CorruptCheckpointError, "experts_per_token"),
    ({"num_key_value_heads": 8}, gon.CorruptCheckpointError, "num_key_value_heads"),
    ({"sliding_window": -2}, gon.CorruptCheckpointError, "sliding_window"),
    ({"swiglu_limit": -7.0}, gon.CorruptCheckpointError, "swiglu_limit"),
    ({"rope_theta": 0.5}, gon.CorruptCheckpointError, "rope_theta"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 0.5, "beta_fast": 32, "beta_slow": 1,
                       "original_max_position_embeddings": 4096, "truncate": False}},
     gon.CorruptCheckpointError, "scaling factor"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 32, "beta_fast": 1, "beta_slow": 32,
                       "original_max_position_embeddings": 4096, "truncate": False}},
     gon.CorruptCheckpointError, "beta_fast"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 32, "beta_fast": 32, "beta_slow": 1,
                       "original_max_position_embeddings": 0, "truncate": False}},
     gon.CorruptCheckpointError, "original_max_position_embeddings"),
    ({"eos_token_id": 5000}, gon.CorruptCheckpointError, "eos_token_id"),
    ({"max_position_embeddings": 0}, gon.CorruptCheckpointError, "max_position_embeddings"),
    ({"head_dim": 15}, gon.UnsupportedCheckpointError, "head_dim"),
])
def test_config_values_checked_at_load(ckpt, change, error, match):
    """Every config value the forward pass uses is range-checked when the model loads."""
    cfg_path = ckpt / "config.json"
    cfg = json.loads(cfg_path.read_text())
    for k, v in change.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(error, match=match):
        gon.Model(ckpt)


def test_extra_and_dequantized_tensors(ckpt):
    shard = _shard(ckpt)
    tensors = load_file(shard)
    tensors["model.layers.0.mlp.extra"] = torch.zeros(4)
    save_file(tensors, shard)
    with pytest.raises(gon.UnsupportedCheckpointError, match="extra"):
        gon.Model(ckpt)


def test_bad_index(ckpt):
    idx_path = ckpt / "model.safetensors.index.json"
    idx = json.loads(idx_path.read_text())
    shard = next(iter(idx["weight_map"].values()))
    idx["weight_map"]["model.layers.0.not_there"] = shard
    idx_path.write_text(json.dumps(idx))
    with pytest.raises(gon.CorruptCheckpointError, match="not_there"):
        gon.Model(ckpt)
    idx["weight_map"] = {"lm_head.weight": "../../etc/passwd"}
    idx_path.write_text(json.dumps(idx))
    with pytest.raises(gon.CorruptCheckpointError, match="plain file name"):
        gon.Model(ckpt)


def test_original_layout_errors(ckpt):
    orig = ckpt / "original"
    tensors = load_file(orig / "model.safetensors")
    tensors["block.0.attn.qkv.weight"] = tensors["block.0.attn.qkv.weight"][:8].clone()
    save_file(tensors, orig / "model.safetensors")
    with pytest.raises(gon.CorruptCheckpointError, match="qkv"):
        gon.Model(orig)
    (orig / "model.safetensors").unlink()
    with pytest.raises(gon.CheckpointNotFoundError):
        gon.Model(orig)


def test_token_and_context_errors(small_model):
    V = small_model.vocab_size
    ctx = gon.Context(small_model, context_length=8, max_batch_tokens=4)
    for bad in ([V], [-1], [0, 1, V + 5], np.array([2**40]), np.array([V], dtype=np.uint64)):
        with pytest.raises(gon.TokenOutOfRangeError, match="vocabulary"):
            ctx.append(bad)
        assert ctx.num_tokens == 0
    with pytest.raises(gon.InvalidArgumentError, match="64 bits"):
        ctx.append([2**70])
    with pytest.raises(gon.ContextOverflowError):
        ctx.append(list(range(9)))
    assert ctx.num_tokens == 0
    ctx.append(list(range(8)))
    with pytest.raises(gon.ContextOverflowError):
        ctx.append(1)
    with pytest.raises(gon.ContextOverflowError, match="full"):
        ctx.sample()
    with pytest.raises(gon.InvalidArgumentError, match="logits_capacity"):
        ctx.process(logits="all")
    ctx.process(logits="none")
    assert ctx.num_processed == 8


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(temperature=-1.0), dict(temperature=math.nan), dict(temperature=math.inf), dict(top_p=0.0),
        dict(top_p=1.5), dict(top_p=math.nan), dict(seed=-1), dict(seed=2**64), dict(temperature="hot"),
        dict(seed=1.5),
    ],
)
def test_invalid_sampling_arguments(small_model, kwargs):
    ctx = gon.Context(small_model, context_length=8)
    ctx.append([1, 2])
    with pytest.raises(gon.InvalidArgumentError):
        ctx.sample(**kwargs)
    assert ctx.num_tokens == 2


def test_invalid_arguments(small_model, small_model_path):
    with pytest.raises(gon.InvalidArgumentError, match="sample"):
        gon.Context(small_model).sample()  # empty context
    for kwargs in (dict(context_length=0), dict(context_length=10**9), dict(max_batch_tokens=0),
                   dict(context_length=2.5), dict(logits_capacity=0), dict(rewind_window=-3)):
        with pytest.raises(gon.InvalidArgumentError):
            gon.Context(small_model, **kwargs)
    with pytest.raises(gon.InvalidArgumentError):
        gon.Context("not a model")
    ctx = gon.Context(small_model, context_length=8)
    with pytest.raises(gon.InvalidArgumentError, match="logits"):
        ctx.process(logits="every")
    with pytest.raises(gon.InvalidArgumentError, match="rewind"):
        ctx.rewind(1)
    with pytest.raises(gon.InvalidArgumentError):
        ctx.rewind(-1)
    with pytest.raises(gon.BackendUnavailableError, match="cuda"):
        gon.Model(small_model_path, device="cuda")
    with pytest.raises(gon.InvalidArgumentError, match="unknown device"):
        gon.Model(small_model_path, device="tpu")
    with pytest.raises(gon.InvalidArgumentError):
        gon.Model(small_model_path, threads=0)
    with pytest.raises(gon.InvalidArgumentError, match="prefetch"):
        gon.Model(small_model_path, prefetch="sometimes")
    with pytest.raises(gon.InvalidArgumentError):
        gon.Model(12)
    with pytest.raises(gon.InvalidArgumentError):
        gon.Model(small_model_path, progress="yes")


def test_progress_callback_errors_propagate(small_model_path):
    def boom(done, total):
        raise RuntimeError("stop loading")

    with pytest.raises(RuntimeError, match="stop loading"):
        gon.Model(small_model_path, prefetch="always", progress=boom)
