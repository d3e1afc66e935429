"""What `llmctl top` observed at one moment: a plain model that the view renders and --json prints."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HISTORY_POINTS = 60

Source = Literal["prometheus", "direct"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GpuSnapshot(_Model):
    """One GPU as DCGM reports it; None means the series is missing."""

    gpu: str
    name: str | None = None
    util_pct: float | None = None
    mem_used_mib: float | None = None
    mem_total_mib: float | None = None
    temp_c: float | None = None
    power_w: float | None = None


class History(_Model):
    """Short recent series for the sparklines, oldest first."""

    request_rate: list[float] = Field(default_factory=list)
    latency_p95: list[float] = Field(default_factory=list)
    queue_depth: list[float] = Field(default_factory=list)
    gpu_util_pct: list[float] = Field(default_factory=list)


class StackSnapshot(_Model):
    """The whole stack at one moment. Rates are per second, latencies in seconds, KV use 0..1."""

    version: int = 1
    source: Source
    source_url: str
    note: str = ""
    taken_at: float

    slots_active: float | None = None
    slots_max: float | None = None
    queue_depth: float | None = None
    queue_max: float | None = None
    queue_wait_p95: float | None = None

    ok_per_s: float | None = None
    rejected_429_per_s: float | None = None
    unavailable_503_per_s: float | None = None
    error_per_s: float | None = None

    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    ttft_p50: float | None = None
    ttft_p95: float | None = None

    engine_running: float | None = None
    engine_waiting: float | None = None
    kv_cache_usage: float | None = None
    preemptions_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None

    gpus: list[GpuSnapshot] = Field(default_factory=list)
    history: History = Field(default_factory=History)


def finite(value: float | None) -> float | None:
    """NaN and ±Inf (an idle histogram's quantile, a division by zero) become None: "missing"."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value
