"""Service logs: a real process printing without end fills a bounded set of rotated files, a planted
symlink is never written through, and the reader behind `llmctl logs` follows across rotations."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from llmctl.stack import logfile, processes

CHATTY = [
    sys.executable,
    "-c",
    "import sys\nfor i in range(20000):\n    print(f'line {i:05d} ' + 'x' * 40)\n"
    "sys.stdout.flush()\nimport time; time.sleep(60)",
]


def _logger_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")}


def _wait_for(check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_chatty_service_fills_at_most_keep_plus_one_files(tmp_path: Path) -> None:
    log = tmp_path / "run" / "svc.log"
    rotation = processes.LogRotation(max_bytes=64 * 1024, keep=2)
    spawned = processes.spawn(
        CHATTY,
        env={},
        log=log,
        pidfile=tmp_path / "run" / "svc.pid",
        rotation=rotation,
        logger_env=_logger_env(),
    )
    try:
        reader = logfile.LogReader(log, rotation.keep)
        _wait_for(lambda: b"line 19999" in (log.read_bytes() if log.exists() else b""))
        files = sorted(p.name for p in log.parent.glob("svc.log*"))
        assert files == ["svc.log", "svc.log.1", "svc.log.2"]
        for part in log.parent.glob("svc.log*"):
            assert part.stat().st_size <= rotation.max_bytes + logfile.CHUNK
            assert part.stat().st_mode & 0o777 == logfile.LOG_MODE
        # What is kept is the end of the output, in order and without gaps.
        lines = logfile.plain(reader.history()).splitlines()
        numbers = [int(line.split()[1]) for line in lines]
        assert numbers == list(range(numbers[0], 20000))
        assert numbers[0] > 0  # the start was rotated away: the disk use is bounded
        reader.close()
    finally:
        processes.stop_all([spawned.record], grace=1)
    assert processes.wait_exit(spawned.logger, 5.0), "the log copier outlived its service"


def test_a_symlink_planted_at_the_log_path_is_replaced_not_followed(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    log = tmp_path / "run" / "svc.log"
    log.parent.mkdir()
    log.symlink_to(victim)
    spawned = processes.spawn(
        [sys.executable, "-c", "print('hello', flush=True)"],
        env={},
        log=log,
        pidfile=tmp_path / "run" / "svc.pid",
        rotation=processes.LogRotation(max_bytes=4096, keep=1),
        logger_env=_logger_env(),
    )
    assert processes.wait_exit(spawned.logger, 10.0)
    processes.wait_exit(spawned.record.pid, 5.0)
    assert victim.read_text() == "precious\n"
    assert not log.is_symlink()
    [line] = logfile.lines(log.read_bytes())
    assert line.text == "hello"
    assert line.at is not None
    assert abs(time.time() - line.at) < 60


def test_the_reader_follows_the_log_across_rotations(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    reader = logfile.LogReader(log, keep=3)
    assert reader.history(final=False) == b""
    written: list[bytes] = []
    got = b""
    for round_ in range(5):
        with log.open("ab") as handle:
            for i in range(3):
                line = f"round {round_} line {i}\n".encode()
                handle.write(line)
                written.append(line)
            handle.write(b"partial ")  # a line still being written when the reader looks
        got += reader.new()
        with log.open("ab") as handle:
            handle.write(b"end\n")
            written.append(b"partial end\n")
        got += reader.new()
        logfile.rotate(log, keep=3)  # the copier's rotation, between two reads
    got += reader.new()
    reader.close()
    assert got == b"".join(written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["svc.log.1", "svc.log.2", "svc.log.3"]


def test_every_line_gets_the_time_it_was_read_however_the_chunks_fall() -> None:
    stamp = logfile.stamp(1_700_000_000.5)
    assert stamp == b"2023-11-14T22:13:20.500000Z "
    out, start = logfile.stamped(b"one\ntw", True, stamp)
    assert (out, start) == (stamp + b"one\n" + stamp + b"tw", False)
    out, start = logfile.stamped(b"o\nthree\n", start, stamp)
    assert (out, start) == (b"o\n" + stamp + b"three\n", True)
    parsed = logfile.lines(stamp + b"one\nno stamp here\n")
    assert [(line.at, line.text) for line in parsed] == [
        (1_700_000_000.5, "one"),
        (None, "no stamp here"),
    ]
