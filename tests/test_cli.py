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
