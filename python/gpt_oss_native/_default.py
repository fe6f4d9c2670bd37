"""The embedded default model: a tiny random-weight checkpoint of the real
layout, written once into the cache directory so that ``generate`` runs on a
fresh machine with no download.

The cache directory is ``$GPT_OSS_NATIVE_CACHE``, else
``$XDG_CACHE_HOME/gpt_oss_native``, else ``~/.cache/gpt_oss_native``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Bump when the writer's output for the default changes, so stale copies are not reused.
DEFAULT_MODEL_NAME = "tiny-hf-seed0-v2"


def cache_dir() -> Path:
    env = os.environ.get("GPT_OSS_NATIVE_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "gpt_oss_native"


def default_model_path(create: bool = True, quiet: bool = False) -> Path:
    """Path of the embedded default model, writing it first if it is missing.

    Its tokenizer.json holds the real o200k_harmony vocabulary when the
    quicktok-v1 package is installed, the 256 bytes and the special tokens
    otherwise; the two variants live in different directories."""
    from ._vocab import real_o200k_ranks

    models = cache_dir() / "models"
    if (models / f"{DEFAULT_MODEL_NAME}-o200k" / "config.json").exists():
        return models / f"{DEFAULT_MODEL_NAME}-o200k"
    kind = "o200k" if real_o200k_ranks() is not None else "bytes"
    path = models / f"{DEFAULT_MODEL_NAME}-{kind}"
    if (path / "config.json").exists() or not create:
        return path
    from .checkpoint import write_checkpoint

    if not quiet:
        print(
            f"gpt_oss_native: no model given; creating the embedded default (a tiny random-weight "
            f"gpt-oss model, preset 'tiny', {kind} vocabulary) at {path}",
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
