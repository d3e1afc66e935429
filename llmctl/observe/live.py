"""The `llmctl top` loop: pick a source each tick, render, and quit on `q` or Ctrl-C."""

from __future__ import annotations

import os
import select
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.live import Live

from llmctl.core.errors import TargetError
from llmctl.observe.direct import DirectSource
from llmctl.observe.prometheus import PrometheusSource, PrometheusUnreachableError
from llmctl.observe.snapshot import StackSnapshot
from llmctl.observe.view import fit


class Sampler:
    """Prometheus first; when it does not answer (or the stack has none), the endpoints' /metrics."""

    def __init__(
        self,
        prometheus: PrometheusSource | None,
        direct: DirectSource,
        *,
        fallback: bool = True,
        why_direct: str = "Prometheus not configured",
    ) -> None:
        """`fallback` False: Prometheus only (its being unreachable is an error). `why_direct`:
        the header's note when there is no Prometheus to ask."""
        self.prometheus = prometheus
        self.direct = direct
        self.fallback = fallback
        self.why_direct = why_direct

    def sample(self) -> StackSnapshot:
        if self.prometheus is None:
            return self.direct.snapshot(self.why_direct)
        try:
            return self.prometheus.snapshot()
        except PrometheusUnreachableError as exc:
            if not self.fallback:
                raise TargetError(str(exc)) from exc
            return self.direct.snapshot(exc.reason)

    def close(self) -> None:
        self.direct.close()


@contextmanager
def quit_key(stop: threading.Event) -> Iterator[None]:
    """Set `stop` when `q` is pressed; the terminal is in cbreak mode only inside the block."""
    if not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    done = threading.Event()

    def read_keys() -> None:
        while not done.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready and os.read(fd, 1) in (b"q", b"Q"):
                stop.set()
                return

    # cbreak keeps ISIG, so Ctrl-C still raises KeyboardInterrupt in the main thread.
    tty.setcbreak(fd)
    reader = threading.Thread(target=read_keys, name="llmctl-top-keys", daemon=True)
    reader.start()
    try:
        yield
    finally:
        done.set()
        reader.join(1.0)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_live(sampler: Sampler, *, interval: float, console: Console) -> None:
    """Full-screen view refreshed every `interval` seconds until `q` (or Ctrl-C, raised to caller)."""
    stop = threading.Event()
    with (
        quit_key(stop),
        Live(console=console, screen=True, auto_refresh=False, transient=True) as live,
    ):
        while not stop.is_set():
            live.update(fit(sampler.sample(), console, live=True), refresh=True)
            stop.wait(interval)
