"""Sample server-side metrics (gateway and engine /metrics) while a level runs; keep peaks and deltas."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
from prometheus_client.parser import text_string_to_metric_families

from llmctl.bench.report import ServerReport
from llmctl.core import http
from llmctl.core import metrics as m

# ServerReport field -> the series it peaks over (summed over label sets, e.g. several engines).
_PEAKS = {
    "peak_kv_cache_usage_perc": m.VLLM_KV_USAGE.series,
    "peak_num_requests_running": m.VLLM_RUNNING.series,
    "peak_num_requests_waiting": m.VLLM_WAITING.series,
    "peak_gateway_queue_depth": m.GATEWAY_QUEUE_DEPTH.series,
    "peak_gateway_active_requests": m.GATEWAY_ACTIVE.series,
}
_PREEMPTIONS = m.VLLM_PREEMPTIONS.series
_WANTED = {*_PEAKS.values(), _PREEMPTIONS}


def parse_series(text: str) -> dict[str, float]:
    """The series llmctl cares about from a Prometheus text page, summed over label sets."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in _WANTED:
                values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


def origin(url: str) -> tuple[str, str, int | None]:
    """Scheme, host and port (None for the scheme's default), as browsers compare origins."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port


class ServerSampler:
    """Polls `urls` every `interval` seconds between `start()` and `stop()` (within `open`/`close`).

    `headers` (the API key) go only to URLs with `trusted`'s origin: another host named by
    --metrics-url must not learn the target's key."""

    def __init__(
        self, urls: list[str], interval: float, headers: dict[str, str], trusted: str
    ) -> None:
        self.urls = urls
        self.interval = interval
        self.headers = headers
        self.trusted = origin(trusted)
        self._report = ServerReport()
        self._first_preemptions: float | None = None
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
        self._first_preemptions = None
        await self.sample()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> ServerReport:
        await self._cancel()
        await self.sample()
        return self._report

    async def _cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
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
        self.take(merged)

    def take(self, values: dict[str, float]) -> None:
        report = self._report
        report.samples += 1
        for field, series in _PEAKS.items():
            if series in values:
                current = getattr(report, field)
                value = values[series]
                setattr(report, field, value if current is None else max(current, value))
        if _PREEMPTIONS in values:
            if self._first_preemptions is None:
                self._first_preemptions = values[_PREEMPTIONS]
            report.preemptions = max(0.0, values[_PREEMPTIONS] - self._first_preemptions)
