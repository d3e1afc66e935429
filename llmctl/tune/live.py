"""Tune's live progress on a rich console: a bar for the running trial, a line per finished one."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn

from llmctl.bench.progress import LevelProgress
from llmctl.core.config import AdmissionLimits
from llmctl.tune.report import TrialReport, TuneReport, TuneSettings
from llmctl.tune.view import slo_text, trial_line


class ConsoleTuneProgress:
    """Live progress on a rich console: a bar for the running trial, a line per finished one."""

    def __init__(self, console: Console) -> None:
        self.console = console
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

    def __enter__(self) -> ConsoleTuneProgress:
        self.progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def on_start(self, settings: TuneSettings, original: AdmissionLimits) -> None:
        how = "every value" if settings.grid else "grow, then bisect"
        self.console.print(
            f"Tuning MAX_ACTIVE on {settings.gateway} ({settings.min_max_active}.."
            f"{settings.max_max_active}, {how}); now {original.max_active}. "
            f"SLO: {slo_text(settings)}. Each trial: {settings.warmup_s:g} s warm-up + "
            f"{settings.trial_duration_s:g} s.",
            highlight=False,
        )

    def on_trial_start(self, index: int, max_active: int, concurrency: int) -> None:
        self._label = f"trial {index + 1}: MAX_ACTIVE {max_active} ({concurrency} clients)"
        self._task = self.progress.add_task(self._label, total=1.0, status="starting")

    def on_trial_update(self, progress: LevelProgress) -> None:
        if self._task is None:
            return
        status = f"{progress.phase}, {progress.completed} done, {progress.in_flight} in flight"
        if progress.failed:
            status += f", {progress.failed} failed"
        self.progress.update(self._task, completed=progress.fraction or 0.0, status=status)

    def on_trial_done(self, trial: TrialReport) -> None:
        if self._task is not None:
            self.progress.remove_task(self._task)
            self._task = None
        self.console.print(trial_line(self._label, trial), highlight=False)

    def on_done(self, report: TuneReport) -> None:
        pass
