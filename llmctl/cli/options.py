"""Checks of command-line values that several commands share: secrets named by a variable, and
output files (checked before a long run, so its results are not lost at the end)."""

from __future__ import annotations

import os
from pathlib import Path

from llmctl.core.errors import LlmctlError, UsageError


def env_secret(env_var: str, flag: str) -> str:
    """The value of the environment variable `flag` names; an unset or empty one is a usage error."""
    value = os.environ.get(env_var, "").strip()
    if not value:
        raise UsageError(f"{flag} {env_var}: that environment variable is not set")
    return value


def check_output(path: Path | None, flag: str) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if path is None:
        return
    full = path.expanduser()
    parent = full.parent
    if full.is_dir():
        raise UsageError(f"{flag} {path}: that is a folder; give a file name")
    if not parent.is_dir():
        raise UsageError(f"{flag} {path}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (full.exists() and not os.access(full, os.W_OK)):
        raise UsageError(f"{flag} {path}: not writable")


def write_output(path: Path, text: str) -> None:
    """Write `text`; a failure (disk full, the folder gone meanwhile) is a clear error."""
    try:
        path.expanduser().write_text(text, encoding="utf-8")
    except OSError as exc:
        raise LlmctlError(f"could not write {path}: {exc.strerror or exc}") from exc
