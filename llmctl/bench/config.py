"""What a user asks `bench` to do: the target, the levels, the prompts and the SLO."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmctl.bench.strategies import Strategy
from llmctl.core.errors import UsageError


class SLOSpec(BaseModel):
    """Per-request latency targets for goodput, in milliseconds; None means not constrained.

    `itl_ms` is compared with the request's TPOT (its mean inter-token latency), as `vllm bench
    serve --goodput tpot:` does: one slow token should not fail a whole request.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    ttft_ms: float | None = Field(default=None, gt=0)
    itl_ms: float | None = Field(default=None, gt=0)
    e2e_ms: float | None = Field(default=None, gt=0)

    @property
    def empty(self) -> bool:
        return self.ttft_ms is None and self.itl_ms is None and self.e2e_ms is None


class PromptSpec(BaseModel):
    """Synthetic prompts (input length mean and relative spread) or a JSONL file of requests.

    `endpoint` picks the API: `chat` (/v1/chat/completions, `messages`) or `completions`
    (/v1/completions, `prompt`); a dataset's lines must be requests for that endpoint.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: Literal["chat", "completions"] = "chat"
    input_len: int = Field(default=256, gt=0)
    input_spread: float = Field(default=0.0, ge=0.0, lt=1.0)
    output_len: int = Field(default=128, gt=0)
    ignore_eos: bool = True
    dataset: Path | None = None


class BenchConfig(BaseModel):
    """One bench run: every level runs the same prompts against the same target."""

    model_config = ConfigDict(extra="forbid")

    target: str
    model: str | None = None  # None: the first model the target lists at /v1/models
    api_key: str | None = Field(default=None, repr=False)
    levels: list[Strategy] = Field(min_length=1)
    duration_s: float | None = Field(default=None, gt=0)
    requests: int | None = Field(default=None, gt=0)
    warmup_s: float = Field(default=0.0, ge=0)
    prompts: PromptSpec = PromptSpec()
    slo: SLOSpec = SLOSpec()
    request_timeout_s: float = Field(default=600.0, gt=0)
    # After a 429 or 503 a closed-loop worker pauses this long before its next request, so a full
    # queue is not hammered in a tight loop (which measures the client, not the service).
    reject_backoff_s: float = Field(default=0.1, ge=0)
    # Extra Prometheus text endpoints to sample besides the target's own /metrics (e.g. the engine
    # behind a gateway).
    metrics_urls: list[str] = Field(default_factory=list)
    sample_interval_s: float = Field(default=1.0, gt=0)
    seed: int = 0

    @model_validator(mode="after")
    def _one_stop_rule(self) -> BenchConfig:
        if self.duration_s is None and self.requests is None:
            raise ValueError("give a duration or a request count per level")
        if self.duration_s is not None and self.requests is not None:
            raise ValueError("give a duration or a request count per level, not both")
        return self


_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*$")
_UNIT_MS = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, None: 1000.0}


def parse_duration_ms(text: str) -> float:
    """'2s' -> 2000, '100ms' -> 100, '1.5' (seconds) -> 1500."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"not a duration: {text!r} (use e.g. 2s, 100ms)")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]


def parse_slo(text: str) -> SLOSpec:
    """Parse 'ttft=2s,itl=100ms,e2e=30s' (any subset) into an SLOSpec."""
    values: dict[str, float] = {}
    aliases = {
        "ttft": "ttft_ms",
        "itl": "itl_ms",
        "tpot": "itl_ms",
        "e2e": "e2e_ms",
        "e2el": "e2e_ms",
    }
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        field = aliases.get(key.strip().lower())
        if not sep or field is None:
            raise UsageError(f"bad SLO item {part!r}: use ttft=.., itl=.., e2e=.. (e.g. ttft=2s)")
        ms = parse_duration_ms(value)
        if ms <= 0:
            raise UsageError(f"SLO {key} must be positive")
        values[field] = ms
    return SLOSpec(**values)
