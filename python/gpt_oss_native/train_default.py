"""Trains the embedded default model: a tiny gpt-oss that writes English about Python.

    python -m gpt_oss_native.train_default OUT_DIR [--steps N] [--threads N] [--seed N]

Why it exists: ``python -m gpt_oss_native generate`` and ``chat`` with no model of
their own need a model that answers in words, and it must ship inside the package
(a few MB) and be rebuildable from scratch on a CPU in minutes. This script makes
it from text every Python installation has:

* the corpus: ``pydoc_data.topics`` (the language reference as ``help()`` shows
  it) and the docstrings of a fixed list of standard-library modules;
* the vocabulary: the o200k tokens the corpus uses most, plus every token BPE
  forms on the way to them (so the subset stays closed under the merges that
  encoding those words needs), plus the 256 bytes, renumbered in the order of
  their o200k ranks (so merging by id, the runtime's rule, gives the same
  tokens), and the harmony special tokens after them (``tokenizer.json``);
* the data: harmony conversations rendered by the project's own harmony code: a
  user asks about a topic or a function, the assistant answers with a short
  analysis and then, on the final channel, with the documentation's text;
* the model: the real architecture (attention with sinks, sliding-window and
  full layers alternating, YaRN RoPE, top-k MoE with SwiGLU experts), trained
  in torch with the experts fake-quantised to MXFP4 for the last part of
  training (straight-through gradients), so the checkpoint's MXFP4 experts are
  what was trained; the other weights are rounded to bf16 when written;
* the checkpoint: the Hugging Face layout written by
  :func:`gpt_oss_native.checkpoint.write_trained_checkpoint`, plus
  ``heldout.jsonl`` (conversations kept out of training, for the tests) and
  ``training.json`` (the losses, timings and settings of the run).

Everything is seeded: the same seed, thread count and torch version give the same
weights (torch's deterministic algorithms are switched on).
"""

from __future__ import annotations

import argparse
import collections
import importlib
import inspect
import json
import math
import os
import pathlib
import random
import re
import sys
import time
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# ----------------------------------------------------------------------------------------------
# Settings
# ----------------------------------------------------------------------------------------------

SEED = 0
STEPS = 900
BATCH = 12            # sequences per step
SEQ_LEN = 256         # tokens per sequence (conversations are packed)
LR = 3e-3
WARMUP = 60
QAT_FROM = 0.6        # fraction of the steps after which the experts are fake-quantised to MXFP4
AUX_LOSS = 0.01       # router load-balancing loss (Switch Transformer style)
HELDOUT_FRACTION = 0.03
BASE_VOCAB = 2500     # o200k tokens kept (before adding the tokens BPE forms on the way to them)

MODEL = dict(
    num_hidden_layers=4, num_local_experts=8, num_experts_per_tok=2, hidden_size=128,
    intermediate_size=128, head_dim=32, num_attention_heads=4, num_key_value_heads=2,
    sliding_window=128,
)

# Harmony special tokens of the shipped vocabulary, in the order of their o200k ids.
SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|return|>", "<|constrain|>", "<|channel|>", "<|start|>",
            "<|end|>", "<|message|>", "<|call|>"]

# Standard-library modules whose docstrings join the corpus (present in CPython 3.11-3.13).
MODULES = [
    "builtins", "abc", "argparse", "array", "ast", "base64", "bisect", "calendar", "cmath", "codecs",
    "collections", "colorsys", "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime",
    "decimal", "difflib", "enum", "filecmp", "fnmatch", "fractions", "functools", "getopt", "gettext",
    "glob", "gzip", "hashlib", "heapq", "hmac", "html", "inspect", "io", "ipaddress", "itertools", "json",
    "keyword", "linecache", "locale", "logging", "math", "mimetypes", "numbers", "operator", "os",
    "os.path", "pathlib", "pickle", "platform", "pprint", "queue", "quopri", "random", "re", "sched",
    "secrets", "shelve", "shlex", "shutil", "signal", "socket", "sqlite3", "statistics", "string",
    "struct", "subprocess", "sys", "tarfile", "tempfile", "textwrap", "threading", "time", "timeit",
    "tokenize", "traceback", "types", "typing", "unicodedata", "unittest", "urllib.parse", "uuid",
    "warnings", "weakref", "zipfile", "zlib",
]

ROOT_QUESTIONS = [
    "What is {t}?", "Tell me about {t}.", "Explain {t}.", "What does the documentation say about {t}?",
    "Can you describe {t}?", "How does {t} work in Python?",
]
FUNC_QUESTIONS = [
    "What does {t} do?", "Explain {t}.", "How do I use {t}?", "Tell me about {t}.",
    "What is {t} in Python?",
]
ANALYSIS = [
    "The user asks about {t}. I will explain it from the Python documentation.",
    "The question is about {t}. I should answer with what the documentation says.",
    "We need to describe {t}. Keep the answer short and clear.",
]

# ----------------------------------------------------------------------------------------------
# Corpus
# ----------------------------------------------------------------------------------------------


_PUNCT = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                        "\u2014": "--", "\u2026": "...", "\u00a0": " ", "\u2022": "*", "\u2192": "->"})


def _clean(text: str) -> str:
    """ASCII text (common typographic punctuation spelled in ASCII, other characters dropped)."""
    text = text.translate(_PUNCT).replace("\t", "    ")
    text = "".join(ch for ch in text if ch == "\n" or (ch.isprintable() and ord(ch) < 128))
    return text.strip()


def _paragraphs(text: str) -> List[str]:
    return [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]


def _chunks(text: str, max_chars: int = 700) -> List[str]:
    """Paragraphs of a text grouped into answers of at most about max_chars (a longer paragraph alone)."""
    out, cur = [], ""
    for p in _paragraphs(text):
        if set(p.strip()) <= set("*=-~^"):  # reST underlines
            continue
        if cur and len(cur) + len(p) + 2 > max_chars:
            out.append(cur)
            cur = ""
        cur = p if not cur else cur + "\n\n" + p
        if len(cur) >= max_chars:
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def _topic_title(key: str, text: str) -> str:
    first = text.strip().splitlines()[0].strip() if text.strip() else key
    if len(first) > 60 or not first:
        first = key.replace("-", " ")
    return first


def documents() -> List[Tuple[str, str, str]]:
    """(kind, title, text) items of the corpus, in a fixed order: ("topic", 'The "assert" statement', ...)
    for pydoc's topics, ("func", "textwrap.dedent", ...) for docstrings."""
    import pydoc_data.topics

    items: List[Tuple[str, str, str]] = []
    topics = pydoc_data.topics.topics
    for key in sorted(topics):
        text = _clean(topics[key])
        title = _topic_title(key, text)
        body = text.split("\n", 2)[2] if text.count("\n") >= 2 and set(text.splitlines()[1]) <= set("*=-") else text
        for chunk in _chunks(body):
            items.append(("topic", title, chunk))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in MODULES:
            try:
                mod = importlib.import_module(name)
            except Exception:
                continue
            doc = _clean(inspect.getdoc(mod) or "")
            if len(doc) >= 80 and name != "builtins":
                items.append(("module", f"the {name} module", _chunks(doc)[0]))
            for attr in sorted(dir(mod)):
                if attr.startswith("_"):
                    continue
                try:
                    obj = getattr(mod, attr)
                except Exception:
                    continue
                if not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)):
                    continue
                if getattr(obj, "__module__", None) not in (name, "posixpath" if name == "os.path" else name,
                                                           "_" + name.split(".")[-1]) and name != "builtins":
                    continue
                doc = _clean(inspect.getdoc(obj) or "")
                if len(doc) < 60 or "\n" not in doc and len(doc) < 80:
                    continue
                title = attr if name == "builtins" else f"{name}.{attr}"
                items.append(("func", title, _chunks(doc)[0]))
    seen = set()
    out = []
    for it in items:
        if it[2] not in seen:
            seen.add(it[2])
            out.append(it)
    return out


def split_heldout(items, seed: int = SEED):
    """(train, heldout): a seeded HELDOUT_FRACTION of the items is kept out of training."""
    rng = random.Random(seed * 1000 + 7)
    idx = list(range(len(items)))
    rng.shuffle(idx)
    n = max(8, int(len(items) * HELDOUT_FRACTION))
    held = set(idx[:n])
    return [it for i, it in enumerate(items) if i not in held], [it for i, it in enumerate(items) if i in held]


def question(item, rng: random.Random) -> str:
    kind, title, _ = item
    return rng.choice(ROOT_QUESTIONS if kind in ("topic", "module") else FUNC_QUESTIONS).format(t=title)


def conversation(item, rng: random.Random, system: bool, analysis: bool = True,
                 before: Sequence = ()) -> List[dict]:
    """A harmony conversation about one corpus item, as plain dicts (role, channel, content):
    an optional system message, earlier turns about the items ``before`` (question and final
    answer, their analysis dropped as harmony drops it), the question, an analysis if asked,
    the final answer."""
    kind, title, text = item
    msgs = []
    if system:
        msgs.append({"role": "system", "date": f"{rng.randint(2024, 2027)}-{rng.randint(1, 12):02d}-"
                                                 f"{rng.randint(1, 28):02d}",
                     "effort": rng.choice(["low", "medium", "high"])})
    for b in before:
        msgs.append({"role": "user", "content": question(b, rng)})
        msgs.append({"role": "assistant", "channel": "final", "content": b[2]})
    msgs.append({"role": "user", "content": question(item, rng)})
    if analysis:
        msgs.append({"role": "assistant", "channel": "analysis",
                     "content": rng.choice(ANALYSIS).format(t=title)})
    msgs.append({"role": "assistant", "channel": "final", "content": text})
    return msgs


def training_conversations(train_items, seed: int = SEED) -> List[List[dict]]:
    """The training conversations, in training order: each item twice, half of them with a system
    message, 70% with an analysis before the answer, 15% after an earlier turn."""
    rng = random.Random(seed)
    convs = []
    for _ in range(2):
        for it in train_items:
            before = [rng.choice(train_items)] if rng.random() < 0.15 else []
            convs.append(conversation(it, rng, system=rng.random() < 0.5, analysis=rng.random() < 0.7,
                                      before=before))
    rng.shuffle(convs)
    return convs


def harmony_messages(conv: List[dict]):
    from . import harmony as H

    out = []
    for m in conv:
        if m["role"] == "system":
            out.append(H.Message.system(H.SystemContent(reasoning_effort=H.ReasoningEffort(m["effort"]),
                                                        conversation_start_date=m["date"])))
        elif m["role"] == "user":
            out.append(H.Message.user(m["content"]))
        else:
            out.append(H.Message(role=H.Role.ASSISTANT, content=m["content"], channel=m["channel"]))
    return out


def render_training(tok, conv: List[dict]) -> List[int]:
    """Tokens of a conversation as trained on: every message, the final answer ending with <|return|>
    (the analysis is kept: it is what the model should write before its answer)."""
    from . import harmony as H

    return H.render_conversation_for_training(tok, harmony_messages(conv), auto_drop_analysis=False)


def corpus_text(items) -> str:
    """All text the conversations are made of, for building the vocabulary."""
    parts = [t for _, _, t in items] + [title for _, title, _ in items]
    parts += ROOT_QUESTIONS + FUNC_QUESTIONS + ANALYSIS
    from .harmony import DEFAULT_MODEL_IDENTITY

    parts += [DEFAULT_MODEL_IDENTITY, "Knowledge cutoff: 2024-06", "Current date: 2025-01-31",
              "Reasoning: low medium high", "# Valid channels: analysis, commentary, final. Channel must be "
              "included for every message.", "system user assistant developer tool analysis commentary final",
              "0123456789 2024 2025 2026 2027 2028 2029 2030 -01 -02 -03 -04 -05 -06 -07 -08 -09 -10 -11 -12"]
    return "\n\n".join(parts)


# ----------------------------------------------------------------------------------------------
# Vocabulary
# ----------------------------------------------------------------------------------------------


def _bpe_path(piece: bytes, ranks: Dict[bytes, int]) -> Tuple[List[bytes], List[bytes]]:
    """tiktoken's BPE of one piece: (final tokens, every token formed on the way)."""
    parts = [piece[i:i + 1] for i in range(len(piece))]
    formed = []
    while len(parts) > 1:
        best, at = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
        formed.append(parts[at])
    return parts, formed


def build_vocabulary(text: str, base_vocab: int = BASE_VOCAB) -> List[bytes]:
    """The o200k tokens kept: the 256 bytes, the base_vocab tokens the text uses most, and every token
    BPE forms on the way to those; sorted by o200k rank."""
    import regex

    from ._vocab import O200K_PATTERN, real_o200k_ranks

    by_rank = real_o200k_ranks()
    if by_rank is None:
        raise RuntimeError("the o200k vocabulary is needed (install quicktok-v1)")
    ranks = {t: i for i, t in enumerate(by_rank)}
    pieces = collections.Counter(m.group().encode() for m in regex.finditer(O200K_PATTERN, text))
    counts: collections.Counter = collections.Counter()
    for piece, n in pieces.items():
        final, _ = _bpe_path(piece, ranks)
        for t in final:
            counts[t] += n
    keep = {bytes([b]) for b in range(256)}
    for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], ranks[kv[0]]))[:base_vocab]:
        keep.add(t)
        keep.update(_bpe_path(t, ranks)[1])
    return sorted(keep, key=lambda t: ranks[t])


def tokenizer_document(tokens: List[bytes]) -> dict:
    """tokenizer.json for the kept tokens (ids 0..n-1) and the harmony specials (ids n..)."""
    from ._vocab import tokenizer_json

    n = len(tokens)
    return tokenizer_json(tokens, specials={s: n + i for i, s in enumerate(SPECIALS)})


# ----------------------------------------------------------------------------------------------
# The model in torch (same semantics as the runtime; see docs/gpt-oss-model.md)
# ----------------------------------------------------------------------------------------------

FP4 = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)


def _torch():
    import torch

    return torch


def fake_mxfp4(w):
    """w [.., in] rounded to MXFP4 (blocks of 32 along the last axis, power-of-two scales, FP4 values),
    with the gradient passed straight through."""
    torch = _torch()
    q = mxfp4_round(w.detach())
    return w + (q - w).detach()


def mxfp4_round(w):
    torch = _torch()
    shape = w.shape
    b = w.reshape(-1, 32)
    amax = b.abs().amax(dim=1, keepdim=True) / 6.0
    mant, ex = torch.frexp(amax)                   # exactly as checkpoint.mxfp4_exponents
    e = torch.where(mant == 0.5, ex - 1, ex)
    e = torch.where(amax == 0, torch.full_like(e, -127), e).clamp(-127, 127)
    scale = torch.ldexp(torch.ones_like(amax), e)
    x = (b / scale).abs()
    grid = torch.tensor(FP4, dtype=w.dtype)
    # nearest FP4 magnitude (ties to the smaller, as in _quantize below)
    mid = (grid[1:] + grid[:-1]) / 2
    idx = torch.bucketize(x, mid, right=False)
    q = grid[idx] * torch.sign(b) * scale
    return q.reshape(shape)


def yarn_tables(cfg: dict, n: int):
    """cos, sin [n, head_dim/2] of YaRN RoPE (concentration included), as transformers computes them."""
    torch = _torch()
    hd, base = cfg["head_dim"], float(cfg["rope_theta"])
    rs = cfg["rope_scaling"]
    factor, orig = float(rs["factor"]), float(rs["original_max_position_embeddings"])

    def corr(rot):
        return (hd * math.log(orig / (rot * 2 * math.pi))) / (2 * math.log(base))

    low, high = corr(rs["beta_fast"]), corr(rs["beta_slow"])
    pos_freqs = base ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    extra, inter = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    ramp = ((torch.arange(hd // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp
    inv = inter * (1 - keep) + extra * keep
    conc = 0.1 * math.log(factor) + 1.0
    ang = torch.arange(n, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cos(ang) * conc, torch.sin(ang) * conc


def _rope(x, cos, sin):
    a, b = x.chunk(2, dim=-1)
    return torch_cat([a * cos - b * sin, b * cos + a * sin])


def torch_cat(xs):
    return _torch().cat(xs, dim=-1)


class TinyGptOss:
    """Parameters (HF names, fp32, experts as float [E, out, in]) and a training forward."""

    def __init__(self, cfg: dict, seed: int):
        torch = _torch()
        g = torch.Generator().manual_seed(seed)
        H, I, E = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_local_experts"]
        nq, nkv, hd, V = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"], cfg["vocab_size"]
        self.cfg = cfg

        def normal(*shape, std=0.02):
            return (torch.randn(*shape, generator=g) * std).requires_grad_()

        def const(v, *shape):
            return torch.full(shape, float(v)).requires_grad_()

        p = {"model.embed_tokens.weight": normal(V, H, std=0.05)}
        for L in range(cfg["num_hidden_layers"]):
            pre = f"model.layers.{L}."
            out_std = 0.02 / math.sqrt(2 * cfg["num_hidden_layers"])
            p.update({
                pre + "input_layernorm.weight": const(1, H),
                pre + "self_attn.q_proj.weight": normal(nq * hd, H), pre + "self_attn.q_proj.bias": const(0, nq * hd),
                pre + "self_attn.k_proj.weight": normal(nkv * hd, H), pre + "self_attn.k_proj.bias": const(0, nkv * hd),
                pre + "self_attn.v_proj.weight": normal(nkv * hd, H), pre + "self_attn.v_proj.bias": const(0, nkv * hd),
                pre + "self_attn.o_proj.weight": normal(H, nq * hd, std=out_std),
                pre + "self_attn.o_proj.bias": const(0, H),
                pre + "self_attn.sinks": const(0, nq),
                pre + "post_attention_layernorm.weight": const(1, H),
                pre + "mlp.router.weight": normal(E, H), pre + "mlp.router.bias": const(0, E),
                pre + "mlp.experts.gate_up_proj": normal(E, 2 * I, H),
                pre + "mlp.experts.gate_up_proj_bias": const(0, E, 2 * I),
                pre + "mlp.experts.down_proj": normal(E, H, I, std=out_std),
                pre + "mlp.experts.down_proj_bias": const(0, E, H),
            })
        p["model.norm.weight"] = const(1, H)
        p["lm_head.weight"] = normal(V, H)
        self.params = p
        self.qat = False
        self._rope = yarn_tables(cfg, 4096)

    def parameters(self):
        return list(self.params.values())

    def _norm(self, x, w):
        torch = _torch()
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg["rms_norm_eps"]) * w

    def _attention(self, x, L):
        torch = _torch()
        c, p, pre = self.cfg, self.params, f"model.layers.{L}.self_attn."
        B, T, _ = x.shape
        nq, nkv, hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        q = (x @ p[pre + "q_proj.weight"].T + p[pre + "q_proj.bias"]).view(B, T, nq, hd).transpose(1, 2)
        k = (x @ p[pre + "k_proj.weight"].T + p[pre + "k_proj.bias"]).view(B, T, nkv, hd).transpose(1, 2)
        v = (x @ p[pre + "v_proj.weight"].T + p[pre + "v_proj.bias"]).view(B, T, nkv, hd).transpose(1, 2)
        cos, sin = self._rope[0][:T], self._rope[1][:T]
        q, k = _rope(q, cos, sin), _rope(k, cos, sin)
        rep = nq // nkv
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)                       # [B, nq, T, T]
        i = torch.arange(T)
        allowed = i[None, :] <= i[:, None]
        if c["layer_types"][L] == "sliding_attention":
            allowed = allowed & (i[None, :] > i[:, None] - c["sliding_window"])
        s = s.masked_fill(~allowed, float("-inf"))
        sink = p[pre + "sinks"].view(1, nq, 1, 1).expand(B, nq, T, 1)
        a = torch.softmax(torch.cat([s, sink], dim=-1), dim=-1)[..., :T]
        o = (a @ v).transpose(1, 2).reshape(B, T, nq * hd)
        return o @ p[pre + "o_proj.weight"].T + p[pre + "o_proj.bias"]

    def _moe(self, x, L):
        torch = _torch()
        c, p, pre = self.cfg, self.params, f"model.layers.{L}.mlp."
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        E, k, lim = c["num_local_experts"], c["num_experts_per_tok"], c["swiglu_limit"]
        logits = x @ p[pre + "router.weight"].T + p[pre + "router.bias"]
        top, idx = logits.topk(k, dim=-1)
        w = torch.softmax(top, dim=-1)
        # load balancing: fraction of tokens routed to each expert x mean router probability
        frac = torch.zeros(E).index_add_(0, idx.reshape(-1), torch.ones(idx.numel())) / idx.numel()
        aux = E * (frac * torch.softmax(logits, dim=-1).mean(0)).sum()
        w1, w2 = p[pre + "experts.gate_up_proj"], p[pre + "experts.down_proj"]
        if self.qat:
            w1, w2 = fake_mxfp4(w1), fake_mxfp4(w2)
        b1, b2 = p[pre + "experts.gate_up_proj_bias"], p[pre + "experts.down_proj_bias"]
        out = torch.zeros_like(x)
        for e in range(E):
            rows, slot = (idx == e).nonzero(as_tuple=True)
            if rows.numel() == 0:
                continue
            h = x[rows] @ w1[e].T + b1[e]
            gate, up = h[:, 0::2].clamp(max=lim), h[:, 1::2].clamp(-lim, lim)
            act = (up + 1) * gate * torch.sigmoid(1.702 * gate)
            y = act @ w2[e].T + b2[e]
            out = out.index_add(0, rows, y * w[rows, slot, None])
        return out.reshape(shape), aux

    def forward(self, ids):
        """logits [B, T, V] and the summed router auxiliary loss."""
        p = self.params
        x = p["model.embed_tokens.weight"][ids]
        aux = 0.0
        for L in range(self.cfg["num_hidden_layers"]):
            pre = f"model.layers.{L}."
            x = x + self._attention(self._norm(x, p[pre + "input_layernorm.weight"]), L)
            m, a = self._moe(self._norm(x, p[pre + "post_attention_layernorm.weight"]), L)
            x = x + m
            aux = aux + a
        x = self._norm(x, p["model.norm.weight"])
        return x @ p["lm_head.weight"].T, aux

    def export(self, round_bf16: bool = True) -> Dict[str, np.ndarray]:
        """fp32 numpy tensors by HF name (experts still float [E, out, in]); bf16-rounded if asked."""
        torch = _torch()
        out = {}
        for name, t in self.params.items():
            a = t.detach().to(torch.float32)
            if name.endswith(("gate_up_proj", "down_proj")):
                a = mxfp4_round(a)
            elif round_bf16:
                a = a.to(torch.bfloat16).to(torch.float32)
            out[name] = a.numpy().copy()
        return out

    def load(self, arrays: Dict[str, np.ndarray]) -> None:
        torch = _torch()
        for name, a in arrays.items():
            with torch.no_grad():
                self.params[name].copy_(torch.from_numpy(np.asarray(a, dtype=np.float32)))


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


def full_config(vocab_size: int, eos: int, pad: int, model: Optional[dict] = None) -> dict:
    from .checkpoint import model_config

    return model_config({"preset": "tiny", **MODEL, **(model or {}), "vocab_size": vocab_size, "eos_token_id": eos,
                         "pad_token_id": pad})


def _batches(stream: np.ndarray, steps: int, seed: int, batch: int):
    rng = np.random.default_rng(seed)
    n = len(stream) - SEQ_LEN - 1
    for _ in range(steps):
        starts = rng.integers(0, n, size=batch)
        yield np.stack([stream[s:s + SEQ_LEN + 1] for s in starts])


def _eval_loss(model, seqs: List[np.ndarray]) -> float:
    """Mean next-token loss (nats) over the given sequences, one at a time (no padding)."""
    torch = _torch()
    total, n = 0.0, 0
    with torch.no_grad():
        for s in seqs:
            ids = torch.from_numpy(s[None, :].astype(np.int64))
            logits, _ = model.forward(ids[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum")
            total += float(loss)
            n += s.size - 1
    return total / n


def train(out_dir, steps: int = STEPS, threads: Optional[int] = None, seed: int = SEED, log=print,
          overwrite: bool = False, batch: int = BATCH, model: Optional[dict] = None,
          warmup: int = WARMUP) -> dict:
    """Builds the corpus, vocabulary and data, trains, and writes the checkpoint to out_dir.
    Returns the training record (also written as training.json). ``batch``, ``model``
    (overrides of MODEL) and ``warmup`` are for quick runs (tests); the shipped model uses the
    defaults."""
    torch = _torch()
    from .checkpoint import write_trained_checkpoint
    from .tokenizer import Tokenizer

    t_start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)

    items = documents()
    train_items, held_items = split_heldout(items, seed)
    tokens = build_vocabulary(corpus_text(train_items))
    doc = tokenizer_document(tokens)
    tok = Tokenizer.from_tokenizer_json(json.dumps(doc, ensure_ascii=False))
    n = len(tokens)
    ids = {s: n + i for i, s in enumerate(SPECIALS)}
    cfg = full_config(n + len(SPECIALS), ids["<|return|>"], ids["<|endoftext|>"], model)
    log(f"corpus: {len(items)} items ({len(train_items)} train, {len(held_items)} held out); "
        f"vocabulary {n} tokens + {len(SPECIALS)} special")

    convs = [render_training(tok, c) for c in training_conversations(train_items, seed)]
    stream = np.concatenate([np.asarray(c, dtype=np.int64) for c in convs])
    hrng = random.Random(seed + 1)
    held_convs = [conversation(it, hrng, system=False) for it in held_items]
    held_seqs = [np.asarray(render_training(tok, c), dtype=np.int64)[:SEQ_LEN + 1] for c in held_convs]
    log(f"training stream: {stream.size} tokens; {steps} steps of {batch}x{SEQ_LEN} "
        f"({steps * batch * SEQ_LEN / stream.size:.2f} passes); torch threads {torch.get_num_threads()}")

    overrides = model
    model = TinyGptOss(cfg, seed)
    decay = [t for name, t in model.params.items() if t.dim() >= 2 and "embed" not in name]
    other = [t for name, t in model.params.items() if not (t.dim() >= 2 and "embed" not in name)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": other, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    qat_step = int(steps * QAT_FROM)
    losses = []
    t_train = time.perf_counter()
    for step, rows in enumerate(_batches(stream, steps, seed, batch), 1):
        if step - 1 == qat_step:
            model.qat = True
        lr = LR * min(1.0, step / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / steps))))
        for g in opt.param_groups:
            g["lr"] = lr
        b = torch.from_numpy(rows)
        logits, aux = model.forward(b[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        (loss + AUX_LOSS * aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step % 50 == 0 or step == 1 or step == steps:
            el = time.perf_counter() - t_train
            log(f"step {step}/{steps} loss {np.mean(losses[-50:]):.3f} lr {lr:.2e} qat {model.qat} "
                f"({el:.0f} s, {step * batch * SEQ_LEN / el:.0f} tok/s)")
    train_s = time.perf_counter() - t_train

    # Held-out loss: trained (fp32, experts fake-quantised when QAT ran), then as written
    # (bf16 weights, MXFP4 experts).
    held_fp32 = _eval_loss(model, held_seqs)
    exported = model.export(round_bf16=True)
    qmodel = TinyGptOss(cfg, seed)
    qmodel.load(exported)
    held_written = _eval_loss(qmodel, held_seqs)
    log(f"held-out loss: {held_fp32:.4f} (trained) -> {held_written:.4f} (bf16 + MXFP4 as written); "
        f"perplexity {math.exp(held_written):.2f}")

    record = {
        "seed": seed, "steps": steps, "batch": batch, "model": {**MODEL, **(overrides or {})}, "seq_len": SEQ_LEN, "lr": LR, "qat_from_step": qat_step,
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "corpus_items": len(items), "train_items": len(train_items), "heldout_items": len(held_items),
        "train_stream_tokens": int(stream.size), "vocab_tokens": n,
        "loss_first_50": float(np.mean(losses[:50])), "loss_last_50": float(np.mean(losses[-50:])),
        "loss_curve": [round(float(np.mean(losses[i:i + 50])), 4) for i in range(0, len(losses), 50)],
        "losses": [round(x, 4) for x in losses],
        "heldout_loss_trained": held_fp32, "heldout_loss_written": held_written,
        "train_seconds": round(train_s, 1), "total_seconds": None,
    }
    heldout = [json.dumps(c) for c in held_convs]
    extra = {"heldout.jsonl": "\n".join(heldout) + "\n"}
    record["total_seconds"] = round(time.perf_counter() - t_start, 1)
    extra["training.json"] = json.dumps(record, indent=1) + "\n"
    write_trained_checkpoint(out_dir, cfg, _hf_arrays(exported), tokenizer=doc,
                             generation_config={"bos_token_id": ids["<|startoftext|>"],
                                                "eos_token_id": [ids["<|return|>"], ids["<|endoftext|>"],
                                                                 ids["<|call|>"]],
                                                "pad_token_id": ids["<|endoftext|>"], "do_sample": True},
                             extra_files=extra, overwrite=overwrite)
    log(f"wrote {out_dir} in {record['total_seconds']:.0f} s in all ({train_s:.0f} s training)")
    return record


def _hf_arrays(exported: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Float arrays by HF name, the experts as MXFP4 blocks and scales."""
    from .checkpoint import quantize_mxfp4

    out = {}
    for name, a in exported.items():
        if name.endswith(("gate_up_proj", "down_proj")):
            blocks, scales = quantize_mxfp4(a)
            out[name + "_blocks"], out[name + "_scales"] = blocks, scales
        else:
            out[name] = a
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gpt_oss_native.train_default",
                                description="Train the embedded default model (a tiny gpt-oss) from the "
                                            "Python documentation and write it as a checkpoint.")
    p.add_argument("out", help="output directory (must not exist or be empty, unless --force)")
    p.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1, as the shipped model was trained: the weights depend on "
                        "the thread count; on a shared 2-core machine one thread was also the faster)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--force", action="store_true", help="replace OUT")
    a = p.parse_args(argv)
    train(a.out, steps=a.steps, threads=a.threads, seed=a.seed, overwrite=a.force,
          log=lambda s: print(s, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
