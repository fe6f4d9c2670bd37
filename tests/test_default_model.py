"""The embedded default model: a tiny gpt-oss trained on the Python documentation
(python/gpt_oss_native/default_model, made by gpt_oss_native.train_default).

Checked here: it predicts held-out conversations far better than a unigram model
of its training text, its greedy answers are English words and the same for any
thread count, its logits agree with transformers like any checkpoint's, its
vocabulary round-trips the corpus and keeps the harmony special tokens working,
the training script trains, and ``generate`` with no model prints text.
"""

from __future__ import annotations

import collections
import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import gpt_oss_native as gon
from gpt_oss_native import harmony as H
from gpt_oss_native import train_default as T
from gpt_oss_native._default import default_model_path, default_prompt

PATH = default_model_path()


@pytest.fixture(scope="module")
def model():
    return gon.Model(PATH)


@pytest.fixture(scope="module")
def heldout():
    with open(PATH / "heldout.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


@pytest.fixture(scope="module")
def corpus():
    """(train items, held-out items) rebuilt from this Python's documentation."""
    return T.split_heldout(T.documents())


def _nll(model, tokens):
    """Summed negative log-likelihood (nats, float64) of tokens[1:] given the tokens before."""
    ctx = gon.Context(model, context_length=len(tokens) + 1, logits_capacity=len(tokens))
    ctx.append(tokens)
    ctx.process(logits="all")
    logits = ctx.logits_host().astype(np.float64)[:-1]
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(tokens) - 1), tokens[1:]].sum())


def test_shipped_files():
    names = {p.name for p in PATH.iterdir()}
    assert {"config.json", "tokenizer.json", "model.safetensors.index.json", "heldout.jsonl",
            "training.json"} <= names
    size = sum(p.stat().st_size for p in PATH.iterdir())
    assert size < 10e6, f"the default model is {size / 1e6:.1f} MB"
    cfg = json.loads((PATH / "config.json").read_text())
    assert cfg["quantization_config"]["quant_method"] == "mxfp4"
    assert cfg["layer_types"][:2] == ["sliding_attention", "full_attention"]


def test_tokenizer_round_trips_the_corpus_and_keeps_the_specials(model, corpus):
    tok = model.tokenizer
    text = T.corpus_text(corpus[0] + corpus[1])
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert max(ids) < model.vocab_size
    # The words the corpus uses most are single tokens, as in o200k.
    assert len(tok.encode(" the")) == 1 and len(tok.encode(" function")) == 1
    for s in ["<|start|>", "<|message|>", "<|end|>", "<|channel|>", "<|return|>", "<|call|>", "<|constrain|>"]:
        assert tok.is_special(tok.special_token_id(s)) and tok.special_token_id(s) < model.vocab_size
    assert model.config["eos_token_id"] == tok.special_token_id("<|return|>")
    # The harmony code renders and parses with this vocabulary.
    conv = [H.Message.user("What is a list?"), H.Message(role=H.Role.ASSISTANT, content="A sequence.", channel="final")]
    tokens = H.render_conversation_for_training(tok, conv)
    assert tok.decode(tokens) == ("<|start|>user<|message|>What is a list?<|end|><|start|>assistant<|channel|>final"
                                  "<|message|>A sequence.<|return|>")
    parsed = H.parse_messages(tok, tokens)
    assert [(m.role, m.channel, m.content) for m in parsed][-1] == (H.Role.ASSISTANT, "final", "A sequence.")
    assert set(H.stop_tokens_for_assistant_actions(tok)) == {tok.special_token_id("<|return|>"),
                                                            tok.special_token_id("<|call|>")}


def test_vocabulary_is_closed_under_its_merges(model):
    """Each kept token is encoded as o200k encodes it: BPE of its bytes forms it through kept
    tokens only (a subset missing a token on the way would split it differently)."""
    pytest.importorskip("quicktok")
    from gpt_oss_native._vocab import rank_file_bytes, real_o200k_ranks

    ranks = real_o200k_ranks()
    if ranks is None:
        pytest.skip("the o200k vocabulary is not available")
    full = gon.Tokenizer.from_tiktoken_bytes(rank_file_bytes(ranks))
    tok = model.tokenizer
    base = tok.special_token_id("<|startoftext|>")
    rank = {t: i for i, t in enumerate(ranks)}
    kept = [tok.decode_single_token_bytes(i) for i in range(base)]
    assert [rank[t] for t in kept] == sorted(rank[t] for t in kept)  # renumbered in rank order
    for t in kept:
        assert tok.decode_tokens_bytes(tok.encode_bytes(t)) == full.decode_tokens_bytes(full.encode_bytes(t)), t


def test_heldout_perplexity_is_far_below_unigram(model, heldout, corpus):
    tok = model.tokenizer
    # Unigram model of the training conversations: float64 counts with add-one smoothing.
    counts = np.ones(model.vocab_size, dtype=np.float64)
    for conv in T.training_conversations(corpus[0]):
        np.add.at(counts, np.asarray(T.render_training(tok, conv)), 1.0)
    logp_unigram = np.log(counts / counts.sum())
    nll_model = nll_unigram = 0.0
    n = 0
    for conv in heldout:
        tokens = T.render_training(tok, conv)
        nll_model += _nll(model, tokens)
        nll_unigram += float(-logp_unigram[np.asarray(tokens[1:])].sum())
        n += len(tokens) - 1
    ppl_model, ppl_unigram = math.exp(nll_model / n), math.exp(nll_unigram / n)
    print(f"held-out: {len(heldout)} conversations, {n} tokens; perplexity {ppl_model:.2f} (model) vs "
          f"{ppl_unigram:.2f} (unigram)")
    assert ppl_model < 0.25 * ppl_unigram


def _answer(model, question, max_tokens=48):
    gen = model.generate(default_prompt(question), max_tokens=max_tokens, temperature=0.0, return_tokens=True)
    chunks = list(gen)
    return [c.token for c in chunks if c.token >= 0], "".join(c.text for c in chunks)


def test_greedy_answers_are_english_and_deterministic(heldout, corpus):
    questions = [next(m["content"] for m in c if m["role"] == "user") for c in heldout[:3]]
    vocab = {w.lower() for w in re.findall(r"[A-Za-z]+", T.corpus_text(corpus[0]))}
    runs = {}
    for threads in (1, 2, 2):
        m = gon.Model(PATH, threads=threads)
        runs.setdefault(threads, []).append([_answer(m, q) for q in questions])
    assert runs[2][0] == runs[2][1], "greedy output differs between runs"
    assert runs[1][0] == runs[2][0], "greedy output differs between 1 and 2 threads"
    texts = [text for _, text in runs[1][0]]
    for q, text in zip(questions, texts):
        print(f"Q: {q}\nA: {text}")
        words = re.findall(r"[A-Za-z]{2,}", text)
        assert sum(w.lower() in vocab for w in words) >= 5, text  # each answer has words of the corpus
    text = "".join(texts)
    words = re.findall(r"[A-Za-z]+", text)
    assert len(words) >= 40
    assert sum(w.lower() in vocab for w in words) >= 0.9 * len(words)
    assert sum(ch.isascii() for ch in text) >= 0.98 * len(text)
    assert sum(len(w) for w in words) >= 0.5 * len(text)  # mostly words, not symbols


def test_logits_agree_with_transformers(model, heldout):
    oracle = pytest.importorskip("oracle")
    tokens = T.render_training(model.tokenizer, heldout[0])[:160]
    ref = oracle.reference_logits(PATH, tokens)
    ctx = gon.Context(model, context_length=256, logits_capacity=len(tokens), max_batch_tokens=64)
    ctx.append(tokens)
    ctx.process(logits="all")
    ours = ctx.logits_host()
    scale = float(ref.max() - ref.min())
    delta = float(np.abs(ours.astype(np.float64) - ref).max())
    assert delta <= 1e-4 * scale + 1e-3, (delta, scale)
    assert (ours.argmax(1) == ref.argmax(1)).mean() >= 0.99


def test_training_smoke_and_reproducibility(tmp_path):
    """A few steps of the training script on a smaller model: the loss falls, the checkpoint loads,
    and a second run with the same seed writes the same bytes."""
    kwargs = dict(steps=24, batch=4, threads=1, warmup=4, log=lambda s: None,
                  model=dict(num_hidden_layers=2, hidden_size=64, intermediate_size=64, head_dim=16,
                             num_attention_heads=4, num_key_value_heads=2, num_local_experts=4))
    rec = T.train(tmp_path / "m", **kwargs)
    losses = rec["losses"]
    assert np.mean(losses[-6:]) < np.mean(losses[:6]) - 0.5, losses
    m = gon.Model(tmp_path / "m")
    tokens = m.tokenizer.encode("The assert statement")
    ctx = gon.Context(m, context_length=16)
    ctx.append(tokens)
    ctx.process()
    assert np.isfinite(ctx.logits_host()).all()
    T.train(tmp_path / "again", **kwargs)
    for name in ("model-00001-of-00001.safetensors", "tokenizer.json", "config.json", "heldout.jsonl"):
        assert (tmp_path / "m" / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name


def test_generate_with_no_model_prints_text():
    proc = subprocess.run([sys.executable, "-m", "gpt_oss_native", "generate"], capture_output=True, text=True,
                          timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    assert "embedded default" in proc.stderr
    words = re.findall(r"[A-Za-z]+", proc.stdout)
    assert len(words) >= 8, proc.stdout
    assert not re.fullmatch(r"[\d\s]*", proc.stdout)
