"""Background processes tracked by pid files, signalled only when the pid still names the same process.

A pid file holds the pid and the process's start time (from /proc). Pids are reused, so a pid file
left by a crashed stack may point at an unrelated process later: matching the start time, and that
the process still leads its own process group (as every service llmctl starts does), is what keeps
`llmctl down` from killing it and `llmctl up` from taking it for a running service. A pid file whose
process cannot be verified that way (no start time, a malformed one, no /proc) is stale.

A service's output goes through a pipe to a log copier (`llmctl.stack.logfile`), which rotates
`<service>.log` by size.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmctl.core.errors import LlmctlError, RuntimeBackendError
from llmctl.core.files import write_file


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


@dataclass(frozen=True)
class LogRotation:
    """How a service's log rotates: a new part past `max_bytes`, `keep` old parts."""

    max_bytes: int
    keep: int


@dataclass(frozen=True)
class Spawned:
    """A started service and the pid of the process copying its output into its log."""

    record: PidRecord
    logger: int


def is_alive(record: PidRecord) -> bool:
    """True when the pid runs and is verifiably the process the record was written for: the same
    start time, and still the leader of its process group. Anything unverifiable is False."""
    if record.start_ticks is None or record.pid < 1:
        return False
    fields = _stat_fields(record.pid)
    if fields is None or len(fields) <= 19 or fields[0] in ("Z", "X"):
        return False
    return fields[19] == str(record.start_ticks) and fields[2] == str(record.pid)


def write_pidfile(path: Path, record: PidRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ticks = "" if record.start_ticks is None else str(record.start_ticks)
    write_file(path, f"{record.pid}\n{ticks}\n")


def read_pidfile(path: Path) -> PidRecord | None:
    """The record in `path`; None when it is missing or unreadable (treated as stale). A record
    without a well-formed start time is kept as such, and is_alive() calls it stale."""
    try:
        lines = path.read_text().split()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError, UnicodeDecodeError):
        return None
    if pid < 1:
        return None
    ticks = int(lines[1]) if len(lines) == 2 and lines[1].isdigit() else None
    return PidRecord(pid, ticks)


def spawn(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log: Path,
    pidfile: Path,
    rotation: LogRotation,
    logger_env: Mapping[str, str],
) -> Spawned:
    """Start `argv` detached (own session, so it outlives the CLI), its output copied into `log` by
    a logger process (environment `logger_env`) that rotates it."""
    executable = argv[0] if os.sep in argv[0] else shutil.which(argv[0])
    if executable is None:
        raise RuntimeBackendError(f"{argv[0]} not found on PATH")
    log.parent.mkdir(parents=True, exist_ok=True)
    logger_argv = [sys.executable, "-m", "llmctl.stack.logfile", str(log)]
    logger_argv += ["--max-bytes", str(rotation.max_bytes), "--keep", str(rotation.keep)]
    # posix_spawn (not Popen) because the children must outlive this process: Popen would warn
    # about a still-running child when the CLI exits. Both pipe ends are close-on-exec here;
    # each child gets its end as stdin or stdout/stderr only.
    read_end, write_end = os.pipe()
    try:
        logger = _spawn(
            logger_argv[0],
            logger_argv,
            logger_env,
            [
                (os.POSIX_SPAWN_DUP2, read_end, 0),
                (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
        )
        pid = _spawn(
            executable,
            argv,
            env,
            [
                (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_DUP2, write_end, 1),
                (os.POSIX_SPAWN_DUP2, write_end, 2),
            ],
        )
    finally:
        os.close(read_end)
        os.close(write_end)
    record = PidRecord(pid, start_ticks(pid))
    try:
        write_pidfile(pidfile, record)
    except LlmctlError:
        stop_all([record], grace=1.0)
        raise
    return Spawned(record, logger)


def _spawn(
    executable: str, argv: Sequence[str], env: Mapping[str, str], actions: list[tuple[Any, ...]]
) -> int:
    try:
        return os.posix_spawn(executable, list(argv), dict(env), file_actions=actions, setsid=True)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in an argument or the environment
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise RuntimeBackendError(f"cannot start {argv[0]}: {reason}") from exc


def wait_exit(pid: int, timeout: float) -> bool:
    """Wait up to `timeout` for our child `pid` to end (reaping it); True when it has."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return True
        if done:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


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
