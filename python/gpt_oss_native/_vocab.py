"""Vocabularies for synthetic checkpoints: the ``tokenizer.json`` the writer puts
beside the weights.

* The real o200k_harmony vocabulary when it can be had offline: from the
  ``quicktok-v1`` package if it is installed, accepted only if the rank file it
  reproduces has the sha256 of OpenAI's ``o200k_base.tiktoken``.
* Otherwise a small consistent one: the 256 single bytes (ids 0-255) and the
  harmony special tokens at their real ids; the ids in between have no token
  (generation never samples them).

The file has the structure of the real gpt-oss ``tokenizer.json``: a byte-level
BPE model whose vocabulary maps GPT-2's byte-to-unicode spelling of each token to
its id (= its BPE rank), the merges that rebuild every token, the o200k
pre-tokenisation pattern, and the special tokens as added tokens.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path
from typing import Dict, List, Optional, Tuple

O200K_BASE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
NUM_BASE_TOKENS = 199998
VOCAB_SIZE = 201088

O200K_PATTERN = "|".join(
    [
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
        r"\p{N}{1,3}",
        r" ?[^\s\p{L}\p{N}]+[\r\n/]*",
        r"\s*[\r\n]+",
        r"\s+(?!\S)",
        r"\s+",
    ]
)

_NAMED_SPECIALS = {
    199998: "<|startoftext|>",
    199999: "<|endoftext|>",
    200002: "<|return|>",
    200003: "<|constrain|>",
    200005: "<|channel|>",
    200006: "<|start|>",
    200007: "<|end|>",
    200008: "<|message|>",
    200012: "<|call|>",
}


def harmony_special_tokens() -> Dict[str, int]:
    """The o200k_harmony special tokens, text -> id (199998 .. 201087)."""
    return {_NAMED_SPECIALS.get(i, f"<|reserved_{i}|>"): i for i in range(NUM_BASE_TOKENS, VOCAB_SIZE)}


def rank_file_bytes(ranks: List[bytes]) -> bytes:
    """The tiktoken rank file for tokens listed by rank."""
    return b"".join(base64.b64encode(t) + b" " + str(i).encode() + b"\n" for i, t in enumerate(ranks))


def real_o200k_ranks() -> Optional[List[bytes]]:
    """The o200k_base tokens by rank from quicktok-v1, or None when it is not installed or
    does not reproduce OpenAI's rank file exactly."""
    try:
        import quicktok  # type: ignore
    except ImportError:
        return None
    try:
        enc = quicktok.get_encoding("o200k_base")
        ranks = [enc.decode_single_token_bytes(i) for i in range(NUM_BASE_TOKENS)]
    except Exception:
        return None
    if hashlib.sha256(rank_file_bytes(ranks)).hexdigest() != O200K_BASE_SHA256:
        return None
    return ranks


def _byte_to_unicode() -> Dict[int, str]:
    # GPT-2's reversible map from bytes to printable characters (used by byte-level BPE).
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def _merges(ranks: List[bytes]) -> List[Tuple[bytes, bytes]]:
    """Every (left, right) split of every multi-byte token into two tokens, ordered by the rank
    of the token they make (then by the ranks of the parts)."""
    index = {t: i for i, t in enumerate(ranks)}
    merges = []
    for rank, token in enumerate(ranks):
        if len(token) < 2:
            continue
        local = []
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in index and right in index:
                local.append((index[left], index[right], left, right))
        local.sort()
        merges.extend((rank, l, r) for _, _, l, r in local)
    merges.sort(key=lambda m: m[0])
    return [(l, r) for _, l, r in merges]


def tokenizer_json(ranks: Optional[List[bytes]], specials: Optional[Dict[str, int]] = None) -> dict:
    """The tokenizer.json document for tokens by rank (None: the small byte vocabulary).

    ``specials`` (text -> id) replaces the harmony special tokens at their o200k ids, for a
    vocabulary renumbered to fewer ids (the trained default model's)."""
    if ranks is None:
        ranks = [bytes([b]) for b in range(256)]
    b2u = _byte_to_unicode()
    spell = lambda t: "".join(b2u[b] for b in t)  # noqa: E731
    vocab = {spell(t): i for i, t in enumerate(ranks)}
    merges = [[spell(l), spell(r)] for l, r in _merges(ranks)]
    added = [
        {"id": i, "content": text, "single_word": False, "lstrip": False, "rstrip": False, "normalized": False,
         "special": True}
        for text, i in sorted((specials or harmony_special_tokens()).items(), key=lambda kv: kv[1])
    ]
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "Sequence",
            "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": O200K_PATTERN}, "behavior": "Isolated", "invert": False},
                {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
            ],
        },
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": merges,
        },
    }


@functools.lru_cache(maxsize=2)
def _document(real: bool) -> Optional[str]:
    ranks = real_o200k_ranks() if real else None
    if real and ranks is None:
        return None
    return json.dumps(tokenizer_json(ranks), ensure_ascii=False)


def write_tokenizer_json(path: Path, real: Optional[bool] = None) -> str:
    """Writes tokenizer.json at `path`; returns "o200k_harmony" or "bytes" (which vocabulary).
    real=None uses the real vocabulary when available, True requires it, False never uses it.
    The document is built once per process (the real one takes a few seconds)."""
    doc = None if real is False else _document(True)
    if real is True and doc is None:
        raise RuntimeError("the real o200k vocabulary is not available (install quicktok-v1)")
    kind = "o200k_harmony"
    if doc is None:
        doc, kind = _document(False), "bytes"
    Path(path).write_text(doc, encoding="utf-8")
    return kind
