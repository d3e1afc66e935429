"""The bench Python API: `run_bench(config, progress) -> BenchReport` (what the CLI and `tune` call)."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from llmctl import __version__
from llmctl.bench.client import StreamingClient, Target
from llmctl.bench.config import BenchConfig
from llmctl.bench.metrics import Window, level_report
from llmctl.bench.progress import BenchProgress, LevelProgress, NullProgress, Phase
from llmctl.bench.prompts import PromptSource
from llmctl.bench.record import RequestRecord
from llmctl.bench.report import BenchReport, LevelReport
from llmctl.bench.sampler import ServerSampler
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy, planned_offsets
from llmctl.core import aio, http
from llmctl.core.errors import TargetError

_TICK_S = 0.25


def run_bench(config: BenchConfig, progress: BenchProgress | None = None) -> BenchReport:
    """Run every level of `config` in a fresh event loop (uvloop when installed)."""
    _raise_fd_limit()
    return aio.run(arun_bench(config, progress))


async def arun_bench(config: BenchConfig, progress: BenchProgress | None = None) -> BenchReport:
    """Run every level of `config` on the running event loop."""
    hooks: BenchProgress = progress or NullProgress()
    target = Target(config.target)
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    model = config.model or await discover_model(target, headers)
    started, epoch = datetime.now(UTC), time.perf_counter()
    client = StreamingClient(target, api_key=config.api_key, timeout_s=config.request_timeout_s)
    prompts = PromptSource(config.prompts, model, config.seed)
    sampler = ServerSampler(
        [target.api_url("/metrics"), *config.metrics_urls],
        config.sample_interval_s,
        headers,
        trusted=config.target,
        points=config.series_points,
        epoch=epoch,
    )
    levels: list[LevelReport] = []
    sampler.open()
    try:
        for index, strategy in enumerate(config.levels):
            hooks.on_start(index, len(config.levels), strategy)
            run = _LevelRun(config, strategy, client, prompts, sampler, hooks, index)
            level = await run.run()
            levels.append(level)
            hooks.on_done(index, level)
    finally:
        # Also on Ctrl-C or a failing hook: a socket left open warns (or wedges a test run) when
        # the loop closes, and the server would go on streaming to nobody.
        await client.aclose()
        await sampler.close()
    return BenchReport(
        llmctl_version=__version__,
        started_at=started,
        target=config.target,
        model=model,
        limits=sampler.limits,
        config=config.model_copy(update={"api_key": None, "model": model}),
        levels=levels,
    )


async def discover_model(target: Target, headers: dict[str, str]) -> str:
    """The first model id the target lists at /v1/models."""
    url = target.api_url("/v1/models")
    try:
        async with http.async_client(headers=headers) as client:
            resp = await client.get(url)
    except httpx.HTTPError as exc:
        raise TargetError(f"cannot reach {url}: {exc or type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise TargetError(f"{url} answered HTTP {resp.status_code}: {resp.text[:200]}")
    try:
        data = resp.json()["data"]
        return str(data[0]["id"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise TargetError(f"{url} lists no model; pass --model") from exc


@dataclass
class _Counts:
    sent: int = 0
    completed: int = 0
    failed: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    output_tokens: int = 0
    measured_sent: int = 0
    records: list[RequestRecord] = field(default_factory=list)


class _LevelRun:
    """One level: send by the strategy, warm up, measure, drain, and summarize."""

    def __init__(
        self,
        config: BenchConfig,
        strategy: ConcurrentStrategy | RateStrategy,
        client: StreamingClient,
        prompts: PromptSource,
        sampler: ServerSampler,
        hooks: BenchProgress,
        index: int,
    ) -> None:
        self.config = config
        self.strategy = strategy
        self.client = client
        self.prompts = prompts
        self.sampler = sampler
        self.hooks = hooks
        self.index = index
        self.counts = _Counts()
        self.start = self.t0 = 0.0
        self.t1: float | None = None
        self.max_in_flight_measured = 0
        self.requests: set[asyncio.Task[None]] = set()

    async def run(self) -> LevelReport:
        # The first sample (and any HTTP set-up) happens before the load so it adds no send lag;
        # peaks therefore cover the warm-up too, which runs at the same level.
        await self.sampler.start()
        self.start = time.perf_counter()
        self.t0 = self.start + self.config.warmup_s
        if self.config.duration_s is not None:
            self.t1 = self.t0 + self.config.duration_s
        load = asyncio.create_task(self._load())
        try:
            # The hooks run here, not in a task of their own, so that whatever one raises (Ctrl-C
            # included) reaches the caller at once instead of ending a ticker nobody awaits.
            while not load.done():
                self._report()
                await asyncio.wait({load}, timeout=_TICK_S)
            load.result()
        finally:
            # On any exit, no request task outlives the level; their connections, cut mid-stream,
            # stay with the client, which closes them.
            tasks = [load, *self.requests]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        server = await self.sampler.stop()
        records = self.counts.records
        measured = [r for r in records if r.planned >= self.t0]
        end = self.t1 if self.t1 is not None else max((r.end for r in measured), default=self.t0)
        return level_report(
            self.strategy,
            measured,
            records,
            Window(self.t0, end),
            slo=self.config.slo,
            max_concurrent_requests=self.max_in_flight_measured,
            server=server,
        )

    def _keep_sending(self, now: float) -> bool:
        if self.t1 is not None:
            return now < self.t1
        return self.counts.measured_sent < (self.config.requests or 0)

    async def _load(self) -> None:
        if isinstance(self.strategy, ConcurrentStrategy):
            await self._closed_loop(self.strategy.concurrency)
        else:
            await self._open_loop(self.strategy)

    def _spawn(self, request: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(request)
        self.requests.add(task)
        task.add_done_callback(self.requests.discard)
        return task

    async def _one(self, record: RequestRecord) -> None:
        counts = self.counts
        body, record.prompt_estimate = self.prompts.next_body()
        counts.sent += 1
        counts.in_flight += 1
        if record.planned >= self.t0 and counts.in_flight > self.max_in_flight_measured:
            self.max_in_flight_measured = counts.in_flight
        try:
            request = self.client.build(self.prompts.path, body)
            await self.client.send(request, record, self.prompts.token_key)
        finally:
            counts.in_flight -= 1
            counts.records.append(record)
            if record.ok:
                counts.completed += 1
                counts.output_tokens += record.output_tokens
            else:
                counts.failed += 1

    async def _closed_loop(self, concurrency: int) -> None:
        async def worker() -> None:
            planned = time.perf_counter()
            backoff = self.config.reject_backoff_s
            while self._keep_sending(planned):
                if planned >= self.t0:
                    self.counts.measured_sent += 1
                record = RequestRecord(planned=planned)
                await self._one(record)
                if backoff and record.failure in ("http_429", "http_503"):
                    await asyncio.sleep(backoff)
                planned = time.perf_counter()

        await asyncio.gather(*(self._spawn(worker()) for _ in range(concurrency)))

    async def _open_loop(self, strategy: RateStrategy) -> None:
        limit = asyncio.Semaphore(strategy.max_concurrency) if strategy.max_concurrency else None

        async def limited(record: RequestRecord) -> None:
            if limit is None:
                await self._one(record)
                return
            async with limit:
                await self._one(record)

        offsets = planned_offsets(
            strategy.rate, strategy.arrival, strategy.burstiness, self.config.seed + self.index
        )
        for offset in offsets:
            planned = self.start + offset
            if not self._keep_sending(planned):
                break
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if planned >= self.t0:
                self.counts.measured_sent += 1  # counted at plan time so N requests means N
            self._spawn(limited(RequestRecord(planned=planned)))
        while self.requests:
            await asyncio.gather(*list(self.requests))

    def _report(self) -> None:
        planned = None
        if self.t1 is not None:
            planned = self.t1 - self.start
        counts = self.counts
        now = time.perf_counter()
        phase: Phase = "warmup" if now < self.t0 else "measure"
        if phase == "measure" and not self._keep_sending(now):
            phase = "drain"
        self.hooks.on_update(
            LevelProgress(
                index=self.index,
                total=len(self.config.levels),
                strategy=self.strategy,
                phase=phase,
                elapsed_s=now - self.start,
                planned_s=planned,
                requests_target=self.config.requests,
                sent=counts.sent,
                completed=counts.completed,
                failed=counts.failed,
                in_flight=counts.in_flight,
                output_tokens=counts.output_tokens,
            )
        )


def _raise_fd_limit() -> None:
    """Thousands of streams need thousands of sockets; lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
