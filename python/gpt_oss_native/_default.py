"""The embedded default model, and the random-weight 'tiny' model some tests use.

* :func:`default_model_path`: the trained default model that ships inside the
  package (``default_model/``): a tiny gpt-oss trained on the Python
  documentation by :mod:`gpt_oss_native.train_default`, so that ``generate``
  and ``chat`` run on a fresh machine with no download and answer in English.
* :func:`tiny_model_path`: a tiny random-weight checkpoint of the real layout
  (preset ``tiny``), written once into the cache directory
  (``$GPT_OSS_NATIVE_CACHE``, else ``$XDG_CACHE_HOME/gpt_oss_native``, else
  ``~/.cache/gpt_oss_native``); its vocabulary is the real o200k_harmony one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Bump when the writer's output for the tiny random model changes, so stale copies are not reused.
TINY_MODEL_NAME = "tiny-hf-seed0-v2"

# The question ``generate`` asks the default model when given no prompt.
DEFAULT_QUESTION = "What does the assert statement do?"


def cache_dir() -> Path:
    env = os.environ.get("GPT_OSS_NATIVE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "gpt_oss_native"


def default_model_path() -> Path:
    """Path of the embedded default model (shipped in the package; nothing is written)."""
    return Path(__file__).resolve().parent / "default_model"


def default_prompt(question: str = DEFAULT_QUESTION) -> str:
    """A harmony prompt that asks ``question`` and opens the assistant's final channel, so
    the completion is the answer as text."""
    return f"<|start|>user<|message|>{question}<|end|><|start|>assistant<|channel|>final<|message|>"


def tiny_model_path(create: bool = True, quiet: bool = False) -> Path:
    """Path of the tiny random-weight model (preset 'tiny'), writing it first if it is missing.

    Its tokenizer.json holds the real o200k_harmony vocabulary when the
    quicktok-v1 package is installed, the 256 bytes and the special tokens
    otherwise; the two variants live in different directories."""
    from ._vocab import real_o200k_ranks

    models = cache_dir() / "models"
    if (models / f"{TINY_MODEL_NAME}-o200k" / "config.json").exists():
        return models / f"{TINY_MODEL_NAME}-o200k"
    kind = "o200k" if real_o200k_ranks() is not None else "bytes"
    path = models / f"{TINY_MODEL_NAME}-{kind}"
    if (path / "config.json").exists() or not create:
        return path
    from .checkpoint import write_checkpoint

    if not quiet:
        print(
            f"gpt_oss_native: creating the tiny random-weight model (preset 'tiny', {kind} vocabulary) at {path}",
            file=sys.stderr,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_checkpoint(path, "tiny", format="hf", seed=0, progress=False,
                         tokenizer="real" if kind == "o200k" else "bytes")
    except FileExistsError:
        if not (path / "config.json").exists():  # another process is writing it right now
            raise
    return path
