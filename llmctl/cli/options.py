"""Checks of command-line values that several commands share: secrets named by a variable, and
output files (checked before a long run, so its results are not lost at the end)."""

from __future__ import annotations

import os
from pathlib import Path

from llmctl.core.errors import LlmctlError, UsageError
from llmctl.core.files import check_writable, write_file


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
    try:
        check_writable(path)
    except LlmctlError as exc:
        raise UsageError(f"{flag}: {exc}") from None


def check_distinct_outputs(outputs: dict[str, Path | None]) -> None:
    """Refuse two flags naming the same file (also through a symlink or a hard link): one output
    would silently replace the other."""
    seen: dict[tuple[int, int] | str, str] = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        full = path.expanduser()
        try:
            st = full.stat()
            key: tuple[int, int] | str = (st.st_dev, st.st_ino)
        except OSError:  # not there yet: its resolved path is its identity
            key = os.path.realpath(full)
        alias = os.path.realpath(full)
        other = seen.get(key) or seen.get(alias)
        if other is not None:
            raise UsageError(f"{other} and {flag} name the same file ({path}); give each its own")
        seen[key] = seen[alias] = flag


def write_output(path: Path, text: str) -> None:
    """Write `text` with the one safe writer (whole or not at all; mode and symlinks kept); a
    failure (disk full, the folder gone meanwhile, read-only) is a clear error."""
    write_file(path, text)
