"""Turn request records into a level's numbers: percentiles, throughput, goodput, failure classes."""

from __future__ import annotations

import itertools
import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

from llmctl.bench.record import FAILURE_CLASSES, RequestRecord
from llmctl.bench.report import LevelReport, ServerReport, StreamReport, TokenSource
from llmctl.bench.strategies import Strategy
from llmctl.core.slo import SLO


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on pre-sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


STATS = ("mean", "std", "median", "p90", "p95", "p99", "max")
_QUANTILES = {"median": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}


def summarize(
    values: list[float], name: str, stats: Sequence[str] = STATS
) -> dict[str, float | None]:
    """`stats` of `values` as `{mean_<name>_ms: ...}` (None when empty); std is the population's,
    as numpy's (and vLLM's) default."""
    if not values:
        return {f"{k}_{name}_ms": None for k in stats}
    values.sort()
    mean = sum(values) / len(values)
    out: dict[str, float | None] = {}
    for k in stats:
        if k == "mean":
            value = mean
        elif k == "std":
            value = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
        elif k == "max":
            value = values[-1]
        else:
            value = percentile(values, _QUANTILES[k])
        out[f"{k}_{name}_ms"] = value
    return out


@dataclass
class Window:
    """The measurement window on the perf_counter clock; warm-up lies before `start`."""

    start: float
    end: float

    @property
    def seconds(self) -> float:
        return max(self.end - self.start, 1e-9)


def tpot_ms(record: RequestRecord) -> float | None:
    """Time per output token after the first, as vLLM defines it."""
    if record.first_token is None or record.output_tokens < 2:
        return None
    return (record.end - record.first_token) * 1000.0 / (record.output_tokens - 1)


def meets_slo(record: RequestRecord, slo: SLO) -> bool:
    """Whether one request met every target (its ITL judged by its TPOT; see core.slo)."""
    if record.first_token is None:
        return False
    if slo.ttft_s is not None and record.first_token - record.sent > slo.ttft_s:
        return False
    if slo.e2e_s is not None and record.end - record.sent > slo.e2e_s:
        return False
    if slo.itl_s is not None:
        tpot = tpot_ms(record)
        if tpot is not None and tpot > slo.itl_s * 1000.0:
            return False
    return True


def _tokens_in(record: RequestRecord, window: Window) -> float:
    """Output tokens that arrived inside the window, scaled from chunks to `usage` tokens."""
    times = record.token_times
    if not times:
        return 0.0
    inside = bisect_right(times, window.end) - bisect_left(times, window.start)
    if inside <= 0:
        return 0.0
    return inside * record.output_tokens / len(times)


def busiest_second(records: Sequence[RequestRecord], window: Window) -> float | None:
    """Output tokens in the window's busiest whole second (vLLM's peak output token throughput);
    the window's own rate when it is shorter than a second, None when nothing arrived."""
    buckets = [0.0] * max(1, int(window.seconds))
    arrived = False
    for r in records:
        if not r.ok or not r.token_times:
            continue
        scale = r.output_tokens / len(r.token_times)  # chunks to `usage` tokens
        for t in r.token_times:
            second = int(t - window.start)
            if window.start <= t <= window.end and second < len(buckets):
                buckets[second] += scale
                arrived = True
    if not arrived:
        return None
    return buckets[0] / window.seconds if window.seconds < 1 else max(buckets)


def _token_source(records: Sequence[RequestRecord]) -> TokenSource:
    usage = sum(1 for r in records if r.completion_tokens is not None)
    if not records:
        return "none"
    if usage == len(records):
        return "usage"
    return "chunks" if usage == 0 else "mixed"


def level_report(
    strategy: Strategy,
    measured: Sequence[RequestRecord],
    everything: Sequence[RequestRecord],
    window: Window,
    *,
    slo: SLO,
    max_concurrent_requests: int,
    server: ServerReport | None = None,
    streams: Sequence[StreamReport] = (),
) -> LevelReport:
    """A level's report: its numbers over all of its requests (see `numbers`), the server side,
    and for a mix level each stream's own (`stream_report`)."""
    fields = numbers(
        measured, everything, window, slo=slo, max_concurrent_requests=max_concurrent_requests
    )
    return LevelReport.model_validate(
        {**fields, "strategy": strategy, "server": server, "streams": list(streams)}
    )


def stream_report(
    name: str,
    measured: Sequence[RequestRecord],
    everything: Sequence[RequestRecord],
    window: Window,
    *,
    slo: SLO,
    max_concurrent_requests: int,
) -> StreamReport:
    """One stream of a mix level, over the level's window."""
    fields = numbers(
        measured, everything, window, slo=slo, max_concurrent_requests=max_concurrent_requests
    )
    return StreamReport.model_validate({**fields, "name": name})


def numbers(
    measured: Sequence[RequestRecord],
    everything: Sequence[RequestRecord],
    window: Window,
    *,
    slo: SLO,
    max_concurrent_requests: int,
) -> dict[str, object]:
    """Latencies come from `measured` (requests sent inside the window); rates from what happened
    inside the window, counting every request (a warm-up request finishing late still flowed)."""
    ok = [r for r in measured if r.ok]
    failures = dict.fromkeys(FAILURE_CLASSES, 0)
    samples: dict[str, str] = {}
    for r in measured:
        if r.failure is not None:
            failures[r.failure] = failures.get(r.failure, 0) + 1
            samples.setdefault(r.failure, r.error or "")

    ttft = [(r.first_token - r.sent) * 1000.0 for r in ok if r.first_token is not None]
    e2el = [(r.end - r.sent) * 1000.0 for r in ok]
    tpot = [t for t in (tpot_ms(r) for r in ok) if t is not None]
    itl: list[float] = []
    for r in ok:
        times = r.token_times
        itl.extend((b - a) * 1000.0 for a, b in itertools.pairwise(times))
    # The wait of served requests: a rejection's "wait" (0, or the whole timeout) is its failure.
    waits = [r.queue_wait_ms for r in ok if r.queue_wait_ms is not None]
    admitted_ttft: list[float] = []
    admitted_e2el: list[float] = []
    for r in ok:
        if r.queue_wait_ms is not None and r.first_token is not None:
            admitted_ttft.append((r.first_token - r.sent) * 1000.0 - r.queue_wait_ms)
            admitted_e2el.append((r.end - r.sent) * 1000.0 - r.queue_wait_ms)
    lag = [max(0.0, r.sent - r.planned) * 1000.0 for r in measured if r.sent > 0]

    done_inside = [r for r in everything if r.ok and window.start <= r.end <= window.end]
    seconds = window.seconds
    output_inside = sum(_tokens_in(r, window) for r in everything if r.ok)
    input_inside = sum(r.prompt_tokens or r.prompt_estimate for r in done_inside)
    goodput = None if slo.empty else sum(1 for r in done_inside if meets_slo(r, slo)) / seconds

    stats: dict[str, float | None] = {}
    for name, values in (("ttft", ttft), ("tpot", tpot), ("itl", itl), ("e2el", e2el)):
        stats.update(summarize(values, name))
    fields: dict[str, object] = {
        "duration": seconds,
        "completed": len(ok),
        "failed": len(measured) - len(ok),
        "failures": failures,
        "error_samples": samples,
        "total_input_tokens": sum(r.prompt_tokens or r.prompt_estimate for r in ok),
        "total_output_tokens": sum(r.output_tokens for r in ok),
        "token_source": _token_source(ok),
        "request_throughput": len(done_inside) / seconds,
        "request_goodput": goodput,
        "output_throughput": output_inside / seconds,
        "total_token_throughput": (output_inside + input_inside) / seconds,
        "max_output_tokens_per_s": busiest_second(everything, window),
        "max_concurrent_requests": max_concurrent_requests,
        **stats,
    }
    fields.update(summarize(waits, "queue_wait", ("mean", "p95", "p99", "max")))
    for name, values in (("admitted_ttft", admitted_ttft), ("admitted_e2el", admitted_e2el)):
        fields.update(summarize(values, name, ("mean", "median", "p95", "p99")))
    fields.update(summarize(lag, "sched_lag", ("mean", "p99", "max")))
    return fields
