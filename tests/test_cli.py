"""The command line: generate (with the embedded default and with a given
model), make-checkpoint and info, run as a user would run them."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np

import gpt_oss_native as gon


def _run(args, env=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "gpt_oss_native", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_generate_with_embedded_default(tmp_path):
    env = {"GPT_OSS_NATIVE_CACHE": str(tmp_path / "cache")}
    first = _run(["generate", "--max-tokens", "12"], env)
    assert "embedded default" in first.stderr and "tok/s" in first.stderr
    assert re.search(r"[A-Za-z]{3,}", first.stdout), first.stdout  # an answer in words, not ids
    assert not (tmp_path / "cache").exists()  # the model ships in the package: nothing is written
    second = _run(["generate", "--max-tokens", "12"], env)
    assert second.stdout == first.stdout  # greedy: same text
    ids = _run(["generate", "--tokens", "5", "6", "7", "--max-tokens", "4"], env)
    generated = next(line for line in ids.stdout.splitlines() if line.startswith("generated:"))
    assert len(generated.split()[1:]) == 4


def test_tiny_random_model_is_still_available(tmp_path, monkeypatch):
    from gpt_oss_native._default import tiny_model_path

    monkeypatch.setenv("GPT_OSS_NATIVE_CACHE", str(tmp_path / "cache"))
    path = tiny_model_path(quiet=True)
    assert path.is_relative_to(tmp_path) and tiny_model_path(create=False) == path
    out = _run(["generate", str(path), "--max-tokens", "3"]).stdout
    assert len(next(line for line in out.splitlines() if line.startswith("generated:")).split()) == 4


def test_generate_matches_the_python_api(small_model_path, rng):
    prompt = rng.integers(0, 1000, size=7).tolist()
    out = _run(["generate", str(small_model_path), "--tokens", ",".join(map(str, prompt)), "--max-tokens", "6",
                "--temperature", "0.9", "--seed", "4"]).stdout
    generated = [int(t) for t in next(l for l in out.splitlines() if l.startswith("generated:")).split()[1:]]
    model = gon.Model(small_model_path)
    ctx = gon.Context(model, context_length=4096)
    ctx.append(prompt)
    expected = [ctx.sample(temperature=0.9, seed=4)[0] for _ in range(6)]
    assert generated == expected


def test_make_checkpoint_and_info(tmp_path):
    out = tmp_path / "m"
    _run(["make-checkpoint", "--preset", "tiny", "--format", "original", "--layers", "3", "--vocab", "512",
          "--set", "eos_token_id=511", "--set", "pad_token_id=510", "-q", str(out)])
    info = _run(["info", str(out)]).stdout
    assert "format: original" in info and "num_layers: 3" in info and "vocab_size: 512" in info
    model = gon.Model(out)
    ctx = gon.Context(model, context_length=16)
    ctx.append([1, 2, 3])
    ctx.process()
    assert np.isfinite(ctx.logits).all()


def test_errors_are_reported_not_raised(tmp_path):
    proc = _run(["generate", str(tmp_path / "missing")], check=False)
    assert proc.returncode == 1
    assert "error:" in proc.stderr and "Traceback" not in proc.stderr
    proc = _run(["info", str(tmp_path)], check=False)
    assert proc.returncode == 1 and "config.json" in proc.stderr


# ---- interruption, pipes, bad options, the terminal ---------------------------------------------
#
# chat and generate run in a pseudo-terminal (pexpect) as a user runs them: Ctrl-C is the
# terminal's interrupt character, arrow keys are escape sequences read by readline.

import json
import re
import signal
import time

import pexpect
import pytest

from gpt_oss_native import harmony
from gpt_oss_native.checkpoint import write_checkpoint

PROMPT = re.compile(r"\n(?:\x1b\[\?2004h)?> ")  # the chat prompt (readline may switch bracketed paste on first)
LATENCY_S = 2.0  # Ctrl-C to the message saying the work stopped, on a loaded CI machine
TIMEOUT = 300


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    """The embedded default's kind of model: tiny preset, random weights, the real vocabulary."""
    return write_checkpoint(tmp_path_factory.mktemp("chat") / "m", "tiny", format="hf", seed=0, progress=False,
                            tokenizer="real")


@pytest.fixture(scope="module")
def bytes_model(tmp_path_factory):
    """A model whose tokenizer has only the 256 bytes and the special tokens (no quicktok-v1)."""
    return write_checkpoint(tmp_path_factory.mktemp("bytes") / "m",
                            dict(preset="tiny", num_hidden_layers=2, hidden_size=128, intermediate_size=64),
                            format="hf", seed=3, progress=False, tokenizer="bytes")


def _default_sigint():
    # A test run started in the background of a non-interactive shell inherits SIGINT ignored, and a
    # program started with SIGINT ignored rightly keeps ignoring Ctrl-C: give the child the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(args, tmp_path, env=None, timeout=TIMEOUT):
    inputrc = tmp_path / "inputrc"
    inputrc.write_text("set enable-bracketed-paste off\n")
    child = pexpect.spawn(sys.executable, ["-m", "gpt_oss_native", *map(str, args)],
                          env={**os.environ, "TERM": "xterm", "INPUTRC": str(inputrc), **(env or {})},
                          encoding="utf-8", codec_errors="replace", timeout=timeout, dimensions=(50, 300),
                          preexec_fn=_default_sigint)
    child.transcript = []

    class Log:
        def write(self, s):
            child.transcript.append(s)

        def flush(self):
            pass

    child.logfile_read = Log()
    return child


def _end(child):
    """Waits for the program to exit; returns (exit status, everything it printed)."""
    child.expect(pexpect.EOF)
    child.close()
    text = "".join(child.transcript)
    assert "Traceback" not in text, text
    return child.exitstatus, text


def _interrupt(child, pattern):
    """Ctrl-C, then the time until `pattern` is printed."""
    t0 = time.monotonic()
    child.sendintr()
    child.expect(pattern)
    return time.monotonic() - t0


def _saved(child, path):
    child.sendline(f"/save {path}")
    child.expect(r"\[saved \d+ messages")
    child.expect(PROMPT)
    return json.loads(path.read_text())


def _users(saved):
    return [m["content"] for m in saved["messages"] if m["role"] == "user"]


def _long_tokens(n):
    return ",".join(str(10 + (i * 7919) % 5000) for i in range(n))


def test_generate_ctrl_c_during_a_long_prefill(chat_model, tmp_path):
    child = _spawn(["generate", chat_model, "--tokens", _long_tokens(16000), "--max-tokens", "4"], tmp_path)
    child.expect("loaded")
    time.sleep(0.5)  # into the prefill, which takes seconds here
    latency = _interrupt(child, r"interrupted during the prefill \((\d+) of 16000 prompt tokens processed\)")
    assert latency < LATENCY_S
    assert 0 < int(child.match.group(1)) < 16000
    status, text = _end(child)
    assert status == 130 and "generated:" not in text


def test_generate_ctrl_c_during_decoding(chat_model, tmp_path):
    child = _spawn(["generate", chat_model, "--max-tokens", "5000", "--temperature", "1", "--seed", "1"], tmp_path)
    child.expect(r"generated:( \d+){3}")
    latency = _interrupt(child, r"interrupted after (\d+) generated tokens")
    assert latency < LATENCY_S and int(child.match.group(1)) >= 3
    status, text = _end(child)
    assert status == 130
    # One line on stderr, after the tokens' line was ended.
    tail = text[text.index("^C") if "^C" in text else 0:]
    assert tail.count("interrupted") == 1


@pytest.mark.parametrize("mode", [["--max-tokens", "2000"], ["--prompt", "Hello", "--max-tokens", "2000"]])
def test_generate_into_a_closed_pipe(chat_model, mode):
    proc = subprocess.Popen([sys.executable, "-m", "gpt_oss_native", "generate", str(chat_model), *mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.read(10)  # what `| head -c 10` reads before it exits
    proc.stdout.close()
    _, err = proc.communicate(timeout=TIMEOUT)
    assert len(first) == 10
    assert proc.returncode == 141, err.decode()  # 128 + SIGPIPE, as the shell reports `yes | head`
    assert b"Traceback" not in err and b"BrokenPipe" not in err and b"Exception ignored" not in err


def test_generation_cut_by_the_context_length_says_so(chat_model):
    for prompt in (["--tokens", "1"], ["--prompt", "Hi", "--seed", "1"]):
        proc = _run(["generate", chat_model, *prompt, "--max-tokens", "40", "--context-length", "12"])
        lines = [l for l in proc.stderr.splitlines() if "context length" in l]
        assert len(lines) == 1 and "12 tokens" in lines[0], proc.stderr


BAD_OPTIONS = [
    (["--temperature", "-1"], "--temperature"),
    (["--top-p", "1.5"], "--top-p"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "-0.5"], "--top-p"),
    (["--seed", "-1"], "--seed"),
    (["--max-tokens", "-1"], "--max-tokens"),
    (["--context-length", "0"], "--context-length"),
    (["--threads", "0"], "--threads"),
    (["--threads", str(4 * (os.cpu_count() or 1) + 1)], "--threads"),
    (["--max-batch-tokens", "0"], "--max-batch-tokens"),
]


def _assert_usage_error(proc, needle):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "loaded" not in proc.stderr and "creating" not in proc.stderr


@pytest.mark.parametrize("command", ["generate", "chat"])
@pytest.mark.parametrize("args,needle", BAD_OPTIONS)
def test_bad_options_fail_before_loading(command, args, needle, tmp_path):
    # The checkpoint does not exist: an error about the option proves nothing was loaded first.
    proc = _run([command, str(tmp_path / "missing"), *args], check=False)
    _assert_usage_error(proc, needle)
    if command == "generate":  # and the embedded default is not even written
        proc = _run([command, *args], env={"GPT_OSS_NATIVE_CACHE": str(tmp_path / "cache")}, check=False)
        _assert_usage_error(proc, needle)
        assert not (tmp_path / "cache" / "models").exists() or not any((tmp_path / "cache" / "models").iterdir())


@pytest.mark.parametrize("args", [["--threads", "0"], ["--threads", "100000"]])
def test_bench_bad_options_fail_before_loading(args, tmp_path):
    _assert_usage_error(_run(["bench", str(tmp_path / "missing"), *args], check=False), "--threads")


@pytest.mark.parametrize("command", ["generate", "chat", "bench"])
def test_unknown_kernel_set_fails_before_loading(command, tmp_path):
    proc = _run([command, str(tmp_path / "missing")], env={"GON_MATMUL_ISA": "avx9000"}, check=False)
    _assert_usage_error(proc, "GON_MATMUL_ISA='avx9000'")


def test_unwritable_cache_directory_does_not_matter_to_the_shipped_default(tmp_path):
    # The embedded default model ships inside the package: generate with no model writes nothing, so a
    # cache directory that cannot be created is no obstacle.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = _run(["generate", "--max-tokens", "8"], env={"GPT_OSS_NATIVE_CACHE": str(blocker / "cache")}, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (blocker.parent / "cache").exists()


def test_unwritable_cache_directory_check(tmp_path, monkeypatch):
    # The check itself, for a default that would have to be written: a clear usage error.
    from gpt_oss_native import _default, _terminal

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("GPT_OSS_NATIVE_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(_default, "default_model_path", lambda: tmp_path / "not-written")
    with pytest.raises(_terminal.UsageError, match="is not writable"):
        _terminal.check_cache_writable()


def test_chat_context_too_small_for_the_system_prompt(chat_model):
    proc = _run(["chat", chat_model, "--context-length", "40"], check=False)
    _assert_usage_error(proc, "too small for the system prompt")


def test_chat_ctrl_c_during_a_long_prefill_keeps_the_conversation(chat_model, tmp_path):
    developer = "The quick brown fox jumps over the lazy dog. " * 1300  # about 13000 tokens
    child = _spawn(["chat", chat_model, "--developer", developer, "--context-length", "16384", "--max-tokens", "6",
                    "--seed", "2"], tmp_path)
    child.expect(PROMPT)
    child.sendline("first message")
    time.sleep(0.5)  # into the prompt's processing, which takes seconds here
    latency = _interrupt(child, r"interrupted while processing the prompt \((\d+) of (\d+) tokens\); "
                                r"the message was not kept")
    assert latency < LATENCY_S, latency
    assert 0 < int(child.match.group(1)) < int(child.match.group(2))
    child.expect(PROMPT)
    # The conversation goes on: the prompt processing resumes from the cache it kept.
    child.sendline("second message")
    child.expect(r"prompt: (\d+) new tokens in [\d.]+ s, (\d+) from cache; ")
    assert int(child.match.group(2)) > 0
    child.expect(PROMPT)
    saved = _saved(child, tmp_path / "conv.json")
    assert _users(saved) == ["second message"]
    assert saved["messages"][1]["role"] == "developer" and "<|start|>user<|message|>second message<|end|>" in \
        saved["harmony"]
    child.sendeof()
    status, _ = _end(child)
    assert status == 0


def test_chat_ctrl_c_during_a_reply_keeps_it_and_goes_on(chat_model, tmp_path):
    child = _spawn(["chat", chat_model, "--max-tokens", "100000", "--seed", "3"], tmp_path)
    child.expect(PROMPT)
    child.sendline("tell me a long story")
    child.expect(r"\n")
    time.sleep(2.0)  # decoding by now (the prompt is short)
    latency = _interrupt(child, r"interrupted after (\d+) tokens; the reply so far is kept")
    assert latency < LATENCY_S and int(child.match.group(1)) > 0
    child.expect(r"; cancelled\]")
    child.expect(PROMPT)
    first = _saved(child, tmp_path / "one.json")
    assert _users(first) == ["tell me a long story"]
    # Again: the second turn reuses the cache of the first (the interrupted reply included).
    child.sendline("and another")
    child.expect(r"\n")
    time.sleep(2.0)
    _interrupt(child, r"interrupted after \d+ tokens")
    child.expect(r"prompt: (\d+) new tokens in [\d.]+ s, (\d+) from cache; cancelled\]")
    assert int(child.match.group(2)) > 0
    child.expect(PROMPT)
    second = _saved(child, tmp_path / "two.json")
    assert _users(second) == ["tell me a long story", "and another"]
    assert second["messages"][:len(first["messages"])] == first["messages"]
    child.sendeof()
    status, _ = _end(child)
    assert status == 0


def test_chat_line_editing_history_and_ctrl_c_at_the_prompt(chat_model, tmp_path):
    child = _spawn(["chat", chat_model, "--max-tokens", "4", "--seed", "4"], tmp_path)
    child.expect(PROMPT)
    child.send("a line given up")
    time.sleep(0.3)
    child.sendintr()  # Ctrl-C at the prompt: the line is dropped, a fresh prompt
    child.expect(PROMPT)
    child.send("hllo")
    child.send("\x1b[D" * 3)  # left arrow three times: after the "h"
    child.send("e")
    child.send("\r")
    child.expect(r"\[\d+ tokens, ")
    child.expect(PROMPT)
    child.send("\x1b[A")  # up arrow: the last line again
    time.sleep(0.3)
    child.send("\x1b[D" * 5 + "say ")  # and edit it: "say hello"
    child.send("\r")
    child.expect(r"\[\d+ tokens, ")
    child.expect(PROMPT)
    child.sendline("/help")
    child.expect("/save FILE")
    child.expect(PROMPT)
    child.sendline("/nonsense")
    child.expect("unknown command /nonsense")
    child.expect(PROMPT)
    child.sendline(f"/save {tmp_path / 'no-such-dir' / 'x.json'}")
    child.expect("error: cannot write")
    child.expect(PROMPT)
    saved = _saved(child, tmp_path / "conv.json")
    assert _users(saved) == ["hello", "say hello"]
    assert [m["role"] for m in saved["messages"]][:2] == ["system", "user"]
    child.sendeof()  # Ctrl-D: a newline and a clean exit
    status, text = _end(child)
    assert status == 0 and text.endswith("\r\n")


def test_chat_shows_the_parsers_warnings_dimmed(chat_model):
    import io
    import types

    model = gon.Model(chat_model)
    args = types.SimpleNamespace(reasoning="low", developer=None, analysis="dim", max_tokens=16, temperature=0.0,
                                 top_p=1.0, seed=None, context_length=1024, max_batch_tokens=64)
    out = io.StringIO()
    out.isatty = lambda: True
    from gpt_oss_native.chat import ChatSession

    session = ChatSession(model, args, out)
    tok = model.tokenizer
    # A malformed reply: a reserved special token in the header, a control byte in the text.
    scripted = [200005, 200025] + tok.encode("final") + [200008] + tok.encode("ok\x1b[31m red") + [200002]

    def fake_generate(**kwargs):
        class Gen:
            tokens = scripted
            finish_reason = "stop_token"

            def __iter__(self):
                return iter(gon.GenerationChunk("", t, 0.0) for t in scripted)

        return Gen()

    session.ctx.generate = fake_generate
    stats = session.reply("hi")
    text = out.getvalue()
    assert stats["warnings"] >= 1
    assert "\x1b[2m[harmony: " in text and "reserved_200025" in text
    assert "<|reserved_" not in text and "\x1b[31m" not in text and "ok\ufffd[31m red" in text


def test_bytes_vocabulary_prints_no_reserved_tokens_or_control_bytes_to_a_terminal(bytes_model, tmp_path):
    child = _spawn(["generate", bytes_model, "--prompt", "Hi", "--max-tokens", "400", "--temperature", "1",
                    "--seed", "11"], tmp_path)
    status, text = _end(child)
    assert status == 0
    assert "<|reserved_" not in text
    assert not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]", text), repr(text)
    # Through a pipe the text is left as the model wrote it.
    raw = _run(["generate", bytes_model, "--prompt", "Hi", "--max-tokens", "400", "--temperature", "1",
                "--seed", "11"]).stdout
    assert "<|reserved_" in raw or re.search(r"[\x00-\x08\x0b-\x1f\x7f]", raw)


def test_return_tokens_chunks_unpack_as_text_token_logprob(bytes_model):
    gen = gon.Model(bytes_model).generate([1, 2, 3], max_tokens=5, temperature=0, return_tokens=True)
    for text, token, logprob in gen:
        assert isinstance(text, str) and isinstance(token, int) and logprob <= 0
    chunk = gon.GenerationChunk("a", 7, -0.5)
    assert tuple(chunk) == ("a", 7, -0.5) and chunk.token == 7


def test_logits_tensor_kept_until_exit_prints_no_leak_warning(small_model_path):
    code = ("import torch, gpt_oss_native as gon\n"
            f"m = gon.Model({str(small_model_path)!r})\n"
            "ctx = gon.Context(m, context_length=16)\n"
            "ctx.append([1, 2, 3]); ctx.process()\n"
            "KEPT = torch.from_dlpack(ctx.logits)\n"
            "VIEW = ctx.logits\n"
            "del ctx, m\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "nanobind: leaked" not in proc.stderr and "leak" not in proc.stderr.lower(), proc.stderr


def test_chat_session_after_an_interrupted_reply_matches_a_fresh_context(chat_model):
    """The KV cache stays consistent with the conversation: after a reply cut by
    Context.cancel() (what Ctrl-C calls) and a further turn, the context holds the rendered
    conversation, and its cache gives the logits a fresh context computes from its tokens."""
    import io
    import threading
    import types

    from gpt_oss_native.chat import ChatSession

    model = gon.Model(chat_model)
    args = types.SimpleNamespace(reasoning="low", developer=None, analysis="dim", max_tokens=100000,
                                 temperature=1.0, top_p=1.0, seed=5, context_length=4096, max_batch_tokens=32)
    session = ChatSession(model, args, io.StringIO())
    timer = threading.Timer(1.5, session.ctx.cancel)
    timer.start()
    stats = session.reply("first")
    timer.join()
    assert stats["finish_reason"] == "cancelled" and stats["tokens"] > 0
    assert [m.role for m in session.messages][-2:] == [harmony.Role.USER, harmony.Role.ASSISTANT]
    session.args.max_tokens = 8
    stats = session.reply("second")
    assert stats["finish_reason"] != "cancelled" and stats["cached_tokens"] > 0
    tok = model.tokenizer
    turns = session.messages[:next(i for i, m in enumerate(session.messages) if m.role == harmony.Role.USER
                                   and m.text == "second") + 1]
    prompt = harmony.render_conversation_for_completion(tok, turns, harmony.Role.ASSISTANT)
    tokens = session.ctx.tokens.tolist()
    assert tokens[:len(prompt)] == prompt
    session.ctx.process()
    fresh = gon.Context(model, context_length=4096, max_batch_tokens=128)
    fresh.append(tokens)
    fresh.process()
    np.testing.assert_array_equal(session.ctx.logits, fresh.logits)


def test_generate_prompt_that_leaves_no_room_fails_before_loading(tmp_path):
    proc = _run(["generate", str(tmp_path / "missing"), "--tokens", "1,2,3", "--context-length", "3"], check=False)
    _assert_usage_error(proc, "leaves no room after the prompt of 3 tokens")
    _assert_usage_error(_run(["generate", str(tmp_path / "missing"), "--tokens", ""], check=False), "--tokens")
