"""Bench's live progress on a rich console: a line per running level, a summary line after."""

from __future__ import annotations

from rich.console import Console
from rich.live import Live
from rich.text import Text

from llmctl.bench.progress import LevelProgress
from llmctl.bench.report import LevelReport
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy
from llmctl.bench.view import level_line, progress_view


class ConsoleProgress:
    """BenchProgress on a rich console: a live line while a level runs, a summary line after."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._live: Live | None = None

    def on_start(self, index: int, total: int, strategy: ConcurrentStrategy | RateStrategy) -> None:
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

    def on_done(self, index: int, level: LevelReport) -> None:
        self.close()
        self.console.print(level_line(level))

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
