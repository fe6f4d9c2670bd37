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
    """Path of the embedded default model, writing it first if it is missing."""
    path = cache_dir() / "models" / DEFAULT_MODEL_NAME
    if (path / "config.json").exists() or not create:
        return path
    from .checkpoint import write_checkpoint

    if not quiet:
        print(
            f"gpt_oss_native: no model given; creating the embedded default (a tiny random-weight "
            f"gpt-oss model, preset 'tiny') at {path}",
            file=sys.stderr,
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_checkpoint(path, "tiny", format="hf", seed=0, progress=False)
    return path
