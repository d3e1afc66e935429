"""The adaptive limit's loop: every interval, gather the evidence, ask the law, apply its answer.

Evidence: the admitted TTFT and TPOT of every request the gateway served (exact values, taken as the
proxy observes them, not histogram buckets), kept since the last change of the limit so that only
requests admitted under the current limit count; and the engines' own signals, polled from their
`/metrics` (waiting requests, KV-cache use, the preemption counter): with several engines the worst
one speaks for all, since one MAX_ACTIVE applies to each.

Every change is logged with its reason and counted in llmctl_gateway_limit_changes_total{source,
direction, reason}; every decision (holds too) is kept as the last one (GET /admin/limits, and the
llmctl_gateway_limit_decision gauge that `top` and the dashboards show). When the
engines report nothing at all (no /metrics, or nonsense), the loop still steers on latency; when it
has no latency samples either it holds, and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from llmctl.gateway import accesslog
from llmctl.gateway.adaptive import FORGET, Decision, Signals, decide
from llmctl.gateway.admission import AdmissionController
from llmctl.gateway.engines import EnginePool

log = logging.getLogger(__name__)

MAX_SAMPLES = 500  # the newest requests under the current limit that the p95s are taken over
WINDOW_INTERVALS = 5  # ... of those that reported in the last this many control intervals


@dataclass
class LastDecision:
    """What the limiter did last, for GET /admin/limits and `top`."""

    limit: int
    direction: str
    reason: str
    at: float
    reason_kind: str


_HOLD_KINDS = (
    ("draining", "draining"),
    ("at the minimum", "minimum"),
    ("near the SLO", "near_slo"),
    ("SLO holds", "slo_ok"),
    ("not in use", "idle"),
    ("KV", "kv"),
    ("settling", "cooldown"),
    ("samples", "samples"),
)
_CHANGE_KINDS = (
    ("preempts", "preemptions"),
    ("queues", "engine_queue"),
    ("bounds", "bounds"),
)


def reason_kind(decision: Decision) -> str:
    """A bounded label for a decision's reason (the text itself is unbounded)."""
    text = decision.reason
    if decision.direction == "hold":
        return next((kind for needle, kind in _HOLD_KINDS if needle in text), "hold")
    for needle, kind in _CHANGE_KINDS:
        if needle in text:
            return kind
    if decision.direction == "up":
        return "headroom"
    return "ttft" if "TTFT p95" in text else "itl"


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


class Measurements:
    """Admitted TTFT and TPOT of the requests admitted since the limit last changed (a request
    admitted under the old limit that ends later still shows the old limit's latencies), and only
    the recent ones: a limit that held through a change of workload is judged on the new one."""

    def __init__(self, interval_s: Callable[[], float] = lambda: 1.0) -> None:
        self._ttft: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._tpot: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self.since = -math.inf  # time.monotonic() of the last change
        self._interval_s = interval_s  # the control interval now (it can change live)

    def first_token(self, admitted_s: float, admitted_at: float) -> None:
        if admitted_at >= self.since:
            self._ttft.append((time.monotonic(), admitted_s))

    def per_token(self, seconds: float, admitted_at: float) -> None:
        if admitted_at >= self.since:
            self._tpot.append((time.monotonic(), seconds))

    def _recent(self, samples: deque[tuple[float, float]]) -> list[float]:
        cutoff = time.monotonic() - WINDOW_INTERVALS * self._interval_s()
        return [value for at, value in samples if at >= cutoff]

    @property
    def ttft(self) -> list[float]:
        return self._recent(self._ttft)

    @property
    def tpot(self) -> list[float]:
        return self._recent(self._tpot)

    def reset(self) -> None:
        self._ttft.clear()
        self._tpot.clear()
        self.since = time.monotonic()


class AdaptiveLimiter:
    """Runs the control law while the admission limits say `limit_mode = "adaptive"`."""

    def __init__(
        self,
        admission: AdmissionController,
        pool: EnginePool,
        measurements: Measurements,
        on_decision: Callable[[Decision, str, bool], None] | None = None,
    ) -> None:
        self.admission = admission
        self.pool = pool
        self.measurements = measurements
        self.last: LastDecision | None = None
        self.changes: dict[tuple[str, str], int] = {}
        self._since_decrease = 999
        self._preemptions: dict[str, tuple[float, float]] = {}  # engine -> (time, counter)
        self._waiting: float | None = None  # the engine queue at the previous interval
        self._ceiling: int | None = None  # the limit at which the SLO last broke
        self._task: asyncio.Task[None] | None = None
        self._on_decision = on_decision

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def signals(self, now: float) -> Signals:
        m = self.measurements
        ttft = m.ttft
        engines = [e for e in self.pool if e.in_rotation()]
        waiting = [e.waiting for e in engines if e.polled]
        kv = [e.kv_usage for e in engines if e.polled]
        rates = []
        for engine in engines:
            if engine.preemptions is None:
                continue
            before = self._preemptions.get(engine.name)
            self._preemptions[engine.name] = (now, engine.preemptions)
            if before is not None and now > before[0]:
                rates.append(max(0.0, engine.preemptions - before[1]) / (now - before[0]))
        # Requests wait inside an engine for a moment whenever long prompts arrive together
        # (their prefills take turns); an engine that queues because the limit is above what it
        # runs at once queues at every look. Only a queue seen at two intervals in a row counts.
        now_waiting = max(waiting) if waiting else None
        previous, self._waiting = self._waiting, now_waiting
        sustained = None if now_waiting is None else min(now_waiting, previous or 0.0)
        return Signals(
            p95_ttft_s=p95(ttft),
            p95_itl_s=p95(m.tpot),
            samples=len(ttft),
            engine_waiting=sustained,
            kv_usage=max(kv) if kv else None,
            preemptions_per_s=sum(rates) if rates else None,
            queued=self.admission.queued,
            active=max((e.active for e in engines), default=0),
        )

    def step(self, now: float) -> Decision | None:
        """One interval (None in static mode)."""
        limits = self.admission.limits
        if limits.limit_mode != "adaptive":
            self._since_decrease = 999
            return None
        signals = self.signals(now)
        decision = decide(
            limits.max_active,
            signals,
            limits.adaptive_slo,
            low=limits.adaptive_min,
            high=limits.adaptive_max,
            since_decrease=self._since_decrease,
            ceiling=self._ceiling if self._since_decrease < FORGET else None,
        )
        if signals.engine_waiting is None and signals.kv_usage is None:
            # The engines report nothing usable: latency alone steers (and with no latency
            # samples either, the limit holds where it is).
            decision = Decision(
                decision.limit, decision.direction, f"{decision.reason}; no engine signals"
            )
        kind = reason_kind(decision)
        self.last = LastDecision(decision.limit, decision.direction, decision.reason, now, kind)
        if decision.direction == "down":
            self._since_decrease = 0
            if kind != "bounds":
                self._ceiling = limits.max_active
        else:
            self._since_decrease += 1
        changed = decision.limit != limits.max_active
        if changed:
            key = (decision.direction, kind)
            self.changes[key] = self.changes.get(key, 0) + 1
            after = self.admission.update({"max_active": decision.limit})
            accesslog.limits_changed("adaptive", limits, after, decision.reason)
            self.measurements.reset()  # judge the new limit on its own requests
        if self._on_decision is not None:
            self._on_decision(decision, kind, changed)
        return decision

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.admission.limits.adaptive_interval_s)
            try:
                self.step(time.monotonic())
            except Exception:
                # A bug must not end adaptive control for good: keep the last limit, say so.
                log.exception(
                    "adaptive step failed; the limit stays at %d", self.admission.limits.max_active
                )
