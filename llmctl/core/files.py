"""The one way llmctl writes a file: whole or not at all, never through a path someone planted.

`write_file` writes a temporary file created exclusively (O_EXCL, O_NOFOLLOW, a random name) in the
target's own folder, flushes it to disk, gives it the target's mode, and renames it over the target,
so a reader sees the old file or the new one, never half of either. It refuses a target that is
not a regular file or that is read-only (owner write bit off: also as root, who may write anyway),
follows a symlinked target to the file it names (the link stays a link), keeps the old file intact
when anything fails, and turns every OSError into one clear LlmctlError.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from llmctl.core.errors import LlmctlError

PRIVATE_MODE = 0o600


def write_file(path: Path, data: str | bytes, *, private: bool = False) -> Path:
    """Replace `path` with `data` (text is written as UTF-8); returns the file written.

    A new file gets mode 0600 when `private`, else the default for new files (0666 minus the
    umask); an existing one keeps its mode, narrowed to 0600 when `private`."""
    payload = data.encode() if isinstance(data, str) else data
    target = _resolve(path)
    mode = _mode_for(target, path, private)
    folder = target.parent
    tmp = folder / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
    except OSError as exc:
        raise _error(path, exc) from exc
    try:
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise _error(path, exc) from exc
    _sync_folder(folder)
    return target


def check_writable(path: Path) -> None:
    """Raise the error `write_file` would raise for `path` before any data exists (an output
    checked before a long run, so its result is not lost at the end)."""
    target = _resolve(path)
    _mode_for(target, path, private=False)
    folder = target.parent
    if not folder.is_dir():
        raise LlmctlError(f"cannot write {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LlmctlError(f"cannot write {path}: the folder {folder} is not writable")


def _resolve(path: Path) -> Path:
    """The file a write to `path` must change: a symlink's final target, else `path` itself."""
    full = path.expanduser()
    if full.is_symlink():
        return Path(os.path.realpath(full))
    return full.absolute()


def _mode_for(target: Path, shown: Path, private: bool) -> int:
    try:
        st = os.stat(target)
    except FileNotFoundError:
        return PRIVATE_MODE if private else 0o666 & ~_umask()
    except OSError as exc:
        raise _error(shown, exc) from exc
    if stat.S_ISDIR(st.st_mode):
        raise LlmctlError(f"cannot write {shown}: it is a folder; give a file name")
    if not stat.S_ISREG(st.st_mode):
        raise LlmctlError(f"cannot write {shown}: it is not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if not mode & stat.S_IWUSR:
        raise LlmctlError(
            f"cannot write {shown}: the file is read-only (mode {mode:04o}); "
            "make it writable (chmod u+w) if it should change"
        )
    return mode & PRIVATE_MODE if private else mode


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_folder(folder: Path) -> None:
    # The rename is durable once the folder's entry is on disk; a folder that cannot be opened
    # (some filesystems) still has the new file, so this is best effort.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _error(path: Path, exc: OSError) -> LlmctlError:
    return LlmctlError(f"cannot write {path}: {exc.strerror or exc}")
