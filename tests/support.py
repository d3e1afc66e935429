"""Helpers for tests that run real servers on 127.0.0.1 and stop them by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
VLLM_REFERENCE_METRICS = SHARED / "reference" / "vllm-0.32.0-cpu-metrics.txt"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, *, timeout: float = 20.0, ok: tuple[int, ...] = (200,)) -> httpx.Response:
    """Poll `url` until it answers with one of `ok`; raise TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            resp = httpx.get(url, timeout=2.0)
            if resp.status_code in ok:
                return resp
            last = resp.status_code
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s (last: {last!r})")


class ServerProcess:
    """A child process started by a test; `stop()` ends exactly it (TERM, then KILL)."""

    def __init__(self, args: Sequence[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = list(args)
        self.log = log
        self._log_file = log.open("wb")
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            self.args, stdout=self._log_file, stderr=subprocess.STDOUT, env=full_env
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self, grace: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if not self._log_file.closed:
            self._log_file.close()
        return int(self.proc.returncode)


@contextmanager
def llmctl_server(
    args: Sequence[str],
    *,
    ready_url: str,
    log: Path,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    ready_status: tuple[int, ...] = (200,),
) -> Iterator[ServerProcess]:
    """Run `python -m llmctl ARGS` until the block ends; wait for `ready_url` first."""
    server = ServerProcess([sys.executable, "-m", "llmctl", *args], log, env)
    try:
        try:
            wait_http(ready_url, timeout=timeout, ok=ready_status)
        except TimeoutError as exc:
            server.stop()
            raise TimeoutError(f"{exc}\n--- server output ---\n{server.output()}") from exc
        yield server
    finally:
        server.stop()
