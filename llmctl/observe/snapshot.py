"""What `llmctl top` observed at one moment: a plain model that the view renders and --json prints."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HISTORY_POINTS = 60
# How often history is sampled (Prometheus range step; direct mode: one point per refresh).
HISTORY_STEP_S = 2.0

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


class EngineSnapshot(_Model):
    """One engine behind the gateway, as the gateway sees it."""

    engine: str
    active: float | None = None
    limit: float | None = None
    up: bool | None = None


class ClassSnapshot(_Model):
    """One priority class (with a tenants file): requests waiting and holding slots."""

    name: str
    queued: float | None = None
    active: float | None = None


class History(_Model):
    """Recent series for the sparklines, oldest first (a longer span than the live numbers)."""

    request_rate: list[float] = Field(default_factory=list)
    e2e_p95_s: list[float] = Field(default_factory=list)
    queue_depth: list[float] = Field(default_factory=list)
    gpu_util_pct: list[float] = Field(default_factory=list)


class StackSnapshot(_Model):
    """The whole stack at one moment. Rates are per second and latencies in seconds, over the last
    `window_s` seconds; KV use 0..1. TTFT and E2E count from arrival at the gateway (what users
    feel); `admitted_ttft` from the grant of an engine slot (the engine's part)."""

    version: int = 2
    source: Source
    source_url: str
    # What answered: ["prometheus"], or the endpoints read directly ("gateway", "engine", "gpu");
    # empty when nothing did (`top --once` then exits non-zero).
    reached: list[str] = Field(default_factory=list)
    note: str = ""
    taken_at: float
    window_s: float
    history_span_s: float = 0.0

    slots_active: float | None = None
    slots_max: float | None = None
    queue_depth: float | None = None
    queue_max: float | None = None
    queue_wait_p95_s: float | None = None

    ok_per_s: float | None = None
    rejected_429_per_s: float | None = None
    unavailable_503_per_s: float | None = None
    error_per_s: float | None = None

    ttft_p50_s: float | None = None
    ttft_p95_s: float | None = None
    e2e_p50_s: float | None = None
    e2e_p95_s: float | None = None
    e2e_p99_s: float | None = None
    admitted_ttft_p95_s: float | None = None
    tpot_p95_s: float | None = None

    engine_running: float | None = None
    engine_waiting: float | None = None
    kv_cache_usage: float | None = None
    preemptions_per_s: float | None = None
    prompt_tokens_per_s: float | None = None
    generation_tokens_per_s: float | None = None

    # The gateway's response cache (max_bytes 0: the cache is off): answers served from it (hits,
    # and requests coalesced onto an identical one in flight) and sent to an engine, per second.
    cache_hit_per_s: float | None = None
    cache_miss_per_s: float | None = None
    cache_bytes: float | None = None
    cache_max_bytes: float | None = None
    # The limit: 1 while adaptive; the last adaptive change (direction up/down, reason label); the
    # p95s adaptive mode steers on (requests admitted under the current limit) and their targets.
    limit_adaptive: float | None = None
    limit_direction: str | None = None
    limit_reason: str | None = None
    adaptive_ttft_p95_s: float | None = None
    adaptive_itl_p95_s: float | None = None
    adaptive_slo_ttft_s: float | None = None
    adaptive_slo_itl_s: float | None = None

    gpus: list[GpuSnapshot] = Field(default_factory=list)
    engines: list[EngineSnapshot] = Field(default_factory=list)
    classes: list[ClassSnapshot] = Field(default_factory=list)
    history: History = Field(default_factory=History)

    @property
    def request_per_s(self) -> float | None:
        """Every answered request per second (ok, 429, 503 and errors)."""
        known = [
            v
            for v in (
                self.ok_per_s,
                self.rejected_429_per_s,
                self.unavailable_503_per_s,
                self.error_per_s,
            )
            if v is not None
        ]
        return math.fsum(known) if known else None


def finite(value: float | None) -> float | None:
    """NaN and ±Inf (an idle histogram's quantile, a division by zero) become None: "missing"."""
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value
