"""The adaptive limit's control law: a pure function from what the last interval showed to the next
MAX_ACTIVE, with the reason in words.

It steers on what LLM serving cares about, not on request round-trip time (which mostly measures
output length): the p95 time to first token and p95 inter-token latency of the requests the gateway
admitted (from the slot's grant, so the gateway's own queue does not count), and the engine's own
signals: requests waiting inside it, KV-cache use, preemptions.

- **Down, at once and by a factor**, when the SLO breaks, the engine preempts, or the engine queues
  requests itself (the limit is above what the engine runs at once). The factor is the measured
  p95 over the target (so a 2x slower engine halves the limit in one step), clamped to [0.5, 0.9].
- **Up towards the headroom line**, when the SLO holds with room (both p95s under `headroom` of
  their targets): to the limit at which the worse p95 would reach `headroom` if it grew in
  proportion to the limit (limit x headroom / worst), but by at most `GROWTH` of the limit per
  interval and at least one. Latency grows more slowly than the batch, so this undershoots and
  converges from below: a limit cut far down by an earlier event climbs back in a few intervals,
  and the last steps near the SLO are single ones. Only while
  the engine is not saturated (no waiting, KV under `kv_high`) and the current limit is in use
  (requests queue at the gateway, or slots run full). Never up in the `cooldown` intervals after a
  decrease, nor on too few samples: an increase must be earned by requests admitted under the
  current limit.
- **Carefully near where it broke** (TCP's slow-start threshold): the limit at which the SLO last
  broke is remembered for a while (the caller forgets it after `FORGET` calm intervals, since the
  workload may have changed); fast growth stops at `CEILING_SHARE` of it and the steps beyond are
  single ones, so a limit bounded by the KV cache or a latency cliff creeps up to the edge instead
  of jumping over it again.
- **Not down again while draining**: after a cut, the requests admitted under the old, higher limit
  still run (active > limit) and still make the latencies; cutting again on their evidence would
  cut twice for one event. The law holds until they have drained.
- **Hold** otherwise, and always within [min, max]. Between "break" and "headroom" is a dead band,
  which is what keeps a steady workload's limit still.

The constants were chosen by experiment (benchmarks/adaptive.py, docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from llmctl.core.slo import SLO

HEADROOM = 0.8  # increase only while both p95s are under 80 % of their targets
KV_HIGH = 0.9  # a KV cache above this is saturated
MIN_SAMPLES = 8  # requests admitted under the current limit before it may grow
COOLDOWN = 3  # intervals without an increase after a decrease
FACTOR_MIN, FACTOR_MAX = 0.5, 0.9
GROWTH = 0.5  # the largest increase per interval, as a share of the limit
CEILING_SHARE = 0.85  # fast growth stops at this share of the limit that last broke the SLO
FORGET = 20  # intervals without a decrease after which that limit is forgotten


@dataclass(frozen=True)
class Signals:
    """One interval's evidence. Latencies of requests admitted under the current limit (seconds;
    None: no sample); engine signals as polled (None: unknown)."""

    p95_ttft_s: float | None
    p95_itl_s: float | None
    samples: int
    engine_waiting: float | None = None
    kv_usage: float | None = None
    preemptions_per_s: float | None = None
    queued: int = 0  # requests waiting at the gateway
    active: int = 0  # requests holding a slot now


@dataclass(frozen=True)
class Decision:
    limit: int
    direction: str  # "up", "down" or "hold"
    reason: str


def _ratio(measured: float | None, target: float | None) -> float | None:
    if measured is None or target is None:
        return None
    return measured / target


def _fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def decide(
    limit: int,
    signals: Signals,
    slo: SLO,
    *,
    low: int,
    high: int,
    since_decrease: int,
    ceiling: int | None = None,
) -> Decision:
    """The limit for the next interval. `since_decrease`: intervals since the last decrease;
    `ceiling`: the limit at which the SLO last broke, while it is remembered (None: none)."""
    ttft = _ratio(signals.p95_ttft_s, slo.ttft_s)
    itl = _ratio(signals.p95_itl_s, slo.itl_s)
    worst = max((r for r in (ttft, itl) if r is not None), default=None)
    clamp = min(max(limit, low), high)

    def down(factor: float, reason: str) -> Decision:
        if signals.active > limit:
            return Decision(limit, "hold", f"{reason}; draining {signals.active} admitted before")
        factor = min(max(factor, FACTOR_MIN), FACTOR_MAX)
        new = max(low, min(clamp, math.floor(limit * factor)))
        if new == limit:
            return Decision(limit, "hold", f"{reason}; at the minimum {low}")
        return Decision(new, "down", reason)

    if signals.preemptions_per_s is not None and signals.preemptions_per_s > 0:
        return down(FACTOR_MAX, f"engine preempts {signals.preemptions_per_s:.2g}/s")
    if worst is not None and worst > 1 and signals.samples > 0:
        names = []
        if ttft is not None and ttft > 1 and signals.p95_ttft_s is not None and slo.ttft_s:
            names.append(f"TTFT p95 {_fmt_s(signals.p95_ttft_s)} > {_fmt_s(slo.ttft_s)}")
        if itl is not None and itl > 1 and signals.p95_itl_s is not None and slo.itl_s:
            names.append(f"ITL p95 {_fmt_s(signals.p95_itl_s)} > {_fmt_s(slo.itl_s)}")
        return down(1 / worst, ", ".join(names))
    if signals.engine_waiting is not None and signals.engine_waiting >= 1:
        share = max(0.0, 1 - signals.engine_waiting / max(limit, 1))
        return down(share, f"engine queues {signals.engine_waiting:.0f} itself")
    if clamp != limit:
        return Decision(clamp, "down" if clamp < limit else "up", f"bounds [{low}, {high}]")
    kv = signals.kv_usage
    in_use = signals.queued > 0 or signals.active >= limit
    room = worst is not None and worst < HEADROOM and (kv is None or kv < KV_HIGH)
    if (
        room
        and in_use
        and signals.samples >= MIN_SAMPLES
        and since_decrease >= COOLDOWN
        and limit < high
    ):
        assert worst is not None  # `room` says so
        target = math.floor(limit * HEADROOM / max(worst, 0.05))
        if ceiling is not None:
            target = min(target, math.floor(ceiling * CEILING_SHARE))
        step = max(1, min(math.floor(limit * GROWTH), target - limit))
        return Decision(min(high, limit + step), "up", _headroom(signals, slo, kv))
    why = "SLO holds" if worst is not None and worst <= 1 else "no samples"
    if worst is not None and worst >= HEADROOM:
        why = "near the SLO"
    elif not in_use:
        why = "limit not in use"
    elif kv is not None and kv >= KV_HIGH:
        why = f"KV {kv * 100:.0f} %"
    elif since_decrease < COOLDOWN:
        why = "settling after a decrease"
    elif signals.samples < MIN_SAMPLES:
        why = f"{signals.samples} samples"
    return Decision(limit, "hold", why)


def _headroom(signals: Signals, slo: SLO, kv: float | None) -> str:
    parts = []
    if signals.p95_ttft_s is not None and slo.ttft_s:
        parts.append(f"TTFT p95 {_fmt_s(signals.p95_ttft_s)} < {_fmt_s(slo.ttft_s)}")
    if signals.p95_itl_s is not None and slo.itl_s:
        parts.append(f"ITL p95 {_fmt_s(signals.p95_itl_s)} < {_fmt_s(slo.itl_s)}")
    if kv is not None:
        parts.append(f"KV {kv * 100:.0f} %")
    return ", ".join(parts)
