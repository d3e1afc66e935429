"""The report's own model of a run: what `load` reads out of any supported bench or tune JSON.

It is deliberately not the producers' pydantic models: those describe the schema being written
now, while a report must still read files written by older llmctl versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Latency metrics and statistics, in the order tables and figures show them.
LATENCY_METRICS: tuple[str, ...] = (
    "ttft",
    "itl",
    "tpot",
    "e2e",
    "queue_wait",
    "admitted_ttft",
    "admitted_e2e",
    "sched_lag",
)
LATENCY_STATS: tuple[str, ...] = ("mean", "std", "p50", "p90", "p95", "p99", "max")
METRIC_TEXT = {
    "ttft": "TTFT",
    "itl": "ITL",
    "tpot": "TPOT",
    "e2e": "E2E latency",
    "queue_wait": "queue wait",
    "admitted_ttft": "TTFT from admission",
    "admitted_e2e": "E2E from admission",
    "sched_lag": "send lag",
}

# Server-side samples a bench level may carry: (peak field, text, unit).
SERVER_PEAKS: tuple[tuple[str, str, str], ...] = (
    ("running", "engine running", "requests"),
    ("waiting", "engine waiting", "requests"),
    ("gateway_queue", "gateway queue", "requests"),
    ("gateway_active", "gateway active", "requests"),
    ("kv_cache", "KV cache used", "%"),
    ("preemptions", "preemptions", "count"),
)
# Other server-side numbers of a level, for the tables: (name, text, unit).
SERVER_OTHERS: tuple[tuple[str, str, str], ...] = (
    ("running_mean", "engine running, mean", "requests"),
    ("waiting_mean", "engine waiting, mean", "requests"),
    ("samples", "samples", "count"),
    ("max_sample_gap", "longest gap between samples", "s"),
)


@dataclass(frozen=True)
class RunInfo:
    """Who wrote the run, when, with which settings: the header of its section."""

    name: str  # the run's label, else its file name
    path: str
    tool: Literal["bench", "tune"]
    schema_version: int
    llmctl_version: str | None
    started_at: str | None
    settings: dict[str, str]  # flat "what: value" pairs, shown and compared across runs
    metadata: dict[str, str] = field(default_factory=dict)  # bench --metadata: machine, notes
    unrecorded: tuple[str, ...] = ()  # what this schema version does not keep, said in the header
    label: str | None = None  # bench --label

    def compared(self) -> dict[str, str]:
        """What comparisons hold side by side: the settings, then each metadata key."""
        return {**self.settings, **{f"metadata {k}": v for k, v in self.metadata.items()}}


@dataclass(frozen=True)
class TimeSeries:
    """A server-side gauge over one level: (seconds since the run started, value) points."""

    key: str  # a SERVER_PEAKS name: running, waiting, gateway_queue, gateway_active, kv_cache
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class LevelStats:
    """One bench level. Latencies in ms, None where the run has no sample."""

    label: str
    duration_s: float
    completed: int
    failed: int
    failures: dict[str, int]
    error_samples: dict[str, str]
    request_throughput: float
    output_throughput: float
    total_token_throughput: float | None
    request_goodput: float | None
    latency: dict[str, dict[str, float | None]]  # metric -> stat -> ms
    server: dict[str, float | None]  # SERVER_PEAKS / SERVER_OTHERS name -> value (kv_cache in %)
    max_output_tokens_per_s: float | None = None  # the busiest whole second
    max_concurrent_requests: int | None = None  # the most in flight at once, as the client saw
    total_input_tokens: int | None = None
    total_output_tokens: int | None = None
    token_source: str | None = None  # usage, chunks, mixed
    series: tuple[TimeSeries, ...] = ()  # the gauges over the level, where the file has them

    def ms(self, metric: str, stat: str) -> float | None:
        return self.latency.get(metric, {}).get(stat)


@dataclass(frozen=True)
class BenchRun:
    info: RunInfo
    slo: dict[str, float]  # "ttft" / "itl" / "e2e" -> ms, the goodput targets
    levels: tuple[LevelStats, ...]
    series_note: str = "not recorded in this run"  # why a server series has no points


@dataclass(frozen=True)
class Trial:
    """One tune trial; p95 latencies of admitted requests in ms."""

    order: int  # 1 = the first trial run
    max_active: int
    concurrency: int
    completed: int
    failed: int
    output_throughput: float
    request_throughput: float
    p95: dict[str, float | None]  # ttft, itl, e2e, queue_wait
    preemptions_per_s: float | None
    peak_kv_cache: float | None  # %
    peak_running: float | None  # the engine's running requests, at most
    violations: tuple[str, ...]  # e.g. "p95 TTFT 446 ms > 200 ms"
    broken: tuple[str, ...]  # the metrics those name: ttft, itl, e2e, preemptions, errors

    @property
    def passed(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class TuneRun:
    info: RunInfo
    slo: dict[str, float]  # "ttft" / "itl" / "e2e" -> ms (p95 of admitted requests)
    trials: tuple[Trial, ...]
    recommended: int | None
    reason: str
    applied: bool
    original_max_active: int | None


Run = BenchRun | TuneRun
