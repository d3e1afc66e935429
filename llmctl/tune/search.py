"""The search policies that pick the next MAX_ACTIVE to try, fed trial outcomes; no I/O.

A policy is a guidellm-style *profile*: a sequence of trials where each next one may depend on the
results so far. `GrowBisect` is the default (about 7 trials over 1..256 for a knee near 8);
`GridSweep` tries every value. `recommend` turns any set of outcomes into the chosen value, so the answer does not depend on
which policy produced the trials.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Protocol

# "Throughput stops rising": a step up that adds less than this share is flat.
DEFAULT_MIN_GAIN = 0.05
# Bisection stops once the bracket is narrower than this share of its lower end (at least 1):
# telling 120 from 126 apart would take longer trials than the noise allows.
DEFAULT_RESOLUTION = 0.1
DEFAULT_MAX_TRIALS = 16


@dataclass(frozen=True)
class TrialOutcome:
    """What a policy needs to know about one finished trial."""

    max_active: int
    throughput: float
    passed: bool


class SearchPolicy(Protocol):
    """Proposes candidates one at a time; `record` feeds back the result of the last proposal."""

    def next_candidate(self) -> int | None: ...

    def record(self, outcome: TrialOutcome) -> None: ...


def _check_range(low: int, high: int) -> None:
    if low < 1 or high < low:
        raise ValueError(f"need 1 <= min <= max, got min={low} max={high}")


class GridSweep:
    """Every `step`-th value from `low` to `high` (and `high` itself), in order."""

    def __init__(self, low: int, high: int, step: int = 1) -> None:
        _check_range(low, high)
        if step < 1:
            raise ValueError("step must be at least 1")
        values = list(range(low, high + 1, step))
        if values[-1] != high:
            values.append(high)
        self._pending = values

    def next_candidate(self) -> int | None:
        return self._pending[0] if self._pending else None

    def record(self, outcome: TrialOutcome) -> None:
        if outcome.max_active in self._pending:
            self._pending.remove(outcome.max_active)


Phase = Literal["grow", "slo", "knee", "done"]


class GrowBisect:
    """Double from `low` until the SLO fails or throughput goes flat, then bisect the bracket.

    Two brackets can come out of the growth phase:
    - *slo*: `lo` passed, `hi` broke the SLO and both still added throughput. Bisect for the highest
      passing value; once a value (passing or not) adds under `min_gain` over `lo`, throughput was
      already flat at `lo`, so the search turns to the knee below `lo`.
    - *knee*: `hi` passed and is on the plateau (the next step up added under `min_gain`), `lo` is
      below it (`hi` added at least `min_gain` over `lo`). Search for the smallest value whose
      throughput is within `min_gain` of the plateau: more concurrency beyond it only adds latency.
      Below the knee throughput grows about in proportion to the limit, so a probe goes where that
      line from `lo` reaches the plateau; after an estimate that fell short of the plateau the
      next probe is the midpoint, which bounds the trials when the line is a poor guess.
    """

    def __init__(
        self,
        low: int,
        high: int,
        *,
        min_gain: float = DEFAULT_MIN_GAIN,
        resolution: float = DEFAULT_RESOLUTION,
        max_trials: int = DEFAULT_MAX_TRIALS,
    ) -> None:
        _check_range(low, high)
        self.low, self.high = low, high
        self.min_gain, self.resolution, self.max_trials = min_gain, resolution, max_trials
        self.phase: Phase = "grow"
        self.results: dict[int, TrialOutcome] = {}
        self._grown: list[int] = []  # growth values tried, in order
        self._lo = self._hi = 0
        self._plateau = 0.0
        self._interpolate = True  # alternates in the knee phase

    # -- the policy protocol -------------------------------------------------------------------
    def next_candidate(self) -> int | None:
        if self.phase == "done" or len(self.results) >= self.max_trials:
            return None
        if self.phase == "grow":
            return self.low if not self._grown else min(self._grown[-1] * 2, self.high)
        if self._hi - self._lo <= max(1, int(self._lo * self.resolution)):
            self.phase = "done"
            return None
        if self.phase == "knee" and self._interpolate:
            return self._knee_estimate()
        return (self._lo + self._hi) // 2

    def _knee_estimate(self) -> int:
        """Where throughput rising in proportion from `lo` would reach the plateau, kept inside
        the bracket."""
        lo_tput = self.results[self._lo].throughput
        if lo_tput <= 0:
            return (self._lo + self._hi) // 2
        estimate = math.ceil(self._lo * self._plateau / ((1.0 + self.min_gain) * lo_tput))
        return min(max(estimate, self._lo + 1), self._hi - 1)

    def record(self, outcome: TrialOutcome) -> None:
        value = outcome.max_active
        self.results[value] = outcome
        if self.phase == "grow":
            self._after_growth(outcome)
        elif self.phase == "slo":
            self._after_slo_probe(outcome)
        elif self.phase == "knee":
            self._after_knee_probe(outcome)

    # -- transitions -----------------------------------------------------------------------------
    def _rises(self, upper: TrialOutcome, lower: TrialOutcome) -> bool:
        return upper.throughput >= (1.0 + self.min_gain) * lower.throughput

    def _after_growth(self, outcome: TrialOutcome) -> None:
        prev = self.results[self._grown[-1]] if self._grown else None
        self._grown.append(outcome.max_active)
        if prev is None:
            if not outcome.passed:
                self.phase = "done"  # even the smallest value breaks the SLO
            elif outcome.max_active >= self.high:
                self.phase = "done"
        elif not self._rises(outcome, prev):
            # Flat (whether or not it passed: a failing trial's throughput is still measured):
            # the SLO boundary above no longer matters, the knee lies at or below `prev`.
            self._to_knee(prev, max(prev.throughput, outcome.throughput))
        elif not outcome.passed:
            self._bracket("slo", prev.max_active, outcome.max_active)
        elif outcome.max_active >= self.high:
            self.phase = "done"  # still rising at the top of the range

    def _after_slo_probe(self, outcome: TrialOutcome) -> None:
        lo = self.results[self._lo]
        if not self._rises(outcome, lo):
            self._to_knee(lo, max(lo.throughput, outcome.throughput))
        elif not outcome.passed:
            self._hi = outcome.max_active
        else:
            self._lo = outcome.max_active

    def _after_knee_probe(self, outcome: TrialOutcome) -> None:
        on_plateau = outcome.throughput * (1.0 + self.min_gain) >= self._plateau
        if not outcome.passed or on_plateau:
            self._hi = outcome.max_active
        else:
            # An estimate that fell short means throughput bends below the line: halve next.
            self._interpolate = not self._interpolate
            self._lo = outcome.max_active
            return
        self._interpolate = True

    def _to_knee(self, flat: TrialOutcome, plateau: float) -> None:
        """`flat` is on the plateau; every value tried below it added throughput on the way up."""
        below = [v for v in self.results if v < flat.max_active]
        if not below:
            self.phase = "done"  # flat from the smallest value on
            return
        self._plateau = plateau
        self._interpolate = True
        self._bracket("knee", max(below), flat.max_active)

    def _bracket(self, phase: Phase, lo: int, hi: int) -> None:
        self.phase, self._lo, self._hi = phase, lo, hi


Basis = Literal["flat", "slo", "top", "none"]


@dataclass(frozen=True)
class Choice:
    """The recommended value and why: `flat` (a higher value tried adds under `min_gain`), `slo`
    (the next value tried breaks the SLO while still adding throughput), `top` (still rising at
    the highest value tried), `none` (nothing passed). `first_fail` is the smallest failing value
    above the choice; `flat_from` the highest value tried above it that adds under `min_gain`."""

    max_active: int | None
    basis: Basis
    first_fail: int | None = None
    flat_from: int | None = None


def recommend(outcomes: list[TrialOutcome], *, min_gain: float = DEFAULT_MIN_GAIN) -> Choice:
    """The smallest passing value whose throughput is within `min_gain` of the best passing one."""
    passing = [o for o in outcomes if o.passed]
    failing = sorted(o.max_active for o in outcomes if not o.passed)
    if not passing:
        return Choice(None, "none", failing[0] if failing else None)
    best = max(o.throughput for o in passing)
    chosen = min(
        (o for o in passing if o.throughput * (1.0 + min_gain) >= best), key=lambda o: o.max_active
    )
    value = chosen.max_active
    first_fail = next((v for v in failing if v > value), None)
    flat = [
        o.max_active
        for o in outcomes
        if o.max_active > value and o.throughput < (1.0 + min_gain) * chosen.throughput
    ]
    if flat:
        return Choice(value, "flat", first_fail, max(flat))
    return Choice(value, "slo" if first_fail is not None else "top", first_fail)
