#!/usr/bin/env python3
"""Writes the seed corpora for the parser fuzzers.

The fuzzers (fuzz_safetensors, fuzz_json) start from these small valid inputs
and mutate them. The files are tiny and deterministic, so they are committed;
rerun this script (standard library only) after changing it:

    python3 cpp/fuzz/make_corpus.py

It rewrites cpp/fuzz/corpus/safetensors/*.safetensors and
cpp/fuzz/corpus/json/*.json next to this script, deleting nothing else.
"""

import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))

DTYPE_SIZE = {
    "BOOL": 1, "U8": 1, "I8": 1, "U16": 2, "I16": 2, "U32": 4, "I32": 4, "U64": 8, "I64": 8,
    "F16": 2, "BF16": 2, "F32": 4, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}


def safetensors(tensors, metadata=None, pad=0, order=None, gap=0, trailing=b""):
    """Serialises [(name, dtype, shape)] with tensors laid out in list order
    (`gap` bytes between them) and the header listing them in `order`."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = bytearray()
    entries = {}
    for i, (name, dtype, shape) in enumerate(tensors):
        n = DTYPE_SIZE[dtype]
        for d in shape:
            n *= d
        begin = len(data)
        data += bytes((i * 37 + k * 11) & 0xFF for k in range(n))
        entries[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [begin, begin + n]}
        data += b"\0" * gap
    for name in (order or [t[0] for t in tensors]):
        header[name] = entries[name]
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b" " * pad
    return struct.pack("<Q", len(text)) + text + bytes(data) + trailing


SAFETENSORS = {
    "empty_header": safetensors([]),
    "scalar_f32": safetensors([("x", "F32", [])]),
    "bf16_matrix": safetensors([("model.embed_tokens.weight", "BF16", [4, 3])], metadata={"format": "pt"}),
    "mxfp4_expert": safetensors(
        [
            ("model.layers.0.mlp.experts.gate_up_proj_blocks", "U8", [2, 4, 1, 16]),
            ("model.layers.0.mlp.experts.gate_up_proj_scales", "U8", [2, 4, 1]),
            ("model.layers.0.mlp.experts.gate_up_proj_bias", "BF16", [2, 4]),
        ],
        pad=6,
    ),
    "all_dtypes": safetensors([(f"t_{d.lower()}", d, [2]) for d in DTYPE_SIZE]),
    "unordered_gaps_empty": safetensors(
        [("a", "F16", [2, 2]), ("empty", "F32", [0, 7]), ("b", "I64", [1]), ("c", "F8_E4M3", [1, 1, 1, 1, 3])],
        metadata={"note": "caf\u00e9", "k": "v"},
        order=["c", "empty", "b", "a"],
        gap=3,
        trailing=b"\x01\x02",
    ),
}

JSON = {
    "config": {
        "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "hidden_size": 2880,
        "num_hidden_layers": 24, "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
        "num_local_experts": 32, "num_experts_per_tok": 4, "vocab_size": 201088, "rms_norm_eps": 1e-05,
        "rope_theta": 150000, "sliding_window": 128, "swiglu_limit": 7.0, "tie_word_embeddings": False,
        "eos_token_id": [200002, 199999], "pad_token_id": None,
        "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096,
                         "rope_type": "yarn", "truncate": False},
        "layer_types": ["sliding_attention", "full_attention"],
        "quantization_config": {"modules_to_not_convert": ["model.layers.*.self_attn"], "quant_method": "mxfp4"},
    },
    "index": {"metadata": {"total_size": 13761300984},
              "weight_map": {"model.embed_tokens.weight": "model-00000-of-00002.safetensors",
                             "lm_head.weight": "model-00002-of-00002.safetensors"}},
}

# Hand-written JSON texts (exercising what json.dumps would not write).
JSON_TEXT = {
    "numbers": b'[0, -0, 1, -1, 1.5, -2.25e-3, 1E10, 1e+2, 18446744073709551615, -9223372036854775808, '
               b'9223372036854775808, 1e400, 4.9406564584124654e-324, 0.1000000000000000055511151231257827]',
    "strings": b'["", "plain", "esc \\" \\\\ \\/ \\b \\f \\n \\r \\t", "\\u0041\\u00e9\\u20ac\\ud83d\\ude00\\u0000", '
               b'"raw caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf"]',
    "nested": b' {"a": [[], {}, [[{"b": [null, true, false]}]]], "a": {"dup": 1}, "": ""} \n',
    "deep": b"[" * 100 + b"]" * 100,
}


def write(directory, name, data):
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


def main():
    st_dir = os.path.join(HERE, "corpus", "safetensors")
    json_dir = os.path.join(HERE, "corpus", "json")
    for name, data in SAFETENSORS.items():
        write(st_dir, name + ".safetensors", data)
    for name, doc in JSON.items():
        write(json_dir, name + ".json", json.dumps(doc, indent=2).encode("utf-8"))
    for name, data in JSON_TEXT.items():
        write(json_dir, name + ".json", data)
    print(f"wrote {len(SAFETENSORS)} files to {st_dir} and {len(JSON) + len(JSON_TEXT)} to {json_dir}")


if __name__ == "__main__":
    main()
