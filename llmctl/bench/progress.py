"""Progress hooks a bench run calls; the rich display lives in `llmctl.bench.live`, not here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from llmctl.bench.report import LevelReport
from llmctl.bench.strategies import Strategy

Phase = Literal["warmup", "measure", "drain"]


@dataclass(frozen=True)
class LevelProgress:
    """A snapshot of the running level, handed to `on_update` a few times per second."""

    index: int
    total: int
    strategy: Strategy
    phase: Phase
    elapsed_s: float
    planned_s: float | None  # warm-up + duration; None when the level stops after N requests
    requests_target: int | None
    sent: int
    completed: int
    failed: int
    in_flight: int
    output_tokens: int

    @property
    def fraction(self) -> float | None:
        """How far the level is, 0..1, when that is known."""
        if self.planned_s:
            return min(1.0, self.elapsed_s / self.planned_s)
        if self.requests_target:
            return min(1.0, (self.completed + self.failed) / self.requests_target)
        return None


class BenchProgress(Protocol):
    """What a bench run reports while it runs (the CLI shows it; `tune` may use its own)."""

    def on_start(self, index: int, total: int, strategy: Strategy) -> None:
        """A level is about to start."""

    def on_update(self, progress: LevelProgress) -> None:
        """Live counts of the running level."""

    def on_done(self, index: int, level: LevelReport) -> None:
        """A level finished; `level` holds its numbers."""


class NullProgress:
    """Reports nothing (the default for library callers)."""

    def on_start(self, index: int, total: int, strategy: Strategy) -> None:
        pass

    def on_update(self, progress: LevelProgress) -> None:
        pass

    def on_done(self, index: int, level: LevelReport) -> None:
        pass
