"""Tests of the synthetic checkpoint writer (gpt_oss_native.checkpoint).

Checks the written files against the tensor table of docs/gpt-oss-model.md (written out here
independently of the writer), the two layouts against each other, the weight statistics, that
transformers loads the HF layout cleanly with experts equal to an independent float64 MXFP4
decode, determinism, the CLI and config validation.  Test-only dependencies: safetensors, torch,
transformers.
"""

import hashlib
import json
import os
import pathlib

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gpt_oss_native import checkpoint as ck  # noqa: E402

import oracle  # noqa: E402
import torch  # noqa: E402
from safetensors import safe_open  # noqa: E402

SEED = 1234

CONFIGS = {
    "tiny": "tiny",
    "l3e8k3": {"preset": "tiny", "num_hidden_layers": 3, "num_local_experts": 8,
               "num_experts_per_tok": 3},
    "w4h64i96": {"preset": "tiny", "sliding_window": 4, "hidden_size": 64,
                 "intermediate_size": 96},
}

FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0,
                -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# independent helpers
# --------------------------------------------------------------------------------------------

def dims(cfg):
    return (cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"],
            cfg["vocab_size"], cfg["head_dim"], cfg["num_attention_heads"],
            cfg["num_key_value_heads"], cfg["num_hidden_layers"])


def expected_hf(cfg):
    """name -> (dtype, shape), straight from the table in gpt-oss-model.md."""
    H, I, E, V, hd, nq, nkv, L = dims(cfg)
    t = {"model.embed_tokens.weight": ("BF16", (V, H)),
         "lm_head.weight": ("BF16", (V, H)),
         "model.norm.weight": ("BF16", (H,))}
    for n in range(L):
        p = f"model.layers.{n}."
        t.update({
            p + "input_layernorm.weight": ("BF16", (H,)),
            p + "self_attn.q_proj.weight": ("BF16", (nq * hd, H)),
            p + "self_attn.q_proj.bias": ("BF16", (nq * hd,)),
            p + "self_attn.k_proj.weight": ("BF16", (nkv * hd, H)),
            p + "self_attn.k_proj.bias": ("BF16", (nkv * hd,)),
            p + "self_attn.v_proj.weight": ("BF16", (nkv * hd, H)),
            p + "self_attn.v_proj.bias": ("BF16", (nkv * hd,)),
            p + "self_attn.o_proj.weight": ("BF16", (H, nq * hd)),
            p + "self_attn.o_proj.bias": ("BF16", (H,)),
            p + "self_attn.sinks": ("BF16", (nq,)),
            p + "post_attention_layernorm.weight": ("BF16", (H,)),
            p + "mlp.router.weight": ("BF16", (E, H)),
            p + "mlp.router.bias": ("BF16", (E,)),
            p + "mlp.experts.gate_up_proj_blocks": ("U8", (E, 2 * I, H // 32, 16)),
            p + "mlp.experts.gate_up_proj_scales": ("U8", (E, 2 * I, H // 32)),
            p + "mlp.experts.gate_up_proj_bias": ("BF16", (E, 2 * I)),
            p + "mlp.experts.down_proj_blocks": ("U8", (E, H, I // 32, 16)),
            p + "mlp.experts.down_proj_scales": ("U8", (E, H, I // 32)),
            p + "mlp.experts.down_proj_bias": ("BF16", (E, H)),
        })
    return t


# original name -> HF name (qkv handled separately)
def orig_to_hf(cfg):
    m = {"embedding.weight": "model.embed_tokens.weight",
         "unembedding.weight": "lm_head.weight",
         "norm.scale": "model.norm.weight"}
    for n in range(cfg["num_hidden_layers"]):
        b, h = f"block.{n}.", f"model.layers.{n}."
        m.update({
            b + "attn.norm.scale": h + "input_layernorm.weight",
            b + "attn.sinks": h + "self_attn.sinks",
            b + "attn.out.weight": h + "self_attn.o_proj.weight",
            b + "attn.out.bias": h + "self_attn.o_proj.bias",
            b + "mlp.norm.scale": h + "post_attention_layernorm.weight",
            b + "mlp.gate.weight": h + "mlp.router.weight",
            b + "mlp.gate.bias": h + "mlp.router.bias",
            b + "mlp.mlp1_weight.blocks": h + "mlp.experts.gate_up_proj_blocks",
            b + "mlp.mlp1_weight.scales": h + "mlp.experts.gate_up_proj_scales",
            b + "mlp.mlp1_bias": h + "mlp.experts.gate_up_proj_bias",
            b + "mlp.mlp2_weight.blocks": h + "mlp.experts.down_proj_blocks",
            b + "mlp.mlp2_weight.scales": h + "mlp.experts.down_proj_scales",
            b + "mlp.mlp2_bias": h + "mlp.experts.down_proj_bias",
        })
    return m


def expected_orig(cfg):
    H, I, E, V, hd, nq, nkv, L = dims(cfg)
    hf = expected_hf(cfg)
    t = {o: hf[h] for o, h in orig_to_hf(cfg).items()}
    for n in range(L):
        t[f"block.{n}.attn.qkv.weight"] = ("BF16", ((nq + 2 * nkv) * hd, H))
        t[f"block.{n}.attn.qkv.bias"] = ("BF16", ((nq + 2 * nkv) * hd,))
    return t


def read_all(paths):
    """name -> numpy array (bf16 as uint16 bit patterns, u8 as uint8), plus name -> dtype/shape."""
    arrays, meta = {}, {}
    for path in paths:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                sl = f.get_slice(name)
                meta[name] = (sl.get_dtype(), tuple(sl.get_shape()))
                t = f.get_tensor(name)
                if t.dtype == torch.bfloat16:
                    arrays[name] = t.view(torch.int16).numpy().view(np.uint16)
                else:
                    assert t.dtype == torch.uint8, (name, t.dtype)
                    arrays[name] = t.numpy()
    return arrays, meta


def bf16_to_f64(u16):
    return (u16.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def mxfp4_decode(blocks, scales):
    """[..., G, 16] u8 blocks + [..., G] u8 scales -> float64 [..., G*32] (independent decode)."""
    assert blocks.shape[:-1] == scales.shape and blocks.shape[-1] == 16
    lo = FP4[blocks & 0x0F]
    hi = FP4[blocks >> 4]
    vals = np.empty(blocks.shape[:-1] + (32,), np.float64)
    vals[..., 0::2] = lo          # even element = low nibble
    vals[..., 1::2] = hi          # odd element = high nibble
    vals *= np.ldexp(1.0, scales.astype(np.int64) - 127)[..., None]
    return vals.reshape(blocks.shape[:-2] + (blocks.shape[-2] * 32,))


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 24), b""):
            h.update(b)
    return h.hexdigest()


def tree_hashes(root):
    root = pathlib.Path(root)
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------------------------
# fixtures: each config written once per session in both layouts with the same seed
# --------------------------------------------------------------------------------------------

_WRITTEN = {}


@pytest.fixture(scope="session")
def written(tmp_path_factory):
    def get(cid):
        if cid not in _WRITTEN:
            base = tmp_path_factory.mktemp(cid)
            hf = ck.write_checkpoint(base / "hf", CONFIGS[cid], format="hf", seed=SEED,
                                     progress=False)
            orig = ck.write_checkpoint(base / "orig", CONFIGS[cid], format="original",
                                       seed=SEED, progress=False)
            hf_files = json.loads((hf / "model.safetensors.index.json").read_text())
            shards = sorted(set(hf_files["weight_map"].values()))
            ha, hm = read_all([hf / s for s in shards])
            oa, om = read_all([orig / "model.safetensors"])
            _WRITTEN[cid] = dict(cfg=ck.model_config(CONFIGS[cid]), hf=hf, orig=orig,
                                 hf_arrays=ha, hf_meta=hm, orig_arrays=oa, orig_meta=om)
        return _WRITTEN[cid]
    return get


# --------------------------------------------------------------------------------------------
# layout
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", list(CONFIGS))
def test_hf_layout_matches_table(written, cid):
    w = written(cid)
    cfg, hf = w["cfg"], w["hf"]
    exp = expected_hf(cfg)
    assert w["hf_meta"] == exp
    # index
    idx = json.loads((hf / "model.safetensors.index.json").read_text())
    assert set(idx["weight_map"]) == set(exp)
    for shard in set(idx["weight_map"].values()):
        with safe_open(str(hf / shard), framework="pt") as f:
            assert {k for k, v in idx["weight_map"].items() if v == shard} == set(f.keys())
    total = sum(a.nbytes for a in w["hf_arrays"].values())
    assert idx["metadata"]["total_size"] == total
    assert sorted(p.name for p in hf.glob("*.safetensors")) == ["model-00001-of-00001.safetensors"]
    # config.json
    c = json.loads((hf / "config.json").read_text())
    assert c["model_type"] == "gpt_oss" and c["architectures"] == ["GptOssForCausalLM"]
    assert c["num_experts_per_tok"] == c["experts_per_token"] == cfg["num_experts_per_tok"]
    assert c["layer_types"] == ["sliding_attention" if i % 2 == 0 else "full_attention"
                                for i in range(cfg["num_hidden_layers"])]
    assert c["rope_scaling"] == {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0,
                                 "beta_slow": 1.0, "original_max_position_embeddings": 4096,
                                 "truncate": False}
    assert c["rope_theta"] == 150000 and c["max_position_embeddings"] == 131072
    assert c["initial_context_length"] == 4096 and c["rms_norm_eps"] == 1e-5
    assert c["swiglu_limit"] == 7.0 and c["tie_word_embeddings"] is False
    assert c["attention_bias"] is True
    assert (c["eos_token_id"], c["pad_token_id"]) == (200002, 199999)
    assert c["quantization_config"] == {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"]}
    # no leftovers of the temporary directory
    assert not [p for p in hf.parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("cid", list(CONFIGS))
def test_original_layout_matches_table(written, cid):
    w = written(cid)
    cfg, orig = w["cfg"], w["orig"]
    assert w["orig_meta"] == expected_orig(cfg)
    expected_files = ["config.json", "model.safetensors"]
    if cfg["vocab_size"] >= 201088:  # a tokenizer.json comes with models of the real vocabulary size
        expected_files.append("tokenizer.json")
    assert sorted(p.name for p in orig.iterdir()) == expected_files
    c = json.loads((orig / "config.json").read_text())
    rs = cfg["rope_scaling"]
    assert c == {
        "num_hidden_layers": cfg["num_hidden_layers"], "num_experts": cfg["num_local_experts"],
        "experts_per_token": cfg["num_experts_per_tok"], "vocab_size": cfg["vocab_size"],
        "hidden_size": cfg["hidden_size"], "intermediate_size": cfg["intermediate_size"],
        "swiglu_limit": 7.0, "head_dim": cfg["head_dim"],
        "num_attention_heads": cfg["num_attention_heads"],
        "num_key_value_heads": cfg["num_key_value_heads"],
        "sliding_window": cfg["sliding_window"], "initial_context_length": 4096,
        "rope_theta": 150000, "rope_scaling_factor": 32.0,
        "rope_ntk_alpha": rs["beta_slow"], "rope_ntk_beta": rs["beta_fast"]}
    assert (c["rope_ntk_alpha"], c["rope_ntk_beta"]) == (1.0, 32.0)


def test_preset_shapes_match_doc():
    specs = {n: (d, s) for n, d, s in ck.hf_tensor_specs("20b")}
    assert specs == expected_hf(ck.model_config("20b"))
    p = "model.layers.0."
    assert specs[p + "self_attn.q_proj.weight"][1] == (4096, 2880)
    assert specs[p + "self_attn.k_proj.weight"][1] == (512, 2880)
    assert specs[p + "self_attn.o_proj.weight"][1] == (2880, 4096)
    assert specs[p + "mlp.experts.gate_up_proj_blocks"][1] == (32, 5760, 90, 16)
    assert specs[p + "mlp.experts.down_proj_scales"][1] == (32, 2880, 90)
    assert specs["lm_head.weight"][1] == (201088, 2880)
    osp = {n: (d, s) for n, d, s in ck.original_tensor_specs("20b")}
    assert osp["block.0.attn.qkv.weight"][1] == (5120, 2880)
    assert osp == expected_orig(ck.model_config("20b"))
    c120 = ck.model_config("120b")
    assert (c120["num_hidden_layers"], c120["num_local_experts"]) == (36, 128)
    assert len(ck.hf_tensor_specs("120b")) == 3 + 36 * 19
    tiny = ck.model_config("tiny")
    assert (tiny["hidden_size"], tiny["intermediate_size"], tiny["vocab_size"]) == (128, 64, 201088)


# --------------------------------------------------------------------------------------------
# the two layouts hold the same weights
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", list(CONFIGS))
def test_layouts_hold_same_bytes(written, cid):
    w = written(cid)
    cfg, ha, oa = w["cfg"], w["hf_arrays"], w["orig_arrays"]
    for o, h in orig_to_hf(cfg).items():
        assert np.array_equal(oa[o], ha[h]), (o, h)
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}.self_attn."
        for kind in ("weight", "bias"):
            cat = np.concatenate([ha[p + f"q_proj.{kind}"], ha[p + f"k_proj.{kind}"],
                                  ha[p + f"v_proj.{kind}"]], axis=0)
            assert np.array_equal(oa[f"block.{n}.attn.qkv.{kind}"], cat)
        # q, k, v are separately drawn
        assert not np.array_equal(ha[p + "k_proj.weight"], ha[p + "v_proj.weight"])
    # layers differ from each other
    assert not np.array_equal(ha["model.layers.0.mlp.experts.down_proj_blocks"],
                              ha["model.layers.1.mlp.experts.down_proj_blocks"])
    assert not np.array_equal(ha["model.embed_tokens.weight"], ha["lm_head.weight"])


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", list(CONFIGS))
def test_weight_statistics(written, cid):
    w = written(cid)
    cfg, a = w["cfg"], w["hf_arrays"]
    L = cfg["num_hidden_layers"]
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        x = bf16_to_f64(a[name][:4096])
        assert abs(x.std() - 0.02) < 0.001 and abs(x.mean()) < 0.001, name
    for n in range(L):
        p = f"model.layers.{n}."
        for name in ("self_attn.q_proj.weight", "self_attn.k_proj.weight",
                     "self_attn.o_proj.weight", "mlp.router.weight",
                     "mlp.experts.gate_up_proj_bias", "mlp.experts.down_proj_bias"):
            x = bf16_to_f64(a[p + name])
            assert abs(x.std() - 0.02) < 0.003 and abs(x.mean()) < 0.003, (p + name, x.std())
        for name in ("self_attn.q_proj.bias", "self_attn.o_proj.bias", "mlp.router.bias"):
            x = bf16_to_f64(a[p + name])
            assert 0.008 < x.std() < 0.04 and np.count_nonzero(x) == x.size, p + name
        for name in ("input_layernorm.weight", "post_attention_layernorm.weight"):
            x = bf16_to_f64(a[p + name])
            assert x.min() > 0.7 and x.max() < 1.3 and 0.02 < x.std() < 0.08, p + name
        s = bf16_to_f64(a[p + "self_attn.sinks"])
        assert np.all(np.isfinite(s)) and np.count_nonzero(s) == s.size and np.abs(s).max() < 3
        for proj in ("gate_up_proj", "down_proj"):
            blocks = a[p + f"mlp.experts.{proj}_blocks"]
            scales = a[p + f"mlp.experts.{proj}_scales"]
            assert scales.min() >= 116 and scales.max() <= 124
            assert np.count_nonzero(scales == 120) > scales.size / 3
            x = mxfp4_decode(blocks, scales)
            assert abs(x.std() - 0.02) < 0.002 and abs(x.mean()) < 0.001, (proj, x.std())
            codes = np.concatenate([(blocks & 15).ravel(), (blocks >> 4).ravel()])
            counts = np.bincount(codes, minlength=16)
            assert np.all(counts > 0), counts          # all 16 codes (incl. -0 = 8) occur
            assert abs(counts[:8].sum() - counts[8:].sum()) < 0.02 * codes.size  # symmetric
    x = bf16_to_f64(a["model.norm.weight"])
    assert x.min() > 0.7 and x.max() < 1.3


def test_bf16_rounding_is_nearest_even():
    x = np.array([1.0, 1.00390625, 1.01171875, 1.0 + 2 ** -8 + 2 ** -20, -2.5e-3, 3.0e-2],
                 dtype=np.float32)
    got = ck._f32_to_bf16_bits(x.copy())
    want = torch.from_numpy(x).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(got, want)
    r = np.random.default_rng(0).standard_normal(100000).astype(np.float32) * 0.02
    want = torch.from_numpy(r).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    assert np.array_equal(ck._f32_to_bf16_bits(r.copy()), want)


# --------------------------------------------------------------------------------------------
# transformers loads the HF layout, and agrees with an independent decode
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("cid", list(CONFIGS))
def test_transformers_loads_hf_layout(written, cid):
    w = written(cid)
    cfg, a = w["cfg"], w["hf_arrays"]
    model = oracle.load_reference(w["hf"])          # asserts no missing/unexpected/mismatched
    assert oracle.load_reference(w["hf"]) is model  # cached
    H, I, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"]
    assert model.config.sliding_window == cfg["sliding_window"]
    assert model.config.num_experts_per_tok == cfg["num_experts_per_tok"]
    sd = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}.mlp.experts."
        gu = mxfp4_decode(a[p + "gate_up_proj_blocks"], a[p + "gate_up_proj_scales"])  # [E,2I,H]
        dn = mxfp4_decode(a[p + "down_proj_blocks"], a[p + "down_proj_scales"])        # [E,H,I]
        assert gu.shape == (E, 2 * I, H) and dn.shape == (E, H, I)
        # transformers keeps them transposed: gate_up_proj [E, H, 2I], down_proj [E, I, H]
        assert sd[p + "gate_up_proj"].shape == (E, H, 2 * I)
        assert sd[p + "down_proj"].shape == (E, I, H)
        assert np.array_equal(sd[p + "gate_up_proj"].astype(np.float64), gu.transpose(0, 2, 1))
        assert np.array_equal(sd[p + "down_proj"].astype(np.float64), dn.transpose(0, 2, 1))
        for name in ("gate_up_proj_bias", "down_proj_bias"):
            assert np.array_equal(sd[p + name].astype(np.float64), bf16_to_f64(a[p + name]))
    for name, arr in a.items():
        if name in sd:
            assert np.array_equal(sd[name].astype(np.float64), bf16_to_f64(arr)), name
    tokens = np.random.default_rng(7).integers(0, cfg["vocab_size"], 9)
    logits = oracle.reference_logits(w["hf"], tokens)
    assert logits.shape == (9, cfg["vocab_size"]) and logits.dtype == np.float32
    assert np.isfinite(logits).all() and logits.std() > 0.01
    # teacher forcing: a prefix gives the same rows
    pre = oracle.reference_logits(model, list(tokens[:5]))
    np.testing.assert_allclose(pre, logits[:5], atol=1e-5)


def test_oracle_rejects_incomplete_checkpoint(tmp_path):
    from safetensors.torch import load_file, save_file
    d = ck.write_checkpoint(tmp_path / "m", {"preset": "tiny", "num_hidden_layers": 1},
                            seed=3, progress=False)
    shard = d / "model-00001-of-00001.safetensors"
    tensors = load_file(str(shard))
    del tensors["model.layers.0.self_attn.sinks"]
    save_file(tensors, str(shard), metadata={"format": "pt"})
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    del idx["weight_map"]["model.layers.0.self_attn.sinks"]
    (d / "model.safetensors.index.json").write_text(json.dumps(idx))
    with pytest.raises(AssertionError, match="sinks"):
        oracle.load_reference(d)


# --------------------------------------------------------------------------------------------
# formats, determinism, sharding, progress, interruption
# --------------------------------------------------------------------------------------------

def test_format_both(written, tmp_path):
    w = written("tiny")
    d = ck.write_checkpoint(tmp_path / "both", "tiny", format="both", seed=SEED, progress=False)
    got = tree_hashes(d)
    # Like the real repositories, original/ has no tokenizer.json of its own (it uses its parent's).
    want = {**tree_hashes(w["hf"]),
            **{"original/" + k: v for k, v in tree_hashes(w["orig"]).items() if k != "tokenizer.json"}}
    assert got == want
    assert (d / "tokenizer.json").is_file() and not (d / "original" / "tokenizer.json").exists()


def test_seeds(written, tmp_path):
    w = written("tiny")
    d = ck.write_checkpoint(tmp_path / "same", "tiny", format="hf", seed=SEED, progress=False)
    assert tree_hashes(d) == tree_hashes(w["hf"])
    d2 = ck.write_checkpoint(tmp_path / "other", "tiny", format="hf", seed=SEED + 1,
                             progress=False)
    a2, _ = read_all([d2 / "model-00001-of-00001.safetensors"])
    a1 = w["hf_arrays"]
    for name in a1:
        if name.endswith("_scales"):   # 5 possible values: may coincide by chance in tiny tensors
            continue
        assert not np.array_equal(a1[name], a2[name]), name


def test_sharding_and_progress_callback(written, tmp_path):
    w = written("l3e8k3")
    calls = []
    d = ck.write_checkpoint(tmp_path / "sh", CONFIGS["l3e8k3"], format="hf", seed=SEED,
                            progress=lambda done, total: calls.append((done, total)),
                            max_shard_bytes=30_000_000)
    idx = json.loads((d / "model.safetensors.index.json").read_text())
    shards = sorted(set(idx["weight_map"].values()))
    n = len(shards)
    assert n >= 3
    assert shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert sorted(p.name for p in d.glob("*.safetensors")) == shards
    arrays, meta = read_all([d / s for s in shards])
    assert meta == expected_hf(w["cfg"])
    for name, arr in arrays.items():
        assert np.array_equal(arr, w["hf_arrays"][name]), name
    # every shard (but a lone oversized tensor) is within the cap
    for s in shards:
        names = [k for k, v in idx["weight_map"].items() if v == s]
        size = sum(arrays[k].nbytes for k in names)
        assert size <= 30_000_000 or len(names) == 1
    total = sum((d / s).stat().st_size for s in shards)
    assert calls and calls[-1] == (total, total)
    assert all(t == total for _, t in calls)
    assert all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))


def test_interrupted_write_leaves_nothing(tmp_path):
    class Stop(Exception):
        pass

    def boom(done, total):
        if done > total // 2:
            raise Stop

    with pytest.raises(Stop):
        ck.write_checkpoint(tmp_path / "x", "tiny", format="both", progress=boom)
    assert list(tmp_path.iterdir()) == []


def test_existing_directory(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "f").write_text("x")
    with pytest.raises(FileExistsError):
        ck.write_checkpoint(tmp_path / "full", {"preset": "tiny", "num_hidden_layers": 1},
                            progress=False)
    d = ck.write_checkpoint(tmp_path / "full", {"preset": "tiny", "num_hidden_layers": 1},
                            progress=False, overwrite=True)
    assert not (d / "f").exists() and (d / "config.json").exists()
    (tmp_path / "empty").mkdir()
    ck.write_checkpoint(tmp_path / "empty", {"preset": "tiny", "num_hidden_layers": 1},
                        format="original", progress=False)
    assert (tmp_path / "empty" / "model.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "full"]


# --------------------------------------------------------------------------------------------
# CLI and config validation
# --------------------------------------------------------------------------------------------

def test_cli(tmp_path, capsys):
    out = tmp_path / "cli"
    rc = ck.main_make_checkpoint(["--preset", "tiny", "--format", "original", "--seed", "5",
                                  "--layers", "1", "--experts", "6", "--top-k", "3",
                                  "--intermediate", "96", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "wrote original checkpoint" in err
    c = json.loads((out / "config.json").read_text())
    assert (c["num_hidden_layers"], c["num_experts"], c["experts_per_token"],
            c["intermediate_size"]) == (1, 6, 3, 96)
    ref = ck.write_checkpoint(tmp_path / "api", {"preset": "tiny", "num_hidden_layers": 1,
                                                 "num_local_experts": 6,
                                                 "num_experts_per_tok": 3,
                                                 "intermediate_size": 96},
                              format="original", seed=5, progress=False)
    assert tree_hashes(out) == tree_hashes(ref)
    # errors: exit status 2, nothing written
    assert ck.main_make_checkpoint(["--hidden", "100", "-q", str(tmp_path / "bad")]) == 2
    assert ck.main_make_checkpoint(["--format", "gguf", str(tmp_path / "bad")]) == 2
    assert ck.main_make_checkpoint(["-q", str(out)]) == 2                  # not empty
    assert ck.main_make_checkpoint(["--set", "nonsense=1", "-q", str(tmp_path / "bad")]) == 2
    assert not (tmp_path / "bad").exists()
    assert ck.main_make_checkpoint(["--help"]) == 0
    d = tmp_path / "hf"
    assert ck.main_make_checkpoint(["-q", "--layers", "1", "--set", "rms_norm_eps=1e-6",
                                    str(d)]) == 0
    assert json.loads((d / "config.json").read_text())["rms_norm_eps"] == 1e-6


def test_model_config_overrides():
    t = ck.model_config("tiny")
    assert ck.model_config(t) == t
    assert ck.model_config({}) == t
    c = ck.model_config({"preset": "20b", "num_hidden_layers": 3, "num_experts": 8,
                         "experts_per_token": 2})
    assert (c["num_hidden_layers"], c["num_local_experts"], c["num_experts_per_tok"],
            c["experts_per_token"]) == (3, 8, 2, 2)
    assert c["layer_types"] == ["sliding_attention", "full_attention", "sliding_attention"]
    c = ck.model_config({"rope_scaling": {"factor": 16.0}})
    assert c["rope_scaling"]["factor"] == 16.0 and c["rope_scaling"]["truncate"] is False
    assert ck.model_config("tiny") == t   # presets not mutated


@pytest.mark.parametrize("over", [
    {"hidden_size": 100},
    {"intermediate_size": 48},
    {"num_attention_heads": 6, "num_key_value_heads": 4},
    {"num_experts_per_tok": 5},
    {"num_local_experts": 0},
    {"num_hidden_layers": -1},
    {"head_dim": 31},
    {"sliding_window": 0},
    {"num_hidden_layers": 2.5},
    {"vocab_size": 1000},                       # eos/pad ids would be out of range
    {"layer_types": ["full_attention"]},
    {"num_experts_per_tok": 2, "experts_per_token": 3},
    {"rope_scaling": {"truncate": True}},
    {"model_type": "llama"},
    {"tie_word_embeddings": True},
    {"no_such_key": 1},
    {"preset": "7b"},
])
def test_invalid_overrides(over):
    with pytest.raises(ValueError):
        ck.model_config(over)


def test_invalid_write_arguments(tmp_path):
    with pytest.raises(ValueError):
        ck.write_checkpoint(tmp_path / "a", "tiny", format="gguf", progress=False)
    with pytest.raises(ValueError):
        ck.write_checkpoint(tmp_path / "a", "tiny", seed=-1, progress=False)
    with pytest.raises(ValueError):
        ck.write_checkpoint(tmp_path / "a", "huge", progress=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("cid", ["w4h64i96", "l3e8k3"])
def test_oracle_agrees_with_numpy_forward(written, cid):
    """The transformers oracle matches a float64 numpy forward written from the doc's formulas
    (sliding window 4 < T exercises the window; sinks, YaRN, routing, clamped SwiGLU)."""
    w = written(cid)
    tokens = np.random.default_rng(3).integers(0, w["cfg"]["vocab_size"], 24)
    ref = oracle.reference_logits(w["hf"], tokens)
    mine = oracle.numpy_reference_logits(w["hf"], tokens)
    assert np.abs(ref - mine).max() < 1e-5


# --------------------------------------------------------------------------------------------
# Trained tensors: quantize_mxfp4 and write_trained_checkpoint
# --------------------------------------------------------------------------------------------

def _decode_mxfp4_f64(blocks, scales):
    """An independent float64 decode (element k: block k//32, byte (k%32)//2, low nibble even)."""
    lo, hi = FP4[blocks & 0x0F], FP4[blocks >> 4]
    vals = np.stack([lo, hi], axis=-1).reshape(blocks.shape[:-1] + (32,))
    vals = vals * np.exp2(scales.astype(np.float64) - 127)[..., None]
    return vals.reshape(blocks.shape[:-2] + (-1,))


def test_quantize_mxfp4(rng):
    w = (rng.standard_normal((3, 40, 96)) * rng.choice([1e-3, 0.02, 3.0], size=(3, 40, 1))).astype(np.float32)
    w[0, 0, :32] = 0.0                                   # an all-zero block
    blocks, scales = ck.quantize_mxfp4(w)
    assert blocks.shape == (3, 40, 3, 16) and scales.shape == (3, 40, 3)
    assert blocks.dtype == np.uint8 and scales.dtype == np.uint8
    deq = _decode_mxfp4_f64(blocks, scales)
    np.testing.assert_array_equal(deq, ck.dequantize_mxfp4(blocks, scales))
    # Each value is the nearest point of its block's grid; the block maximum fits without clipping.
    scale = np.exp2(scales.astype(np.float64) - 127)
    grid = np.unique(np.abs(FP4))
    x = np.abs(w.astype(np.float64)).reshape(3, 40, 3, 32) / scale[..., None]
    assert (x.max(axis=-1) <= 6).all()
    best = np.abs(x[..., None] - grid).min(axis=-1) * scale[..., None]
    err = np.abs(deq.reshape(3, 40, 3, 32) - w.reshape(3, 40, 3, 32))
    np.testing.assert_allclose(err, best, rtol=1e-6, atol=1e-30)
    nonzero = x.max(axis=-1) > 0
    assert (x.max(axis=-1)[nonzero] > 3).all()           # the smallest scale that fits
    # Values on the grid come back exactly.
    b2, s2 = ck.quantize_mxfp4(deq.astype(np.float32))
    np.testing.assert_array_equal(_decode_mxfp4_f64(b2, s2), deq)


def test_write_trained_checkpoint(tmp_path, rng):
    import gpt_oss_native as gon

    cfg = ck.model_config(CONFIGS["w4h64i96"] | {"vocab_size": 300, "eos_token_id": 299, "pad_token_id": 298})
    tensors = {}
    for name, dtype, shape in ck.hf_tensor_specs(cfg):
        if dtype == "U8":
            continue
        tensors[name] = (rng.standard_normal(shape) * 0.05).astype(np.float32)
    E, I, H = cfg["num_local_experts"], cfg["intermediate_size"], cfg["hidden_size"]
    for L in range(cfg["num_hidden_layers"]):
        pre = f"model.layers.{L}.mlp.experts."
        for part, shape in (("gate_up_proj", (E, 2 * I, H)), ("down_proj", (E, H, I))):
            b, s = ck.quantize_mxfp4((rng.standard_normal(shape) * 0.05).astype(np.float32))
            tensors[pre + part + "_blocks"], tensors[pre + part + "_scales"] = b, s
    out = ck.write_trained_checkpoint(tmp_path / "m", cfg, tensors, extra_files={"notes.txt": "hi"})
    assert (out / "notes.txt").read_text() == "hi" and not (out / "tokenizer.json").exists()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    for name, shard in index["weight_map"].items():
        with safe_open(str(out / shard), "pt") as f:
            t = f.get_tensor(name)
        if t.dtype == torch.uint8:
            np.testing.assert_array_equal(t.numpy(), tensors[name])
        else:
            assert t.dtype == torch.bfloat16
            np.testing.assert_array_equal(t.float().numpy(),
                                          torch.from_numpy(tensors[name]).bfloat16().float().numpy())
    # transformers and the runtime read it like any checkpoint.
    tokens = rng.integers(0, 300, size=12)
    ref = oracle.reference_logits(out, tokens)
    ctx = gon.Context(gon.Model(out), context_length=16, logits_capacity=12)
    ctx.append(tokens)
    ctx.process(logits="all")
    assert np.abs(ctx.logits_host() - ref).max() <= 1e-3
    with pytest.raises(ValueError, match="missing"):
        ck.write_trained_checkpoint(tmp_path / "bad", cfg, {k: v for k, v in tensors.items() if "lm_head" not in k})
    bad = dict(tensors)
    bad["lm_head.weight"] = bad["lm_head.weight"][:10]
    with pytest.raises(ValueError, match="shape"):
        ck.write_trained_checkpoint(tmp_path / "bad", cfg, bad)
