"""Where a model's tokenizer files lie on this disk: a local folder, or the Hugging Face cache.

Only the disk is looked at, never the hub: the stack uses this to decide whether the gateway can
count tokens exactly, and the gateway to load what it names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

TOKENIZER_FILE = "tokenizer.json"


def hf_hub_cache(environ: Mapping[str, str] | None = None) -> Path:
    """The hub cache folder, resolved as huggingface_hub resolves it."""
    env = os.environ if environ is None else environ
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "huggingface" / "hub"


def is_hub_id(ref: str) -> bool:
    """`org/name` or `name`: what a hub model id looks like (not a path)."""
    return bool(ref) and not ref.startswith((".", "/", "~")) and ref.count("/") <= 1


def hub_snapshot(model_id: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The cached snapshot of `model_id` that has a tokenizer: the one `refs/main` names, else the
    newest; None when the cache holds none."""
    repo = hf_hub_cache(environ) / ("models--" + model_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if not snapshots.is_dir():
        return None
    main = repo / "refs" / "main"
    if main.is_file():
        named = snapshots / main.read_text().strip()
        if (named / TOKENIZER_FILE).is_file():
            return named
    found = [p for p in snapshots.iterdir() if (p / TOKENIZER_FILE).is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def tokenizer_dir(ref: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The folder holding `ref`'s tokenizer.json: `ref` itself when it is such a folder, else its
    snapshot in the hub cache when `ref` is a hub id; None when neither is on this disk."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path if (path / TOKENIZER_FILE).is_file() else None
    if is_hub_id(ref):
        return hub_snapshot(ref, environ)
    return None
