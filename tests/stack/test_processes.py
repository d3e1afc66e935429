"""Pid-file process management: detached start, TERM then KILL, and no harm from stale pid files."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from llmctl.stack import processes
from llmctl.stack.local import LocalRuntime
from llmctl.stack.settings import load_stack
from tests.support import eventually

ROTATION = processes.LogRotation(max_bytes=1 << 20, keep=2)

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
    "time.sleep(120)",
]


def _text(log: Path) -> str:
    """What the log copier has written so far (it creates the file a moment after the start)."""
    return log.read_text() if log.exists() else ""


def spawn(argv: list[str], log: Path, pidfile: Path) -> processes.PidRecord:
    """Start `argv` as the local runtime does, with nothing of this environment."""
    logger_env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")}
    spawned = processes.spawn(
        argv, env={}, log=log, pidfile=pidfile, rotation=ROTATION, logger_env=logger_env
    )
    return spawned.record


def test_spawned_process_is_tracked_and_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "svc.pid"
    record = spawn(SLEEPER, tmp_path / "run" / "svc.log", pidfile)
    try:
        assert processes.read_pidfile(pidfile) == record
        assert record.start_ticks is not None
        assert processes.is_alive(record)
        assert processes.stop_all([record], grace=5) == []
        assert not processes.is_alive(record)
    finally:
        processes.stop_all([record], grace=0.1)


def test_a_process_ignoring_term_is_killed_after_the_grace(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    record = spawn(STUBBORN, log, tmp_path / "s.pid")
    try:
        # The handler must be installed before TERM arrives.
        eventually(lambda: "up" in _text(log), timeout=10, interval=0.05)
        started = time.monotonic()
        assert processes.stop_all([record], grace=0.5) == [record]
        assert time.monotonic() - started >= 0.5
        assert not processes.is_alive(record)
    finally:
        processes.stop_all([record], grace=0.1)


def _unverifiable(pid: int, real: int) -> dict[str, str]:
    """Pid files naming `pid`, an unrelated process, that llmctl must not take for its own."""
    return {
        "no start time": f"{pid}\n",
        "empty start time": f"{pid}\n\n",
        "malformed start time": f"{pid}\n12ab\n",
        "negative start time": f"{pid}\n-{real}\n",
        "extra fields": f"{pid}\n{real}\nmore\n",
        "wrong start time": f"{pid}\n{real - 1}\n",
        # Right pid and start time, as anyone can read them from /proc: still not a process
        # llmctl started, since those lead their own process group.
        "not a group leader": f"{pid}\n{real}\n",
    }


def test_pid_files_that_cannot_be_verified_are_stale_never_signalled(tmp_path: Path) -> None:
    spec = load_stack(preset="local-sim", environ={}).spec
    runtime = LocalRuntime(spec, tmp_path / "stack", environ={})
    innocent = subprocess.Popen(["sleep", "60"])
    try:
        real = processes.start_ticks(innocent.pid)
        assert real is not None
        for what, text in _unverifiable(innocent.pid, real).items():
            runtime.run_dir.mkdir(parents=True, exist_ok=True)
            for name in ("engine", "gateway", "prometheus"):
                (runtime.run_dir / f"{name}.pid").write_text(text)
            record = processes.read_pidfile(runtime.run_dir / "engine.pid")
            assert record is None or not processes.is_alive(record), what
            # Not running for status (and so for `up`, which asks the same question) ...
            statuses = {s.name: s.state for s in runtime.status()}
            assert statuses["engine"] in ("stopped", "exited"), what
            assert statuses["gateway"] in ("stopped", "exited"), what
            # ... and `down` leaves the process alone and drops the pid files.
            lines = runtime.down()
            assert any("engine: not running" in line for line in lines), (what, lines)
            assert not list(runtime.run_dir.glob("*.pid")), what
            time.sleep(0.05)
            assert innocent.poll() is None, f"{what}: the unrelated process was signalled"
    finally:
        innocent.kill()
        innocent.wait()


def test_garbage_pid_file_reads_as_stale(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    for garbage in ("not a pid\n", "0\n123\n", "-1\n123\n", "\xff\xfe"):
        path.write_text(garbage, errors="surrogateescape")
        assert processes.read_pidfile(path) is None, garbage
    assert processes.read_pidfile(tmp_path / "missing.pid") is None


def test_down_stops_the_gateway_and_prometheus_before_the_engine(tmp_path: Path) -> None:
    """The engine, on TERM, writes down whether the gateway still runs; the gateway takes a
    moment to exit, so stopping all at once would find it alive."""
    runtime = LocalRuntime(load_stack(environ={}, cwd=tmp_path).spec, tmp_path)
    run = runtime.run_dir
    seen = tmp_path / "engine-saw"
    slow_exit = "import signal, sys, time\n" + (
        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(0.5), sys.exit(0)))\n"
        "print('up', flush=True)\ntime.sleep(120)\n"
    )
    records = {
        name: spawn([sys.executable, "-c", slow_exit], run / f"{name}.log", run / f"{name}.pid")
        for name in ("gateway", "prometheus")
    }
    watchers = " ".join(str(r.pid) for r in records.values())
    engine_code = (
        "import os, signal, sys, time\n"
        "def alive(pid):\n"
        "    try:\n        os.kill(pid, 0)\n    except ProcessLookupError:\n        return False\n"
        "    return open(f'/proc/{pid}/stat').read().split(') ')[1][0] != 'Z'\n"
        "def on_term(*_):\n"
        f"    open({str(seen)!r}, 'w').write(str(any(alive(int(p)) for p in {watchers!r}.split())))\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, on_term)\nprint('up', flush=True)\ntime.sleep(120)\n"
    )
    records["engine"] = spawn(
        [sys.executable, "-c", engine_code], run / "engine.log", run / "engine.pid"
    )
    try:
        # The handlers are installed once each prints `up`.
        eventually(lambda: all(_text(run / f"{n}.log") for n in records), timeout=20)
        lines = runtime.down()
        assert not any(processes.is_alive(r) for r in records.values())
        assert seen.read_text() == "False", "the engine was stopped while a watcher still ran"
        assert [line.split(":")[0] for line in lines] == ["gateway", "prometheus", "engine"]
    finally:
        processes.stop_all(list(records.values()), grace=1)
