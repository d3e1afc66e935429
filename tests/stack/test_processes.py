"""Pid-file process management: detached start, TERM then KILL, and no harm from stale pid files."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from llmctl.stack import processes
from llmctl.stack.local import LocalRuntime
from llmctl.stack.settings import load_stack
from tests.support import eventually

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
STUBBORN = [
    sys.executable,
    "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); "
    "time.sleep(120)",
]


def test_spawned_process_is_tracked_and_stopped(tmp_path: Path) -> None:
    pidfile = tmp_path / "run" / "svc.pid"
    record = processes.spawn(SLEEPER, env={}, log=tmp_path / "run" / "svc.log", pidfile=pidfile)
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
    record = processes.spawn(STUBBORN, env={}, log=log, pidfile=tmp_path / "s.pid")
    try:
        # The handler must be installed before TERM arrives.
        eventually(lambda: "up" in log.read_text(), timeout=10, interval=0.05)
        started = time.monotonic()
        assert processes.stop_all([record], grace=0.5) == [record]
        assert time.monotonic() - started >= 0.5
        assert not processes.is_alive(record)
    finally:
        processes.stop_all([record], grace=0.1)


def test_stale_pid_file_pointing_at_another_process_is_left_alone(tmp_path: Path) -> None:
    spec = load_stack(preset="local-sim", environ={}).spec
    runtime = LocalRuntime(spec, tmp_path / "stack", environ={})
    innocent = subprocess.Popen(SLEEPER)
    try:
        # The pid now belongs to an unrelated process that started at another time.
        real = processes.start_ticks(innocent.pid)
        assert real is not None
        processes.write_pidfile(
            runtime.run_dir / "gateway.pid", processes.PidRecord(innocent.pid, real - 1)
        )
        statuses = {s.name: s.state for s in runtime.status()}
        assert statuses["gateway"] == "exited"
        lines = runtime.down()
        assert any("gateway: not running" in line for line in lines)
        assert innocent.poll() is None
        assert not (runtime.run_dir / "gateway.pid").exists()
    finally:
        innocent.kill()
        innocent.wait()


def test_garbage_pid_file_reads_as_stale(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    path.write_text("not a pid\n")
    assert processes.read_pidfile(path) is None
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
        name: processes.spawn(
            [sys.executable, "-c", slow_exit],
            env={},
            log=run / f"{name}.log",
            pidfile=run / f"{name}.pid",
        )
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
    records["engine"] = processes.spawn(
        [sys.executable, "-c", engine_code],
        env={},
        log=run / "engine.log",
        pidfile=run / "engine.pid",
    )
    try:
        # The handlers are installed once each prints `up`.
        eventually(lambda: all((run / f"{n}.log").read_text() for n in records), timeout=20)
        lines = runtime.down()
        assert not any(processes.is_alive(r) for r in records.values())
        assert seen.read_text() == "False", "the engine was stopped while a watcher still ran"
        assert [line.split(":")[0] for line in lines] == ["gateway", "prometheus", "engine"]
    finally:
        processes.stop_all(list(records.values()), grace=1)
