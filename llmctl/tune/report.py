"""The versioned tune result: the settings, one row per trial, and the recommendation with its reason."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmctl.core.config import AdmissionLimits
from llmctl.core.reports import parse_report, read_report
from llmctl.core.slo import SLO, parse_slo
from llmctl.tune.search import Choice, TrialOutcome

SCHEMA_VERSION: Final = 2
# v2: settings.slo is core.slo.SLO (seconds); the preemption and error limits sit beside it.

Metric = Literal["ttft", "itl", "e2e", "preemptions", "errors"]
_METRIC_TEXT = {
    "ttft": "p95 TTFT",
    "itl": "p95 ITL",
    "e2e": "p95 E2E",
    "preemptions": "preemptions/s",
    "errors": "error rate",
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Violation(_Model):
    """One way a trial broke the SLO: the measured value against its limit."""

    metric: Metric
    value: float
    limit: float

    @property
    def target_text(self) -> str:
        """E.g. 'p95 TTFT of 2 s'."""
        return f"{_METRIC_TEXT[self.metric]} of {_fmt(self.metric, self.limit)}"

    def __str__(self) -> str:
        name = _METRIC_TEXT[self.metric]
        return f"{name} {_fmt(self.metric, self.value)} > {_fmt(self.metric, self.limit)}"


def _fmt(metric: Metric, value: float) -> str:
    if metric in ("ttft", "itl", "e2e"):
        return format_ms(value)
    if metric == "errors":
        return f"{value * 100:.3g} %"
    return f"{value:.3g}"


def format_ms(ms: float) -> str:
    """2000 -> '2 s', 100 -> '100 ms', 1500 -> '1.5 s'."""
    return f"{ms / 1000:.3g} s" if ms >= 1000 else f"{ms:.3g} ms"


class TrialReport(_Model):
    """One trial: a MAX_ACTIVE, the load that drove it and what came out (warm-up excluded).

    Latencies are of admitted requests: the gateway's queue wait is subtracted per request.
    """

    max_active: int = Field(ge=1)
    concurrency: int = Field(ge=1)
    duration_s: float
    completed: int
    failed: int
    output_throughput: float  # output tokens per second of completed requests
    request_throughput: float
    p95_ttft_ms: float | None = None
    p95_itl_ms: float | None = None
    p95_e2e_ms: float | None = None
    p95_queue_wait_ms: float | None = None
    preemptions: float | None = None  # increase of the engine's counter during the window
    preemptions_per_s: float | None = None
    peak_kv_cache_usage: float | None = None  # 1.0 means the whole KV cache
    peak_running: float | None = None  # the engine's running requests, at most
    violations: list[Violation] = Field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.violations

    def outcome(self) -> TrialOutcome:
        return TrialOutcome(self.max_active, self.output_throughput, self.passed)


class Recommendation(_Model):
    """The value to use (None: nothing met the SLO) and a sentence saying why."""

    max_active: int | None
    basis: Literal["flat", "slo", "top", "none"]
    reason: str
    # The range adaptive mode should move MAX_ACTIVE in for workloads like this one: from half the
    # recommendation (room to fall when prompts grow or the engine slows) to the first value that
    # broke the SLO (or the highest tried).
    adaptive_min: int | None = None
    adaptive_max: int | None = None


class TuneSettings(_Model):
    """What was asked for (no secrets)."""

    gateway: str
    engine_metrics: list[str] = Field(default_factory=list)
    slo: SLO  # p95 targets of admitted requests
    max_preemptions_per_s: float | None = Field(default=None, ge=0)
    max_error_rate: float = Field(default=0.01, ge=0, le=1)
    min_max_active: int = Field(ge=1)
    max_max_active: int = Field(ge=1)
    grid: bool = False
    trial_duration_s: float = Field(gt=0)
    warmup_s: float = Field(ge=0)
    input_len: int = Field(gt=0)
    output_len: int = Field(gt=0)
    apply: bool = False
    # The gateway's limit was adaptive: tune switched it to static for its trials (and back).
    switch_adaptive: bool = False


class TuneReport(_Model):
    """A whole `llmctl tune max-active` run."""

    schema_version: Literal[2] = SCHEMA_VERSION
    tool: Literal["llmctl-tune"] = "llmctl-tune"
    llmctl_version: str
    started_at: datetime
    settings: TuneSettings
    original_limits: AdmissionLimits
    trials: list[TrialReport]
    recommendation: Recommendation
    applied: bool = False
    applied_to: str | None = None  # the stack config file written by --apply, if any
    apply_error: str | None = None  # why --apply could not write it (the limits were restored)

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> TuneReport:
        """A report of this or an earlier schema version (earlier ones are upgraded)."""
        return parse_report(text, cls, upgrade)


def upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """A report dict of an earlier schema version, brought to SCHEMA_VERSION."""
    if data.get("tool") == "llmctl-tune" and data.get("schema_version") == 1:
        data = {**data, "schema_version": 2}
        settings = data.get("settings")
        if isinstance(settings, dict) and isinstance(settings.get("slo"), dict):
            old = settings["slo"]
            for key in ("max_preemptions_per_s", "max_error_rate"):
                if key in old:
                    settings[key] = old[key]
            settings["slo"] = {
                name + "_s": old[name + "_ms"] / 1000
                for name in ("ttft", "itl", "e2e")
                if isinstance(old.get(name + "_ms"), int | float)
            }
    return data


def load_report(path: Path) -> TuneReport:
    """Read a report written by `--json` (any schema version this llmctl knows)."""
    return read_report(path, TuneReport, upgrade, what="llmctl tune report")


def explain(choice: Choice, trials: list[TrialReport], *, min_gain: float) -> Recommendation:
    """Turn the policy's choice into a sentence such as 'throughput flat past 12; 16 breaks p95 TTFT of 2 s'."""
    by_value = {t.max_active: t for t in trials}
    broken = ""
    if choice.first_fail is not None:
        targets = ", ".join(v.target_text for v in by_value[choice.first_fail].violations)
        broken = f"{choice.first_fail} breaks {targets}"
    value = choice.max_active
    if value is None:
        return Recommendation(
            max_active=None, basis="none", reason=f"nothing meets the SLO: {broken or 'no trials'}"
        )
    tried = max(by_value)
    adaptive = {
        "adaptive_min": max(1, value // 2),
        "adaptive_max": max(value, choice.first_fail or tried),
    }
    tput = f"{by_value[value].output_throughput:.4g} tok/s"
    tail = f"; {broken}" if broken else ""
    if choice.basis == "flat":
        reason = (
            f"throughput flat past {value} ({tput}; up to {choice.flat_from} adds under "
            f"{min_gain * 100:g} %){tail}"
        )
    elif choice.basis == "slo":
        reason = f"{value} is the highest value tried that meets the SLO ({tput}){tail}"
    else:
        reason = (
            f"throughput still rising at {value} ({tput}), the highest value tried; raise --max"
        )
    return Recommendation(max_active=value, basis=choice.basis, reason=reason, **adaptive)


def check_slo(
    settings: TuneSettings,
    *,
    p95_ttft_ms: float | None,
    p95_itl_ms: float | None,
    p95_e2e_ms: float | None,
    preemptions_per_s: float | None,
    error_rate: float,
) -> list[Violation]:
    """Every target the measured numbers break; a latency with no sample breaks nothing."""
    slo = settings.slo

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None else seconds * 1000.0

    checks: list[tuple[Metric, float | None, float | None]] = [
        ("ttft", p95_ttft_ms, ms(slo.ttft_s)),
        ("itl", p95_itl_ms, ms(slo.itl_s)),
        ("e2e", p95_e2e_ms, ms(slo.e2e_s)),
        ("preemptions", preemptions_per_s, settings.max_preemptions_per_s),
        ("errors", error_rate, settings.max_error_rate),
    ]
    return [
        Violation(metric=metric, value=value, limit=limit)
        for metric, value, limit in checks
        if value is not None and limit is not None and value > limit
    ]


def tune_slo(text: str | None, default: SLO) -> SLO:
    """`ttft=2s,itl=100ms,e2e=30s` (the one SLO syntax); without text the stack's alert SLOs."""
    return parse_slo(text) if text is not None else default
