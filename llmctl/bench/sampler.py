"""Sample server-side metrics (gateway and engine /metrics) while a level runs; keep peaks, deltas
and the gauges over time."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmctl.bench.report import SERIES_NAMES, ServerReport, ServerSeries, TargetLimits
from llmctl.bench.series import PeakSeries
from llmctl.core import http
from llmctl.core import metrics as m

# ServerSeries field (and ServerReport's `peak_<field>`) -> its gauge, summed over label sets
# (e.g. several engines).
_GAUGES = {
    "kv_cache_usage_perc": m.VLLM_KV_USAGE.series,
    "num_requests_running": m.VLLM_RUNNING.series,
    "num_requests_waiting": m.VLLM_WAITING.series,
    "gateway_queue_depth": m.GATEWAY_QUEUE_DEPTH.series,
    "gateway_active_requests": m.GATEWAY_ACTIVE.series,
}
_PREEMPTIONS = m.VLLM_PREEMPTIONS.series
# ServerReport field -> histogram sums whose increase over the span, divided by the span, is the
# time-averaged number of requests in that state (Little's law). vLLM observes each request once,
# as it finishes, so a level that drains completely is counted whole.
_TIME_SUMS = {
    "mean_num_requests_running": (
        f"{m.VLLM_PREFILL_TIME.name}_sum",
        f"{m.VLLM_DECODE_TIME.name}_sum",
    ),
    "mean_num_requests_waiting": (f"{m.VLLM_QUEUE_TIME.name}_sum",),
}
# TargetLimits field -> the gateway gauge that publishes it.
_LIMITS = {
    "max_active": m.GATEWAY_MAX_ACTIVE.series,
    "queue_max": m.GATEWAY_QUEUE_MAX.series,
    "queue_timeout_s": m.GATEWAY_QUEUE_TIMEOUT.series,
}
_COUNTERS = {_PREEMPTIONS, *(name for names in _TIME_SUMS.values() for name in names)}
_WANTED = {*_GAUGES.values(), *_COUNTERS, *_LIMITS.values()}
_NAME = re.compile(r"[^{\s]+")
# Sampling starts this fast and slows down to the configured interval as the level goes on, so a
# level of a few seconds still gets about 20 samples and a long one does not pay for them.
_FASTEST_S = 0.1
_SAMPLES_WANTED = 20


def parse_series(text: str) -> dict[str, float]:
    """The series llmctl cares about from a Prometheus text page, summed over label sets.

    Only their lines reach the parser: a vLLM page is ~50 kB, and at 10 samples a second parsing
    all of it would cost the load generator's event loop several percent."""
    lines = []
    for line in text.splitlines():
        name = _NAME.match(line)
        if name is not None and name.group() in _WANTED:
            lines.append(line)
    values: dict[str, float] = {}
    for family in text_string_to_metric_families("\n".join(lines) + "\n"):
        for sample in family.samples:
            if sample.name in _WANTED:
                values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


def limits_from(values: dict[str, float]) -> TargetLimits | None:
    """The gateway's published limits, None when the page had none of them (a bare engine)."""
    found = {field: values[series] for field, series in _LIMITS.items() if series in values}
    if not found:
        return None
    return TargetLimits(
        max_active=_int(found.get("max_active")),
        queue_max=_int(found.get("queue_max")),
        queue_timeout_s=found.get("queue_timeout_s"),
    )


def _int(value: float | None) -> int | None:
    return None if value is None else round(value)


def sample_interval(elapsed_s: float, longest_s: float) -> float:
    """Seconds until the next sample, `elapsed_s` into a level."""
    return min(longest_s, max(_FASTEST_S, elapsed_s / _SAMPLES_WANTED))


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port (None for the scheme's default), as browsers compare origins."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


class ServerSampler:
    """Polls `urls` between `start()` and `stop()` (within `open`/`close`), every `interval`
    seconds at most (faster early in a level, see `sample_interval`), and keeps at most `points`
    points of each gauge over a level. Series times count from `epoch` (a perf_counter reading,
    by default when the sampler is made: the run's start).

    `headers` (the API key) go only to URLs with `trusted`'s origin: another host named by
    --metrics-url must not learn the target's key."""

    def __init__(
        self,
        urls: list[str],
        interval: float,
        headers: dict[str, str],
        trusted: str,
        *,
        points: int = 300,
        epoch: float | None = None,
    ) -> None:
        self.urls = urls
        self.interval = interval
        self.headers = headers
        self.trusted = origin(trusted)
        self.points = points
        self.epoch = time.perf_counter() if epoch is None else epoch
        self.limits: TargetLimits | None = None  # as first read: the run's recorded limits
        self._report = ServerReport()
        self._series = PeakSeries(points)
        self._first: dict[str, float] = {}
        self._last: dict[str, float] = {}
        self._started = self._previous = 0.0
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None

    def open(self) -> None:
        """Create the HTTP client before any load runs: building its TLS context blocks the loop."""
        if self._client is None:
            self._client = http.async_client(timeout_s=max(self.interval, 2.0))

    async def close(self) -> None:
        await self._cancel()  # a level cut short (Ctrl-C, a failing hook) never called `stop`
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def start(self) -> None:
        self._report = ServerReport(sources=list(self.urls))
        self._series = PeakSeries(self.points)
        self._first, self._last = {}, {}
        self._started = self._previous = 0.0
        await self.sample()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> ServerReport:
        await self._cancel()
        await self.sample()
        self._report.series = self.series()
        return self._report

    def series(self) -> ServerSeries | None:
        """The level's gauges over time so far; None before the first sample or when no page
        carried any of them."""
        found = self._series.names
        if not found:
            return None
        return ServerSeries.model_validate(
            {
                "start_s": round(self._started - self.epoch, 3),
                "t_s": [round(t, 3) for t in self._series.times()],
                **{name: self._series.values(name) for name in SERIES_NAMES if name in found},
            }
        )

    async def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            elapsed = time.perf_counter() - self._started
            await asyncio.sleep(sample_interval(elapsed, self.interval))
            await self.sample()

    async def sample(self) -> None:
        """Read every URL once; an endpoint that fails is noted once and does not stop the run."""
        if self._client is None:
            return
        merged: dict[str, float] = {}
        for url in self.urls:
            try:
                headers = self.headers if origin(url) == self.trusted else None
                resp = await self._client.get(url, headers=headers)
                resp.raise_for_status()
                merged.update(parse_series(resp.text))
            except (httpx.HTTPError, ValueError) as exc:
                note = f"{url}: {type(exc).__name__}: {exc}"[:200]
                if len(self._report.errors) < 5 and note not in self._report.errors:
                    self._report.errors.append(note)
                continue
        self.take(merged, time.perf_counter())

    def take(self, values: dict[str, float], now: float) -> None:
        """Fold one sample, read at `now` (perf_counter seconds), into the level's report."""
        report = self._report
        report.samples += 1
        if report.samples == 1:
            self._started = now
        else:
            gap = now - self._previous
            report.max_sample_gap_s = max(report.max_sample_gap_s or 0.0, gap)
            report.span_s = now - self._started
        self._previous = now
        if self.limits is None:
            self.limits = limits_from(values)
        gauges = {name: values[series] for name, series in _GAUGES.items() if series in values}
        for name, value in gauges.items():
            current = getattr(report, f"peak_{name}")
            setattr(report, f"peak_{name}", value if current is None else max(current, value))
        self._series.add(now - self._started, gauges)
        for name in _COUNTERS & values.keys():
            self._first.setdefault(name, values[name])
            self._last[name] = values[name]
        if _PREEMPTIONS in self._first:
            report.preemptions = self._increase(_PREEMPTIONS)
        for field, names in _TIME_SUMS.items():
            if report.span_s and all(name in self._first for name in names):
                seconds = sum(self._increase(name) for name in names)
                setattr(report, field, seconds / report.span_s)

    def _increase(self, name: str) -> float:
        # A counter that went down was reset (the engine restarted): count from zero again.
        first, last = self._first[name], self._last[name]
        return last - first if last >= first else last
