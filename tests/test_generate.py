"""Text in, text out: Model.tokenizer, Context.append(str), streaming generation
with stop strings and stop tokens, the generate --prompt and chat commands.

A "scripted" checkpoint makes end-to-end checks exact: its attention and
experts contribute nothing and its unembedding maps each token of a script to
the next, so greedy decoding reproduces the script token for token.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import gpt_oss_native as gon
from gpt_oss_native import harmony
from gpt_oss_native.checkpoint import write_checkpoint

REAL_VOCAB = dict(preset="tiny", num_hidden_layers=2, hidden_size=128, intermediate_size=64)


@pytest.fixture(scope="module")
def text_model_path(tmp_path_factory):
    seed = int(np.random.SeedSequence().entropy % (2**31))
    return write_checkpoint(tmp_path_factory.mktemp("text") / "m", REAL_VOCAB, format="both", seed=seed,
                            progress=False, tokenizer="real")


@pytest.fixture(scope="module")
def text_model(text_model_path):
    return gon.Model(text_model_path)


def test_model_tokenizer(text_model, text_model_path, tmp_path):
    tok = text_model.tokenizer
    assert tok is text_model.tokenizer  # loaded once
    assert tok.n_vocab == 201088 and tok.encode("Hello world") == [13225, 2375]
    # original/ has no tokenizer.json of its own: the parent's is used.
    original = gon.Model(text_model_path / "original")
    assert original.tokenizer.encode("Hello world") == [13225, 2375]
    bare = write_checkpoint(tmp_path / "bare", REAL_VOCAB, progress=False, tokenizer="none")
    with pytest.raises(gon.CheckpointNotFoundError, match="tokenizer.json"):
        gon.Model(bare).tokenizer


def test_append_text(text_model):
    tok = text_model.tokenizer
    text = "<|start|>user<|message|>Ça va? 你好<|end|>"
    ctx = gon.Context(text_model, context_length=64)
    ctx.append(text)
    assert ctx.tokens.tolist() == tok.encode(text, allowed_special="all")
    assert ctx.tokens[0] == 200006 and ctx.tokens[-1] == 200007
    ctx.reset()
    ctx.append(text, allowed_special=set())
    assert ctx.tokens.tolist() == tok.encode_ordinary(text) and 200006 not in ctx.tokens.tolist()
    with pytest.raises(gon.InvalidArgumentError):
        ctx.append("\ud800")


def test_generate_streams_valid_text(text_model, rng):
    prompt = "<|start|>user<|message|>Tell me something<|end|><|start|>assistant"
    seed = int(rng.integers(0, 2**31))
    gen = text_model.generate(prompt, max_tokens=40, temperature=1.0, seed=seed, default_stop_tokens=False)
    pieces = list(gen)
    assert gen.finish_reason == "length" and len(gen.tokens) == 40
    tok = text_model.tokenizer
    assert "".join(pieces) == gen.text == tok.decode(gen.tokens)  # decode replaces invalid bytes like the stream
    again = text_model.generate(prompt, max_tokens=40, temperature=1.0, seed=seed, default_stop_tokens=False,
                                return_tokens=True)
    chunks = list(again)
    assert [c.token for c in chunks if c.token >= 0] == gen.tokens
    assert all(c.logprob <= 0 for c in chunks)
    # Same tokens as sampling by hand.
    ctx = gon.Context(text_model, context_length=128)
    ctx.append(prompt)
    assert [ctx.sample(temperature=1.0, seed=seed)[0] for _ in range(40)] == gen.tokens


def test_stop_strings_and_tokens(text_model, rng):
    prompt = [200006, 1428, 200008, 12194, 200007, 200006, 173781]
    seed = int(rng.integers(0, 2**31))
    full = text_model.generate(prompt, max_tokens=30, temperature=1.0, seed=seed, default_stop_tokens=False)
    text = "".join(full)
    # A stop string taken from the middle of the text: everything before its first occurrence, nothing after.
    stop = text[len(text) // 2: len(text) // 2 + 3]
    assert stop
    cut = text.index(stop)
    stopped = text_model.generate(prompt, max_tokens=30, temperature=1.0, seed=seed, default_stop_tokens=False,
                                  stop=["\x00never", stop])
    assert "".join(stopped) == text[:cut] and stopped.finish_reason == "stop_string"
    # A stop token: the fourth token sampled.
    target = full.tokens[3]
    first = full.tokens.index(target)
    by_token = text_model.generate(prompt, max_tokens=30, temperature=1.0, seed=seed, default_stop_tokens=False,
                                   stop_tokens=[target])
    out = "".join(by_token)
    assert by_token.finish_reason == "stop_token" and by_token.tokens == full.tokens[: first + 1]
    assert out == text_model.tokenizer.decode(full.tokens[:first])
    with pytest.raises(gon.InvalidArgumentError):
        text_model.generate(prompt, stop=[""])
    with pytest.raises(gon.InvalidArgumentError):
        text_model.generate("", max_tokens=3)
    for bad in (dict(temperature=-1.0), dict(top_p=0.0), dict(max_tokens=-1), dict(stop_tokens=[10**9])):
        with pytest.raises(gon.InvalidArgumentError):
            text_model.generate(prompt, **bad)  # raised when called, before anything is generated


def test_bytes_vocabulary_never_samples_ids_without_text(tmp_path):
    path = write_checkpoint(tmp_path / "b", REAL_VOCAB, progress=False, tokenizer="bytes")
    model = gon.Model(path)
    assert model.tokenizer.num_tokens == 256 + 1090
    gen = model.generate([1, 2, 3], max_tokens=64, temperature=1.0, seed=5, default_stop_tokens=False)
    text = "".join(gen)
    assert all(t < 256 or t >= 199998 for t in gen.tokens)
    assert isinstance(text, str)


# ---- a scripted model -------------------------------------------------------------------------

SCRIPT_TEXT = ["<|channel|>", "final", "<|message|>", "Hello", " world", "!", "<|return|>"]


def _scripted_checkpoint(path, tok, script_ids, seed):
    """Rewrites a checkpoint so that greedy decoding follows script_ids[i] -> script_ids[i+1]."""
    write_checkpoint(path, REAL_VOCAB, format="hf", seed=seed, progress=False, tokenizer="real")
    shard = next(path.glob("model-*.safetensors"))
    t = load_file(shard)
    H = REAL_VOCAB["hidden_size"]
    for name in list(t):
        if name.endswith("o_proj.weight") or name.endswith("o_proj.bias") or name.endswith("down_proj_bias"):
            t[name] = torch.zeros_like(t[name])
        if name.endswith("down_proj_blocks"):
            t[name] = torch.zeros_like(t[name])  # FP4 code 0 = 0.0
    t["model.norm.weight"] = torch.ones(H, dtype=torch.bfloat16)
    emb = t["model.embed_tokens.weight"].float()
    head = t["lm_head.weight"].float()
    for a, b in zip(script_ids[:-1], script_ids[1:]):
        e = emb[a]
        head[b] = e / e.pow(2).mean().sqrt()  # logit of b after a: |rmsnorm(e)|^2 = H
    t["lm_head.weight"] = head.to(torch.bfloat16)
    save_file(t, shard)


@pytest.fixture(scope="module")
def scripted_model_path(text_model, tmp_path_factory):
    tok = text_model.tokenizer
    ids = [tok.encode("assistant")[0]] + [tok.encode(s, allowed_special="all")[0] for s in SCRIPT_TEXT]
    assert len(set(ids)) == len(ids)
    path = tmp_path_factory.mktemp("scripted") / "m"
    _scripted_checkpoint(path, tok, ids, seed=7)
    return path


def test_scripted_generation(scripted_model_path):
    model = gon.Model(scripted_model_path)
    gen = model.generate("<|start|>user<|message|>Hi<|end|><|start|>assistant", max_tokens=20)
    text = "".join(gen)
    assert gen.finish_reason == "stop_token" and gen.tokens[-1] == 200002
    assert text == "<|channel|>final<|message|>Hello world!"
    messages = harmony.parse_messages(model.tokenizer, gen.tokens, harmony.Role.ASSISTANT)
    assert [(m.channel, m.text) for m in messages] == [("final", "Hello world!")]


def test_chat_command_streams_the_final_channel(scripted_model_path):
    proc = subprocess.run(
        [sys.executable, "-m", "gpt_oss_native", "chat", str(scripted_model_path), "--temperature", "0",
         "--max-tokens", "20", "--context-length", "1024"],
        input="Hi\nAnd again\n/exit\n", capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert proc.returncode == 0, proc.stderr
    replies = [l for l in proc.stdout.splitlines() if "Hello world!" in l]
    assert len(replies) == 2, proc.stdout
    stats = [l for l in proc.stdout.splitlines() if "tok/s" in l]
    assert len(stats) == 2
    # The second turn reuses the cached conversation and processes only what changed.
    assert " 0 from cache" in stats[0] and " 0 from cache" not in stats[1], stats


def _session(model, analysis, scripted):
    from gpt_oss_native.chat import ChatSession

    args = types.SimpleNamespace(reasoning="low", developer=None, analysis=analysis, max_tokens=64,
                                 temperature=0.0, top_p=1.0, seed=None, context_length=2048, max_batch_tokens=64)
    out = io.StringIO()
    out.isatty = lambda: True  # as on a terminal: dim with ANSI codes
    session = ChatSession(model, args, out)

    def fake_generate(**kwargs):  # the model's reply, scripted: analysis then final
        class Gen:
            tokens = scripted
            finish_reason = "stop_token"

            def __iter__(self):
                return iter(gon.GenerationChunk("", t, 0.0) for t in scripted)

        return Gen()

    session.ctx.generate = fake_generate
    return session, out


@pytest.mark.parametrize("analysis", ["dim", "show", "hide"])
def test_chat_shows_analysis_as_asked(text_model, analysis):
    tok = text_model.tokenizer
    # What the model would generate after "<|start|>assistant": an analysis message, then a
    # final one ended by <|return|>.
    analysis_msg = harmony.render_message(tok, harmony.Message.assistant("Let me think.", channel="analysis"))
    final_msg = harmony.render_message(tok, harmony.Message.assistant("Four.", channel="final"))
    assert analysis_msg[:2] == [200006, tok.encode("assistant")[0]] and final_msg[-1] == 200007
    reply = analysis_msg[2:] + final_msg[:-1] + [200002]
    session, out = _session(text_model, analysis, reply)
    stats = session.reply("What is 2+2?")
    text = out.getvalue()
    assert "Four." in text and stats["warnings"] == 0
    if analysis == "hide":
        assert "Let me think." not in text
    elif analysis == "dim":
        assert "\x1b[2mLet me think.\x1b[0m" in "".join(text.split("\x1b[0m\x1b[2m"))
    else:
        assert "[analysis] Let me think." in text
    assert [m.channel for m in session.messages if m.role == harmony.Role.ASSISTANT] == ["analysis", "final"]
