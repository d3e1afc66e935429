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

    On a terminal a Live line redraws while a level runs. Anywhere else (a pipe, a CI log) a Live
    display would print nothing until the end, or a frame per refresh; there a plain line is
    printed every `every_s` seconds and when each level ends."""

    def __init__(self, console: Console, every_s: float = 5.0) -> None:
        self.console = console
        self.every_s = every_s
        self._live: Live | None = None
        self._last_line = 0.0

    def on_start(self, index: int, total: int, strategy: Strategy) -> None:
        if not self.console.is_terminal:
            self._last_line = time.monotonic()
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
        if not self.console.is_terminal and now - self._last_line >= self.every_s:
            self._last_line = now
            self._plain(progress_line(progress))

    def on_done(self, index: int, level: LevelReport) -> None:
        self.close()
        self.console.print(level_line(level), soft_wrap=True)

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _plain(self, line: str) -> None:
        # soft_wrap: a log line is never cut to the console's 80 columns
        self.console.print(line, soft_wrap=True, highlight=False, markup=False)
