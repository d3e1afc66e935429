"""Helpers for tests that run real servers on 127.0.0.1 and stop them by PID."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import httpx

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
VLLM_REFERENCE_METRICS = SHARED / "reference" / "vllm-0.32.0-cpu-metrics.txt"
# What `llmctl sim serve --port 0` prints once it listens ("... serving MODEL on URL (profile ...").
SIM_BANNER = r"serving .* on (http://\S+:\d+)"

T = TypeVar("T")


class _NotYet:
    """What one poll of `eventually` gives while its check is not true yet."""


class _Poll(Generic[T]):
    """One `eventually`: its check, its deadline, and the last value or failure it saw."""

    def __init__(self, check: Callable[[], T | None], timeout: float, what: str) -> None:
        self.check, self.timeout = check, timeout
        self.what = what or getattr(check, "__qualname__", repr(check))
        self.deadline = time.monotonic() + timeout
        self.last: object = None
        self.failure: AssertionError | None = None

    def once(self) -> T | _NotYet:
        try:
            value = self.check()
        except AssertionError as exc:
            self.failure = exc
            return _NotYet()
        self.failure, self.last = None, value
        return value if value else _NotYet()

    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def error(self) -> AssertionError:
        last = str(self.failure) if self.failure is not None else repr(self.last)
        return AssertionError(f"{self.what}: still not so after {self.timeout}s (last: {last})")


def eventually(
    check: Callable[[], T | None], *, timeout: float = 5.0, interval: float = 0.02, what: str = ""
) -> T:
    """Call `check` until it returns a truthy value or stops raising AssertionError; return that.

    On timeout, raise AssertionError with the last value or failure. Any other exception from
    `check` ends the wait at once (a server that died will not come back by waiting).
    """
    poll = _Poll(check, timeout, what)
    while isinstance(got := poll.once(), _NotYet):
        if poll.expired():
            raise poll.error() from poll.failure
        time.sleep(interval)
    return got


async def eventually_async(
    check: Callable[[], T | None],
    *,
    timeout: float = 5.0,  # noqa: ASYNC109 - as in `eventually`: the message names the last value
    interval: float = 0.005,
    what: str = "",
) -> T:
    """`eventually` for a test that polls inside its own event loop (which must keep running)."""
    poll = _Poll(check, timeout, what)
    while isinstance(got := poll.once(), _NotYet):
        if poll.expired():
            raise poll.error() from poll.failure
        await asyncio.sleep(interval)
    return got


def default_sigint() -> None:
    """`preexec_fn` for a child the test will Ctrl-C: SIGINT back to its default. A shell runs a
    background job with SIGINT ignored, and Python leaves an ignored SIGINT ignored, so a suite
    started with `&` would otherwise pass that on to every child and wait for them in vain."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def free_port() -> int:
    """A port free right now, for a server that cannot listen on port 0 and say where it is (or a
    stack whose ports are written into its config); it may be taken before the server binds it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def refusing_port() -> Iterator[int]:
    """A port where connections are refused until the block ends: bound, never listening, so no
    other server can take it meanwhile (as one could take a port `free_port` found free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


def answer(url: str, ok: tuple[int, ...] = (200,)) -> httpx.Response:
    """One GET of `url` that answers with one of `ok`; AssertionError otherwise (for `eventually`)."""
    try:
        resp = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as exc:
        raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
    assert resp.status_code in ok, f"HTTP {resp.status_code}"
    return resp


def wait_http(url: str, *, timeout: float = 20.0, ok: tuple[int, ...] = (200,)) -> httpx.Response:
    """Poll `url` until it answers with one of `ok`; raise AssertionError otherwise."""
    return eventually(lambda: answer(url, ok), timeout=timeout, interval=0.05, what=f"{url} ready")


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

    def check_alive(self) -> None:
        """Raise RuntimeError (which ends an `eventually` at once) if the process has exited."""
        code = self.proc.poll()
        if code is not None:
            raise RuntimeError(f"{shlex.join(self.args)} exited with {code}:\n{self.output()}")

    def wait_ready(
        self, url: str, *, timeout: float = 30.0, ok: tuple[int, ...] = (200,)
    ) -> httpx.Response:
        """Poll `url` until it answers with one of `ok`, while this process runs."""

        def ready() -> httpx.Response:
            self.check_alive()
            return answer(url, ok)

        return eventually(ready, timeout=timeout, interval=0.05, what=f"{url} ready")

    def announced(self, pattern: str, *, timeout: float = 30.0) -> re.Match[str]:
        """Wait until the output has a match of `pattern` (a server on port 0 says where it is)."""

        def printed() -> re.Match[str] | None:
            self.check_alive()
            return re.search(pattern, self.output())

        return eventually(printed, timeout=timeout, interval=0.05, what=f"output {pattern!r}")

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


@dataclass
class Served:
    """A server process and the base URL it listens on."""

    url: str
    server: ServerProcess


def _started(server: ServerProcess, ready: Callable[[], T]) -> T:
    """`ready()`; if it fails, stop the server and show what it printed along with the reason."""
    try:
        return ready()
    except AssertionError as exc:
        server.stop()
        raise AssertionError(f"{exc}\n--- server output ---\n{server.output()}") from exc


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
        _started(server, lambda: server.wait_ready(ready_url, timeout=timeout, ok=ready_status))
        yield server
    finally:
        server.stop()


@contextmanager
def sim_server(
    log: Path, *flags: str, ready_status: tuple[int, ...] = (200,), timeout: float = 30.0
) -> Iterator[Served]:
    """`llmctl sim serve --port 0 FLAGS` until the block ends, at the URL its banner names."""
    args = ["sim", "serve", "--host", "127.0.0.1", "--port", "0", *flags]
    # A wide console keeps the banner, URL included, on one line.
    server = ServerProcess([sys.executable, "-m", "llmctl", *args], log, {"COLUMNS": "400"})
    try:
        url = _started(server, lambda: server.announced(SIM_BANNER, timeout=timeout).group(1))
        _started(server, lambda: server.wait_ready(f"{url}/health", ok=ready_status))
        yield Served(url, server)
    finally:
        server.stop()
