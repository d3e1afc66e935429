"""How `up` shows services coming up: a live table on a terminal, a line per change anywhere else
(a CI log then shows each service start, turn healthy or fail, with the time since `up` began)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from rich.console import Console, RenderableType
from rich.live import Live

from llmctl.cli.console import interactive
from llmctl.stack.runtime import Progress, ServiceStatus


def service_line(status: ServiceStatus, elapsed_s: float) -> str:
    """`[3.2s] gateway: running, healthy (pid 1234)`."""
    detail = f" ({status.detail})" if status.detail else ""
    return f"[{elapsed_s:.1f}s] {status.name}: {status.state}, {status.health}{detail}"


class ServiceLines:
    """A Progress that prints a service's line whenever its state or health changes."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.seen: dict[str, tuple[str, str]] = {}

    def __call__(self, services: Sequence[ServiceStatus]) -> None:
        for status in services:
            now = (status.state, status.health)
            if self.seen.get(status.name) != now:
                self.seen[status.name] = now
                line = service_line(status, time.monotonic() - self.started)
                self.console.print(line, markup=False, soft_wrap=True)


@contextmanager
def service_progress(
    console: Console, table: Callable[[Sequence[ServiceStatus]], RenderableType]
) -> Iterator[Progress]:
    """A Progress for `up`: on a terminal `table` redrawn live (and cleared at the end), else
    `ServiceLines`."""
    if not interactive(console):
        yield ServiceLines(console)
        return
    with Live(table([]), console=console, transient=True) as live:
        yield lambda services: live.update(table(services))
