"""The bench Python API: `run_bench(config, progress) -> BenchReport` (what the CLI and `tune` call)."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import zlib
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from llmctl import __version__
from llmctl.bench.client import StreamingClient, Target
from llmctl.bench.config import BenchConfig
from llmctl.bench.metrics import Window, level_report, stream_report
from llmctl.bench.progress import BenchProgress, LevelProgress, NullProgress, Phase
from llmctl.bench.prompts import PromptSource
from llmctl.bench.record import RequestRecord
from llmctl.bench.report import BenchReport, LevelReport
from llmctl.bench.sampler import ServerSampler
from llmctl.bench.strategies import (
    ConcurrentStrategy,
    MixStrategy,
    RateStrategy,
    Strategy,
    StreamSpec,
    planned_offsets,
)
from llmctl.core import aio, http
from llmctl.core.errors import TargetError, UsageError

_TICK_S = 0.25
# The header a mix stream's class goes in, as the llmctl gateway reads it (its
# llmctl.gateway.tenants.CLASS_HEADER; a test checks that the two agree).
CLASS_HEADER = "X-Llmctl-Class"


def run_bench(config: BenchConfig, progress: BenchProgress | None = None) -> BenchReport:
    """Run every level of `config` in a fresh event loop (uvloop when installed)."""
    _raise_fd_limit()
    return aio.run(arun_bench(config, progress))


async def arun_bench(config: BenchConfig, progress: BenchProgress | None = None) -> BenchReport:
    """Run every level of `config` on the running event loop."""
    hooks: BenchProgress = progress or NullProgress()
    for strategy in config.levels:  # a missing key fails now, not after the levels before it
        if isinstance(strategy, MixStrategy):
            for spec in strategy.streams:
                _stream_key(config, spec)
    target = Target(config.target)
    headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
    # A mix of tenants' keys may have no run key: any of them may list the models.
    lister = config.api_key or next(iter(config.api_keys_by_env.values()), None)
    listing = {"Authorization": f"Bearer {lister}"} if lister else {}
    model = config.model or await discover_model(target, listing)
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
            streams = _level_streams(config, strategy, index, client, prompts, model)
            try:
                run = _LevelRun(config, strategy, streams, sampler, hooks, index)
                level = await run.run()
            finally:
                for stream in streams:
                    if stream.client is not client:
                        await stream.client.aclose()
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
        config=config.model_copy(update={"api_key": None, "api_keys_by_env": {}, "model": model}),
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
    output_tokens: int = 0
    max_in_flight_measured: int = 0
    records: list[RequestRecord] = field(default_factory=list)


@dataclass
class _Stream:
    """One source of a level's requests: a plain level has one, a mix level one per stream."""

    name: str
    load: ConcurrentStrategy | RateStrategy
    client: StreamingClient
    prompts: PromptSource
    seed: int  # of its arrival times
    counts: _Counts = field(default_factory=_Counts)


def _level_streams(
    config: BenchConfig,
    strategy: Strategy,
    index: int,
    client: StreamingClient,
    prompts: PromptSource,
    model: str,
) -> list[_Stream]:
    """A plain level's one stream (the run's client and prompts), or a mix's, each with a client
    of its own (its key and class header).

    A mix stream's arrival times depend on the seed and its name only, so the same stream in two
    mix levels (alone, then beside a neighbour) sends at the same moments; its prompts differ from
    level to level, so a prefix cache cannot serve one level from another."""
    if not isinstance(strategy, MixStrategy):
        return [_Stream(strategy.label, strategy, client, prompts, config.seed + index)]
    streams = []
    for spec in strategy.streams:
        headers = {CLASS_HEADER: spec.class_name} if spec.class_name else None
        own = StreamingClient(
            client.target,
            api_key=_stream_key(config, spec),
            timeout_s=config.request_timeout_s,
            headers=headers,
        )
        overrides = spec.model_dump(
            include={"input_len", "input_spread", "output_len", "output_spread"},
            exclude_none=True,
        )
        seed = config.seed + zlib.crc32(spec.name.encode())
        prompt_seed = seed + 1_000_003 * (index + 1)
        stream_prompts = PromptSource(
            config.prompts.model_copy(update=overrides), model, prompt_seed
        )
        streams.append(_Stream(spec.name, spec.load, own, stream_prompts, seed))
    return streams


def _stream_key(config: BenchConfig, spec: StreamSpec) -> str | None:
    if spec.api_key_env is None:
        return config.api_key
    key = config.api_keys_by_env.get(spec.api_key_env)
    if key is None:
        raise UsageError(
            f"stream {spec.name} names api_key_env {spec.api_key_env}, whose key the bench "
            "config does not hold (api_keys_by_env)"
        )
    return key


class _LevelRun:
    """One level: send by each stream's load, warm up, measure, drain, and summarize."""

    def __init__(
        self,
        config: BenchConfig,
        strategy: Strategy,
        streams: list[_Stream],
        sampler: ServerSampler,
        hooks: BenchProgress,
        index: int,
    ) -> None:
        self.config = config
        self.strategy = strategy
        self.streams = streams
        self.sampler = sampler
        self.hooks = hooks
        self.index = index
        self.start = self.t0 = 0.0
        self.t1: float | None = None
        self.in_flight = 0  # all streams together
        self.max_in_flight_measured = 0
        self.measured_sent = 0  # all streams together: `requests` is per level
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
        everything = [r for stream in self.streams for r in stream.counts.records]
        measured = [r for r in everything if r.planned >= self.t0]
        end = self.t1 if self.t1 is not None else max((r.end for r in measured), default=self.t0)
        window = Window(self.t0, end)
        slo = self.config.slo
        streams = []
        if isinstance(self.strategy, MixStrategy):
            for stream in self.streams:
                records = stream.counts.records
                streams.append(
                    stream_report(
                        stream.name,
                        [r for r in records if r.planned >= self.t0],
                        records,
                        window,
                        slo=slo,
                        max_concurrent_requests=stream.counts.max_in_flight_measured,
                    )
                )
        return level_report(
            self.strategy,
            measured,
            everything,
            window,
            slo=slo,
            max_concurrent_requests=self.max_in_flight_measured,
            server=server,
            streams=streams,
        )

    def _keep_sending(self, now: float) -> bool:
        if self.t1 is not None:
            return now < self.t1
        return self.measured_sent < (self.config.requests or 0)

    async def _load(self) -> None:
        loads = []
        for stream in self.streams:
            if isinstance(stream.load, ConcurrentStrategy):
                loads.append(self._closed_loop(stream, stream.load.concurrency))
            else:
                loads.append(self._open_loop(stream, stream.load))
        await asyncio.gather(*loads)

    def _spawn(self, request: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(request)
        self.requests.add(task)
        task.add_done_callback(self.requests.discard)
        return task

    async def _one(self, stream: _Stream, record: RequestRecord) -> None:
        counts = stream.counts
        prompts = stream.prompts
        body, record.prompt_estimate = prompts.next_body()
        counts.sent += 1
        counts.in_flight += 1
        self.in_flight += 1
        if record.planned >= self.t0:
            counts.max_in_flight_measured = max(counts.max_in_flight_measured, counts.in_flight)
            self.max_in_flight_measured = max(self.max_in_flight_measured, self.in_flight)
        try:
            request = stream.client.build(prompts.path, body)
            await stream.client.send(request, record, prompts.token_key)
        finally:
            counts.in_flight -= 1
            self.in_flight -= 1
            counts.records.append(record)
            if record.ok:
                counts.completed += 1
                counts.output_tokens += record.output_tokens
            else:
                counts.failed += 1

    async def _closed_loop(self, stream: _Stream, concurrency: int) -> None:
        async def worker() -> None:
            planned = time.perf_counter()
            backoff = self.config.reject_backoff_s
            while self._keep_sending(planned):
                if planned >= self.t0:
                    self.measured_sent += 1
                record = RequestRecord(planned=planned)
                await self._one(stream, record)
                if backoff and record.failure in ("http_429", "http_503"):
                    await asyncio.sleep(backoff)
                planned = time.perf_counter()

        await asyncio.gather(*(self._spawn(worker()) for _ in range(concurrency)))

    async def _open_loop(self, stream: _Stream, strategy: RateStrategy) -> None:
        limit = asyncio.Semaphore(strategy.max_concurrency) if strategy.max_concurrency else None

        async def limited(record: RequestRecord) -> None:
            if limit is None:
                await self._one(stream, record)
                return
            async with limit:
                await self._one(stream, record)

        offsets = planned_offsets(strategy.rate, strategy.arrival, strategy.burstiness, stream.seed)
        for offset in offsets:
            planned = self.start + offset
            if not self._keep_sending(planned):
                break
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if planned >= self.t0:
                self.measured_sent += 1  # counted at plan time so N requests means N
            self._spawn(limited(RequestRecord(planned=planned)))
        while self.requests:
            await asyncio.gather(*list(self.requests))

    def _report(self) -> None:
        planned = None
        if self.t1 is not None:
            planned = self.t1 - self.start
        all_counts = [stream.counts for stream in self.streams]
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
                sent=sum(c.sent for c in all_counts),
                completed=sum(c.completed for c in all_counts),
                failed=sum(c.failed for c in all_counts),
                in_flight=self.in_flight,
                output_tokens=sum(c.output_tokens for c in all_counts),
            )
        )


def _raise_fd_limit() -> None:
    """Thousands of streams need thousands of sockets; lift the soft limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
