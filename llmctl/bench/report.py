"""The schema-versioned bench result: field names follow `vllm bench serve` where the concept is the same."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmctl.bench.config import BenchConfig
from llmctl.bench.strategies import Strategy
from llmctl.core.reports import parse_report, read_report

SCHEMA_VERSION = 2
# v2: the SLO in the recorded config is core.slo.SLO (seconds) instead of milliseconds; a level's
# observed peak in flight is `max_concurrent_requests` (vLLM's name; v1 called it max_concurrency,
# which vLLM uses for the configured cap); std_*_ms, max_output_tokens_per_s, the target's limits,
# label and metadata, server-side time averages, sampling gaps and series over time, and mix
# levels (`--mix`: a `mix` strategy and the level's numbers per stream in `streams`) are new.

_NUMBER = r"(?:-?\d[\d.eE+-]*|null)"
_NUMBER_LIST = re.compile(rf"\[\s*(?:{_NUMBER}\s*,\s*)*{_NUMBER}\s*\]")

TokenSource = Literal["usage", "chunks", "mixed", "none"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TargetLimits(_Model):
    """The admission limits the target's gateway published in its /metrics gauges.

    None where the target did not say: a bare engine has none of them, and the queue mode is no
    gauge (only the admin API, which needs the admin key, tells it)."""

    max_active: int | None = None
    queue_mode: Literal["queue", "reject"] | None = None
    queue_max: int | None = None
    queue_timeout_s: float | None = None


class ServerSeries(_Model):
    """The gauges sampled during a level, over time: a point per sample, at most
    `BenchConfig.series_points` of them (a longer level is downsampled, see bench.series).

    Each list has a value per time in `t_s`: the highest reading since the previous point (the
    reading itself where there was no downsampling), null where no endpoint carried the gauge
    then. A gauge that no sampled page carried is null as a whole."""

    start_s: float  # when the level began (its first sample), in seconds since the run started
    t_s: list[float]  # each point's time, in seconds since the level began
    num_requests_running: list[float | None] | None = None  # the engine's
    num_requests_waiting: list[float | None] | None = None
    kv_cache_usage_perc: list[float | None] | None = None  # 1.0 means the whole KV cache
    gateway_queue_depth: list[float | None] | None = None  # the llmctl gateway's
    gateway_active_requests: list[float | None] | None = None

    @model_validator(mode="after")
    def _one_value_per_time(self) -> ServerSeries:
        for name in SERIES_NAMES:
            values = getattr(self, name)
            if values is not None and len(values) != len(self.t_s):
                raise ValueError(f"{name} has {len(values)} values for {len(self.t_s)} times")
        return self


SERIES_NAMES: tuple[str, ...] = (
    "num_requests_running",
    "num_requests_waiting",
    "kv_cache_usage_perc",
    "gateway_queue_depth",
    "gateway_active_requests",
)


class ServerReport(_Model):
    """Server-side numbers read from the /metrics endpoints while the level ran (warm-up included).

    Peaks are of gauges sampled every `max_sample_gap_s` or less, so a spike shorter than that can
    be missed; `preemptions` and the `mean_*` numbers come from counters and histogram sums read
    before and after the level, so no request is missed however short the level. `series` holds
    the sampled gauges over time."""

    samples: int = 0
    sources: list[str] = Field(default_factory=list)
    span_s: float | None = None  # from the first sample (before the load) to the last (after)
    max_sample_gap_s: float | None = None  # the longest time between two samples
    peak_kv_cache_usage_perc: float | None = None  # 1.0 means the whole KV cache
    preemptions: float | None = None  # increase of vllm:num_preemptions during the level
    peak_num_requests_running: float | None = None
    peak_num_requests_waiting: float | None = None
    # Time averages over the span by Little's law: the engine's prefill + decode (running) and
    # queue (waiting) time histogram sums, increase over the span, divided by the span.
    mean_num_requests_running: float | None = None
    mean_num_requests_waiting: float | None = None
    peak_gateway_queue_depth: float | None = None
    peak_gateway_active_requests: float | None = None
    series: ServerSeries | None = None  # the gauges above over time; None before schema 2 had it
    errors: list[str] = Field(default_factory=list)


class LevelNumbers(_Model):
    """Every number measured of a set of requests: a level, or one stream of a mix. Latencies in
    ms; None where there was no sample."""

    duration: float  # seconds of the measurement window (warm-up excluded)
    completed: int
    failed: int
    failures: dict[str, int]
    error_samples: dict[str, str] = Field(default_factory=dict)
    total_input_tokens: int
    total_output_tokens: int
    token_source: TokenSource
    request_throughput: float
    request_goodput: float | None = None
    output_throughput: float
    total_token_throughput: float
    max_output_tokens_per_s: float | None = None  # the busiest whole second of the window
    max_concurrent_requests: int  # the most requests in flight at once, as this client saw it

    mean_ttft_ms: float | None = None
    std_ttft_ms: float | None = None
    median_ttft_ms: float | None = None
    p90_ttft_ms: float | None = None
    p95_ttft_ms: float | None = None
    p99_ttft_ms: float | None = None
    max_ttft_ms: float | None = None

    mean_tpot_ms: float | None = None
    std_tpot_ms: float | None = None
    median_tpot_ms: float | None = None
    p90_tpot_ms: float | None = None
    p95_tpot_ms: float | None = None
    p99_tpot_ms: float | None = None
    max_tpot_ms: float | None = None

    mean_itl_ms: float | None = None
    std_itl_ms: float | None = None
    median_itl_ms: float | None = None
    p90_itl_ms: float | None = None
    p95_itl_ms: float | None = None
    p99_itl_ms: float | None = None
    max_itl_ms: float | None = None

    mean_e2el_ms: float | None = None
    std_e2el_ms: float | None = None
    median_e2el_ms: float | None = None
    p90_e2el_ms: float | None = None
    p95_e2el_ms: float | None = None
    p99_e2el_ms: float | None = None
    max_e2el_ms: float | None = None

    # X-Queue-Wait-Ms as reported by the llmctl gateway; None when the target does not send it.
    mean_queue_wait_ms: float | None = None
    p95_queue_wait_ms: float | None = None
    p99_queue_wait_ms: float | None = None
    max_queue_wait_ms: float | None = None

    # TTFT and E2E counted from admission (each request's X-Queue-Wait-Ms taken off): the service a
    # request got once the gateway let it through. None when the target reports no queue wait.
    mean_admitted_ttft_ms: float | None = None
    median_admitted_ttft_ms: float | None = None
    p95_admitted_ttft_ms: float | None = None
    p99_admitted_ttft_ms: float | None = None
    mean_admitted_e2el_ms: float | None = None
    median_admitted_e2el_ms: float | None = None
    p95_admitted_e2el_ms: float | None = None
    p99_admitted_e2el_ms: float | None = None

    # How late this client sent requests against plan: when it is high, the client is the limit.
    mean_sched_lag_ms: float | None = None
    p99_sched_lag_ms: float | None = None
    max_sched_lag_ms: float | None = None


class StreamReport(LevelNumbers):
    """One stream of a mix level, measured on its own (same window as the level)."""

    name: str

    @property
    def label(self) -> str:
        return self.name


class LevelReport(LevelNumbers):
    """One level (one strategy) of a run: its numbers over every request it sent, and for a mix
    level the same numbers per stream."""

    strategy: Strategy
    server: ServerReport | None = None
    streams: list[StreamReport] = Field(default_factory=list)  # a mix level's, in its order

    @property
    def label(self) -> str:
        return self.strategy.label


class BenchReport(_Model):
    """A whole run: its configuration (without secrets) and one report per level."""

    schema_version: Literal[2] = 2  # SCHEMA_VERSION; bump both on an incompatible change
    tool: Literal["llmctl-bench"] = "llmctl-bench"
    llmctl_version: str
    started_at: datetime
    target: str
    model: str
    label: str | None = None  # --label: a name for this run (compare shows it)
    metadata: dict[str, str] = Field(default_factory=dict)  # --metadata KEY=VALUE, as vLLM's
    limits: TargetLimits | None = None  # read from the target's /metrics as the first level began
    config: BenchConfig
    levels: list[LevelReport]

    def to_json(self) -> str:
        """Indented, but a list of numbers (a series) on one line: a point costs ~6 bytes, not ~20."""
        return _NUMBER_LIST.sub(
            lambda match: re.sub(r"\s+", "", match.group()), self.model_dump_json(indent=2)
        )

    @classmethod
    def from_json(cls, text: str) -> BenchReport:
        """A report of this or an earlier schema version (earlier ones are upgraded)."""
        return parse_report(text, cls, upgrade)


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A report dict of an earlier schema version, brought to SCHEMA_VERSION."""
    if data.get("tool") != "llmctl-bench" or data.get("schema_version") not in (1, 2):
        return data
    # Also for 2: files written before v2 was released kept v1's name for the peak in flight.
    levels = data.get("levels")
    if isinstance(levels, list):
        data = {**data, "levels": [_renamed(level) for level in levels]}
    if data.get("schema_version") == 1:
        data = {**data, "schema_version": 2}
        config = data.get("config")
        if isinstance(config, dict) and isinstance(config.get("slo"), dict):
            slo = config["slo"]
            config["slo"] = {
                key.removesuffix("_ms") + "_s": value / 1000
                if isinstance(value, int | float)
                else value
                for key, value in slo.items()
            }
    return data


def _renamed(level: Any) -> Any:
    if isinstance(level, dict) and "max_concurrency" in level:
        level = dict(level)
        level.setdefault("max_concurrent_requests", level.pop("max_concurrency"))
    return level


def load_report(path: Path) -> BenchReport:
    """Read a report written by `--json` (any schema version this llmctl knows)."""
    return read_report(path, BenchReport, upgrade, what="llmctl bench report")
