"""Bench's progress on a rich console: a live line per level on a terminal, plain lines in a log."""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from llmctl.bench.progress import LevelProgress
from llmctl.bench.report import LevelReport
from llmctl.bench.strategies import Strategy
from llmctl.bench.view import level_line, progress_line, progress_view


class ConsoleProgress:
    """BenchProgress on a rich console.

    On a terminal a Live line redraws while a level runs. Anywhere else (a pipe, a CI log, a dumb
    terminal) a Live display would print nothing until the end, or a frame per refresh; there a
    plain line is printed when a level starts, every `every_s` seconds while it runs (elapsed,
    ok and failed counts, tokens/s) and when it ends."""

    def __init__(self, console: Console, every_s: float = 5.0) -> None:
        self.console = console
        self.every_s = every_s
        self._live: Live | None = None
        self._last_line = 0.0
        self._started = 0.0

    @property
    def live(self) -> bool:
        """Whether to redraw in place: on a terminal that is not dumb."""
        return self.console.is_terminal and not self.console.is_dumb_terminal

    def on_start(self, index: int, total: int, strategy: Strategy) -> None:
        self._started = time.monotonic()
        if not self.live:
            self._last_line = self._started
            self._plain(f"[{index + 1}/{total}] {strategy.label} started")
            return
        self._live = Live(
            Text(f"[{index + 1}/{total}] {strategy.label} starting…"),
            console=self.console,
            refresh_per_second=4,
            transient=True,
        )
        self._live.start()

    def on_update(self, progress: LevelProgress) -> None:
        if self._live is not None:
            self._live.update(progress_view(progress))
            return
        now = time.monotonic()
        if not self.live and now - self._last_line >= self.every_s:
            self._last_line = now
            self._plain(progress_line(progress))

    def on_done(self, index: int, level: LevelReport) -> None:
        self.close()
        elapsed = time.monotonic() - self._started if self._started else None
        self.console.print(level_line(level, elapsed), soft_wrap=True, highlight=False)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _plain(self, line: str) -> None:
        # soft_wrap: a log line is never cut to the console's 80 columns
        self.console.print(line, soft_wrap=True, highlight=False, markup=False)
