"""Background processes tracked by pid files, stopped only when the pid still names the same process.

A pid file holds the pid and the process's start time (from /proc). Pids are reused, so a pid file
left by a crashed stack may point at an unrelated process later: matching the start time is what
keeps `llmctl down` from killing it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from llmctl.core.errors import RuntimeBackendError


@dataclass(frozen=True)
class PidRecord:
    """A process we started: its pid and its start time in clock ticks since boot (None: unknown)."""

    pid: int
    start_ticks: int | None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields resume after the last ")".
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_alive(record: PidRecord) -> bool:
    """True when the pid runs and is still the process the record was written for."""
    fields = _stat_fields(record.pid)
    if fields is None:
        if Path("/proc/self/stat").exists():
            return False
        try:  # no /proc (not Linux): existence is all we can check
            os.kill(record.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    if fields[0] in ("Z", "X"):
        return False
    return record.start_ticks is None or int(fields[19]) == record.start_ticks


def write_pidfile(path: Path, record: PidRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ticks = "" if record.start_ticks is None else str(record.start_ticks)
    path.write_text(f"{record.pid}\n{ticks}\n")


def read_pidfile(path: Path) -> PidRecord | None:
    """The record in `path`; None when it is missing or unreadable (treated as stale)."""
    try:
        lines = path.read_text().split()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    ticks = int(lines[1]) if len(lines) > 1 and lines[1].isdigit() else None
    return PidRecord(pid, ticks)


def spawn(argv: Sequence[str], *, env: Mapping[str, str], log: Path, pidfile: Path) -> PidRecord:
    """Start `argv` detached (own session, so it outlives the CLI), output appended to `log`."""
    executable = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if executable is None:
        raise RuntimeBackendError(f"{argv[0]} not found on PATH")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"")
    # posix_spawn (not Popen) because the child must outlive this process: Popen would warn about
    # a still-running child when the CLI exits.
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_APPEND, 0),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawn(executable, list(argv), dict(env), file_actions=actions, setsid=True)
    except OSError as exc:
        raise RuntimeBackendError(f"cannot start {argv[0]}: {exc.strerror}") from exc
    record = PidRecord(pid, start_ticks(pid))
    write_pidfile(pidfile, record)
    return record


def _signal_group(record: PidRecord, sig: signal.Signals) -> None:
    if not is_alive(record):
        return
    try:  # each service leads its own session/process group: its children go with it
        os.killpg(record.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(record.pid, sig)


def _reap(pid: int) -> None:
    # Only our own children can be reaped (when `up` ran in this process); others belong to init.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop_all(records: Sequence[PidRecord], *, grace: float = 10.0) -> list[PidRecord]:
    """TERM every live record, wait up to `grace`, then KILL what remains. Returns those killed."""
    live = [r for r in records if is_alive(r)]
    for record in live:
        _signal_group(record, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        for record in live:
            _reap(record.pid)
        if not any(is_alive(r) for r in live):
            return []
        time.sleep(0.05)
    killed = [r for r in live if is_alive(r)]
    for record in killed:
        _signal_group(record, signal.SIGKILL)
    for record in killed:
        for _ in range(100):
            _reap(record.pid)
            if not is_alive(record):
                break
            time.sleep(0.02)
    return killed
