"""Tune's progress on a rich console: on a terminal a bar for the running trial, anywhere else
plain lines (a trial's start, its counts every few seconds); a line per finished trial on both."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn

from llmctl.bench.progress import LevelProgress
from llmctl.core.config import AdmissionLimits
from llmctl.tune.report import TrialReport, TuneReport, TuneSettings
from llmctl.tune.view import slo_text, trial_line


def _status(progress: LevelProgress) -> str:
    status = f"{progress.phase}, {progress.completed} done, {progress.in_flight} in flight"
    if progress.failed:
        status += f", {progress.failed} failed"
    return status


class ConsoleTuneProgress:
    """TuneProgress on a rich console. On a terminal a transient bar redraws while a trial runs;
    in a pipe, a CI log or a dumb terminal a bar would print nothing until the end, so a plain
    line says when a trial starts and, every `every_s` seconds, how far it is."""

    def __init__(self, console: Console, every_s: float = 5.0) -> None:
        self.console = console
        self.every_s = every_s
        self.live = console.is_terminal and not console.is_dumb_terminal
        self.progress: Progress | None = None
        if self.live:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[status]}"),
                console=console,
                transient=True,
            )
        self._task: TaskID | None = None
        self._label = ""
        self._last_line = 0.0

    def __enter__(self) -> ConsoleTuneProgress:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.progress.stop()

    def on_start(self, settings: TuneSettings, original: AdmissionLimits) -> None:
        how = "every value" if settings.grid else "grow, then bisect"
        self._line(
            f"Tuning MAX_ACTIVE on {settings.gateway} ({settings.min_max_active}.."
            f"{settings.max_max_active}, {how}); now {original.max_active}. "
            f"SLO: {slo_text(settings)}. Each trial: {settings.warmup_s:g} s warm-up + "
            f"{settings.trial_duration_s:g} s."
        )

    def on_trial_start(self, index: int, max_active: int, concurrency: int) -> None:
        self._label = f"trial {index + 1}: MAX_ACTIVE {max_active} ({concurrency} clients)"
        if self.progress is not None:
            self._task = self.progress.add_task(self._label, total=1.0, status="starting")
            return
        self._last_line = time.monotonic()
        self._line(f"{self._label} started")

    def on_trial_update(self, progress: LevelProgress) -> None:
        if self.progress is not None:
            if self._task is not None:
                fraction = progress.fraction or 0.0
                self.progress.update(self._task, completed=fraction, status=_status(progress))
            return
        now = time.monotonic()
        if now - self._last_line >= self.every_s:
            self._last_line = now
            self._line(f"{self._label}: {progress.elapsed_s:.1f}s, {_status(progress)}")

    def on_trial_done(self, trial: TrialReport) -> None:
        if self.progress is not None and self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None
        self.console.print(trial_line(self._label, trial), highlight=False, soft_wrap=True)

    def on_done(self, report: TuneReport) -> None:
        pass

    def _line(self, text: str) -> None:
        # soft_wrap: a log line is never cut to the console's 80 columns
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)
