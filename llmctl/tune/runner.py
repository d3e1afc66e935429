"""`tune_max_active`: run trials as the policy asks, recommend, and always put the limits back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from llmctl import __version__
from llmctl.bench.progress import LevelProgress
from llmctl.bench.report import LevelReport
from llmctl.bench.strategies import Strategy
from llmctl.core.config import AdmissionLimits
from llmctl.core.errors import LlmctlError, TargetError
from llmctl.tune.limits import GatewayAdmin
from llmctl.tune.report import TrialReport, TuneReport, TuneSettings, explain
from llmctl.tune.search import GridSweep, GrowBisect, SearchPolicy, recommend
from llmctl.tune.trial import TrialPlan, concurrency_for, run_trial

MIN_GAIN = 0.05


class TuneProgress(Protocol):
    """What a tune run reports while it runs; the CLI draws it, library callers may ignore it."""

    def on_start(self, settings: TuneSettings, original: AdmissionLimits) -> None:
        """The original limits were read; trials are about to start."""

    def on_trial_start(self, index: int, max_active: int, concurrency: int) -> None:
        """Trial `index` (0-based) is about to run."""

    def on_trial_update(self, progress: LevelProgress) -> None:
        """Live counts of the running trial (bench's snapshot)."""

    def on_trial_done(self, trial: TrialReport) -> None:
        """A trial finished and was judged."""

    def on_done(self, report: TuneReport) -> None:
        """The run finished (limits restored, or the recommendation applied)."""


class NullTuneProgress:
    """Reports nothing."""

    def on_start(self, settings: TuneSettings, original: AdmissionLimits) -> None:
        pass

    def on_trial_start(self, index: int, max_active: int, concurrency: int) -> None:
        pass

    def on_trial_update(self, progress: LevelProgress) -> None:
        pass

    def on_trial_done(self, trial: TrialReport) -> None:
        pass

    def on_done(self, report: TuneReport) -> None:
        pass


class _BenchHooks:
    """Forwards bench's live counts to the tune hooks."""

    def __init__(self, hooks: TuneProgress) -> None:
        self.hooks = hooks

    def on_start(self, index: int, total: int, strategy: Strategy) -> None:
        pass

    def on_update(self, progress: LevelProgress) -> None:
        self.hooks.on_trial_update(progress)

    def on_done(self, index: int, level: LevelReport) -> None:
        pass


# Writes the chosen value into the stack config and returns the file it wrote (the CLI passes
# the stack module's writer; None: keep it live only).
ApplyFn = Callable[[int], Path | None]


def make_policy(settings: TuneSettings) -> SearchPolicy:
    low, high = settings.min_max_active, settings.max_max_active
    return GridSweep(low, high) if settings.grid else GrowBisect(low, high, min_gain=MIN_GAIN)


def tune_max_active(
    plan: TrialPlan,
    admin: GatewayAdmin,
    *,
    progress: TuneProgress | None = None,
    apply: ApplyFn | None = None,
) -> TuneReport:
    """Search MAX_ACTIVE live on the gateway behind `admin`.

    The gateway's original limits come back on every exit (done, error, Ctrl-C), except when
    `settings.apply` is set and the run finished: then `apply` writes the recommended MAX_ACTIVE
    into the stack config and it stays live (with the original queue settings). When that write
    fails (LlmctlError), the original limits come back too and the report says why in
    `apply_error`: the run's results are kept, and the live limits match the unchanged file.
    """
    settings = plan.settings
    hooks: TuneProgress = progress or NullTuneProgress()
    started = datetime.now(UTC)
    original = admin.get()
    if original.limit_mode == "adaptive" and not settings.switch_adaptive:
        raise TargetError(
            f"the gateway's limit is adaptive (MAX_ACTIVE {original.max_active} now, moving within "
            f"[{original.adaptive_min}, {original.adaptive_max}]): trials need a fixed limit. "
            "Pass --switch-adaptive to make it static for the run (it is adaptive again after)"
        )
    hooks.on_start(settings, original)
    trials: list[TrialReport] = []
    applied, applied_to, apply_error = False, None, None
    try:
        policy = make_policy(settings)
        while (value := policy.next_candidate()) is not None:
            hooks.on_trial_start(len(trials), value, concurrency_for(value))
            trial = run_trial(admin, plan, value, original, _BenchHooks(hooks))
            trials.append(trial)
            policy.record(trial.outcome())
            hooks.on_trial_done(trial)
        choice = recommend([t.outcome() for t in trials], min_gain=MIN_GAIN)
        recommendation = explain(choice, trials, min_gain=MIN_GAIN)
        if settings.apply and recommendation.max_active is not None:
            value = recommendation.max_active
            try:
                # The file first: if it cannot be written, the live limits go back to the
                # original below, so the gateway and its stack file still agree.
                written = apply(value) if apply is not None else None
            except LlmctlError as exc:
                apply_error = str(exc)
            else:
                admin.restore(original.model_copy(update={"max_active": value}))
                applied, applied_to = True, str(written) if written is not None else None
    finally:
        if not applied:
            admin.restore(original)
    report = TuneReport(
        llmctl_version=__version__,
        started_at=started,
        settings=settings,
        original_limits=original,
        trials=trials,
        recommendation=recommendation,
        applied=applied,
        applied_to=applied_to,
        apply_error=apply_error,
    )
    hooks.on_done(report)
    return report
