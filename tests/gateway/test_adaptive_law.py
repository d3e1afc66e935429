"""The adaptive limit's control law as a pure function: a table of inputs and decisions."""

from __future__ import annotations

import pytest

from llmctl.core import metrics as m
from llmctl.core.slo import SLO
from llmctl.gateway.adaptive import COOLDOWN, MIN_SAMPLES, Decision, Signals, decide
from llmctl.gateway.limiter import reason_kind

SLO_ = SLO(ttft_s=1.0, itl_s=0.05)
BUSY = {"queued": 5, "active": 8}  # the limit is in use: requests wait at the gateway


def _signals(ttft: float | None, itl: float | None, **kw: object) -> Signals:
    values: dict[str, object] = {"samples": 50, **BUSY, **kw}
    return Signals(p95_ttft_s=ttft, p95_itl_s=itl, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("signals", "since", "expected"),
    [
        # Headroom on both targets, demand, enough samples, not settling: up towards the line
        # where the worse p95 (ITL at 60 %) would reach 80 %: 8 x 0.8 / 0.6 = 10.
        (_signals(0.5, 0.03, kv_usage=0.5), 9, (10, "up")),
        # In the dead band between 80 % and 100 % of a target: hold still.
        (_signals(0.9, 0.03, kv_usage=0.5), 9, (8, "hold")),
        # The SLO breaks by 2x: half the limit in one step.
        (_signals(2.0, 0.03), 9, (4, "down")),
        # A slight breach: at least a 10 % cut.
        (_signals(1.05, 0.03), 9, (7, "down")),
        # An engine 4x over: never below half per step.
        (_signals(0.2, 0.2), 9, (4, "down")),
        # Preemptions: the KV cache thrashes even if latency still looks fine.
        (_signals(0.2, 0.02, preemptions_per_s=0.5), 9, (7, "down")),
        # The engine queues 4 itself with 8 admitted: down by that share.
        (_signals(0.2, 0.02, engine_waiting=4), 9, (4, "down")),
        # Saturated KV: hold, do not grow.
        (_signals(0.2, 0.02, kv_usage=0.95), 9, (8, "hold")),
        # The limit is not in use: no reason to grow it.
        (_signals(0.2, 0.02, queued=0, active=3), 9, (8, "hold")),
        # Right after a decrease: settle before growing again.
        (_signals(0.2, 0.02), COOLDOWN - 1, (8, "hold")),
        # Too few samples under the current limit.
        (_signals(0.2, 0.02, samples=MIN_SAMPLES - 1), 9, (8, "hold")),
        # A breach measured while requests admitted under a higher limit still run: the cut that
        # limit came from has not taken effect yet; do not cut twice for one event.
        (_signals(2.0, 0.03, active=12), 1, (8, "hold")),
        (_signals(0.2, 0.02, preemptions_per_s=0.5, active=9), 1, (8, "hold")),
        # No samples at all and a healthy engine: hold.
        (Signals(None, None, 0, queued=5, active=8), 9, (8, "hold")),
    ],
)
def test_decisions(signals: Signals, since: int, expected: tuple[int, str]) -> None:
    decision = decide(8, signals, SLO_, low=2, high=16, since_decrease=since)
    assert (decision.limit, decision.direction) == expected, decision.reason
    assert decision.reason


def test_bounds_are_never_left() -> None:
    assert decide(2, _signals(5.0, 0.03), SLO_, low=2, high=16, since_decrease=9).limit == 2
    assert decide(16, _signals(0.1, 0.01), SLO_, low=2, high=16, since_decrease=9).limit == 16
    # A limit outside new bounds is brought inside them.
    assert decide(20, _signals(0.5, 0.03), SLO_, low=2, high=16, since_decrease=9).limit == 16
    assert decide(1, _signals(0.5, 0.03), SLO_, low=2, high=16, since_decrease=9).limit == 2


@pytest.mark.parametrize(
    ("limit", "ttft", "expected"),
    [
        (40, 0.1, 60),  # far under the SLO: the largest step, half the limit
        (40, 0.4, 60),  # the headroom line is at 80: still capped at half
        (40, 0.7, 45),  # the line is at 45.7: there, not past it
        (40, 0.78, 41),  # the line is at 41.0: one step
        (4, 0.1, 6),  # a small limit grows by half too
        (1, 0.1, 2),  # and the smallest by one
        (60, 0.0, 64),  # never past the maximum
    ],
)
def test_increase_grows_with_the_headroom(limit: int, ttft: float, expected: int) -> None:
    decision = decide(
        limit, _signals(ttft, 0.0, active=limit), SLO_, low=1, high=64, since_decrease=9
    )
    assert (decision.limit, decision.direction) == (expected, "up"), decision.reason


@pytest.mark.parametrize(
    ("limit", "ceiling", "expected"),
    [
        (10, 40, 15),  # far below where it broke: fast growth (capped at +50 %)
        (30, 40, 34),  # fast growth stops at 85 % of the limit that broke
        (34, 40, 35),  # from there, single steps
        (38, 40, 39),  # up to the edge and past it, one at a time
        (30, None, 45),  # nothing remembered: fast growth
    ],
)
def test_growth_slows_near_the_limit_that_broke(
    limit: int, ceiling: int | None, expected: int
) -> None:
    signals = _signals(0.1, 0.0, active=limit)
    decision = decide(limit, signals, SLO_, low=1, high=64, since_decrease=9, ceiling=ceiling)
    assert (decision.limit, decision.direction) == (expected, "up"), decision.reason


def test_reasons_name_the_numbers() -> None:
    breach = decide(8, _signals(2.0, 0.03), SLO_, low=2, high=16, since_decrease=9)
    assert breach.reason == "TTFT p95 2.00 s > 1.00 s"
    grow = decide(8, _signals(0.41, 0.03, kv_usage=0.63), SLO_, low=2, high=16, since_decrease=9)
    assert grow.reason == "TTFT p95 410 ms < 1.00 s, ITL p95 30 ms < 50 ms, KV 63 %"


def test_a_steady_workload_does_not_oscillate() -> None:
    """Feed the law a plant: p95 TTFT grows with the limit past a knee. The limit climbs to the
    knee and then stays within one step of it."""

    def plant(limit: int) -> Signals:
        ttft = 0.3 + max(0, limit - 10) * 0.15  # breaks past 14
        return _signals(ttft, 0.02, kv_usage=min(1.0, limit / 20))

    limit, since, seen = 4, 9, []
    for _ in range(60):
        d: Decision = decide(limit, plant(limit), SLO_, low=1, high=32, since_decrease=since)
        since = 0 if d.direction == "down" else since + 1
        limit = d.limit
        seen.append(limit)
    steady = seen[30:]
    assert max(steady) - min(steady) <= 1, seen
    assert 11 <= sum(steady) / len(steady) <= 14


@pytest.mark.parametrize(
    ("decision", "kind"),
    [
        (Decision(4, "down", "TTFT p95 2.00 s > 1.00 s"), "ttft"),
        (Decision(4, "down", "ITL p95 300 ms > 100 ms"), "itl"),
        (Decision(4, "down", "TTFT p95 2.00 s > 1.00 s, ITL p95 300 ms > 100 ms"), "ttft"),
        (Decision(7, "down", "engine preempts 0.5/s"), "preemptions"),
        (Decision(6, "down", "engine queues 2 itself"), "engine_queue"),
        (Decision(9, "up", "TTFT p95 200 ms < 1.00 s, KV 40 %"), "headroom"),
        (Decision(9, "up", "TTFT p95 200 ms < 1.00 s; no engine signals"), "headroom"),
        (Decision(4, "down", "bounds [1, 4]"), "bounds"),
        (Decision(2, "hold", "TTFT p95 2.00 s > 1.00 s; at the minimum 2"), "minimum"),
        (Decision(8, "hold", "TTFT p95 2.00 s > 1.00 s; draining 12 admitted before"), "draining"),
        (Decision(8, "hold", "SLO holds"), "slo_ok"),
        (Decision(8, "hold", "near the SLO"), "near_slo"),
        (Decision(8, "hold", "limit not in use"), "idle"),
        (Decision(8, "hold", "KV 95 %"), "kv"),
        (Decision(8, "hold", "settling after a decrease"), "cooldown"),
        (Decision(8, "hold", "3 samples; no engine signals"), "samples"),
        (Decision(8, "hold", "no samples"), "samples"),
    ],
)
def test_every_decision_has_a_bounded_reason_label(decision: Decision, kind: str) -> None:
    assert reason_kind(decision) == kind
    assert kind in (*m.LIMIT_REASONS, *m.HOLD_REASONS)
