"""A local service's log: a small process that copies the service's output into `<service>.log`,
rotating it by size (`.log.1` is the newest old part, `.log.N` the oldest), and the reader
`llmctl logs` uses, which follows the file across rotations.

Every line is written with the time it was read from the service in front of it (UTC, as docker
keeps them: `2025-01-31T12:00:00.123456Z line`), which `llmctl logs` shows with `--timestamps`
and filters on with `--since`.

The service writes into a pipe, never into the file: so the file can be rotated under it, and a
service that prints without end fills at most `(keep + 1) x max_bytes` of disk. The copier runs
in its own session and ends when the pipe does (the service and all its children have exited).

Run as `python -m llmctl.stack.logfile PATH --max-bytes N --keep K` with the pipe on stdin.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

CHUNK = 65536
LOG_MODE = 0o600  # a log may hold prompts or keys a service printed
_STAMP = re.compile(rb"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) ")


def stamp(epoch: float) -> bytes:
    """The prefix of a line read at `epoch`: `2025-01-31T12:00:00.123456Z `."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ ").encode()


@dataclass(frozen=True)
class LogLine:
    """One line of a service's log: when it was logged (None: not known) and what it says."""

    at: float | None
    text: str
    stamp: str = ""

    @classmethod
    def parse(cls, raw: bytes) -> LogLine:
        match = _STAMP.match(raw)
        text = raw[match.end() :] if match else raw
        if match is None:
            return cls(None, text.decode(errors="replace"))
        when = datetime.strptime(match.group(1).decode(), "%Y-%m-%dT%H:%M:%S.%fZ")
        return cls(
            when.replace(tzinfo=UTC).timestamp(),
            text.decode(errors="replace"),
            match.group(1).decode(),
        )


def lines(data: bytes) -> list[LogLine]:
    return [LogLine.parse(raw) for raw in data.splitlines()]


def plain(data: bytes) -> str:
    """The log's text without its timestamps."""
    return "\n".join(line.text for line in lines(data))


def rotated(path: Path, keep: int) -> list[Path]:
    """The log's files that exist, oldest first, the current one last."""
    parts = [path.with_name(f"{path.name}.{n}") for n in range(keep, 0, -1)]
    return [p for p in [*parts, path] if p.is_file() and not p.is_symlink()]


def rotate(path: Path, keep: int) -> None:
    """Shift `path` to `path.1`, `path.1` to `path.2`, ...; the oldest beyond `keep` goes."""
    if keep < 1:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    for n in range(keep, 0, -1):
        older = path.with_name(f"{path.name}.{n - 1}") if n > 1 else path
        with contextlib.suppress(FileNotFoundError):
            os.replace(older, path.with_name(f"{path.name}.{n}"))


def clear(path: Path, keep: int) -> None:
    """Remove the log and its rotated parts."""
    for part in [path, *(path.with_name(f"{path.name}.{n}") for n in range(1, keep + 1))]:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()


def open_log(path: Path) -> int:
    """A descriptor appending to `path`; a symlink planted there is removed, never followed."""
    if path.is_symlink():
        path.unlink()
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, LOG_MODE)


def copy(source: int, path: Path, *, max_bytes: int, keep: int) -> None:
    """Append what `source` yields to `path` until it ends, rotating before the file would pass
    `max_bytes` (a single read larger than that still goes into one file)."""
    fd = open_log(path)
    size = os.fstat(fd).st_size
    line_start = True
    try:
        while chunk := os.read(source, CHUNK):
            chunk, line_start = stamped(chunk, line_start, stamp(time.time()))
            if size and size + len(chunk) > max_bytes:
                os.close(fd)
                rotate(path, keep)
                fd = open_log(path)
                size = 0
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
            size += len(chunk)
    finally:
        os.close(fd)


def stamped(chunk: bytes, line_start: bool, prefix: bytes) -> tuple[bytes, bool]:
    """`chunk` with `prefix` in front of every line that starts in it, and whether the next chunk
    starts a line."""
    data = chunk.replace(b"\n", b"\n" + prefix)
    if line_start:
        data = prefix + data
    if data.endswith(b"\n" + prefix):  # the next line's time is when it comes, not now
        return data[: -len(prefix)], True
    return data, False


class LogReader:
    """Reads a log as it grows, across rotations (as `tail -F` does); complete lines only."""

    def __init__(self, path: Path, keep: int) -> None:
        self.path = path
        self.keep = keep
        self._handle: int | None = None
        self._partial = b""

    def history(self, *, final: bool = True) -> bytes:
        """Everything logged so far, rotated parts first; later `new()` calls continue from here
        (`final=False` keeps a partial last line for them)."""
        old = [p for p in rotated(self.path, self.keep) if p != self.path]
        return b"".join(_read(p) for p in old) + self.new(final=final)

    def new(self, *, final: bool = False) -> bytes:
        """The complete lines written since the last call (with `final`, a partial last too)."""
        data = self._drain()
        if self._handle is not None and self._rotated():
            data += self._drain()  # what was written before the rename
            os.close(self._handle)
            self._handle = None
            data += self._drain()
        data = self._partial + data
        if final:
            self._partial = b""
            return data
        cut = data.rfind(b"\n") + 1
        self._partial = data[cut:]
        return data[:cut]

    def close(self) -> None:
        if self._handle is not None:
            os.close(self._handle)
            self._handle = None

    def _drain(self) -> bytes:
        if self._handle is None:
            try:
                self._handle = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError:
                return b""
        chunks = []
        while chunk := os.read(self._handle, CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def _rotated(self) -> bool:
        if self._handle is None:
            return False
        try:
            return os.stat(self.path).st_ino != os.fstat(self._handle).st_ino
        except FileNotFoundError:
            return True


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--max-bytes", type=int, required=True)
    parser.add_argument("--keep", type=int, required=True)
    args = parser.parse_args(argv)
    clear(args.path, args.keep)  # each run of the service starts a fresh log
    copy(sys.stdin.fileno(), args.path, max_bytes=args.max_bytes, keep=args.keep)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
