"""What a user asks `bench` to do: the target, the levels, the prompts and the SLO."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmctl.bench.strategies import Strategy
from llmctl.core.slo import SLO


class PromptSpec(BaseModel):
    """Synthetic prompts (input and output length: mean and relative spread, as vLLM's random
    dataset draws them) or a JSONL file of requests.

    `endpoint` picks the API: `chat` (/v1/chat/completions, `messages`) or `completions`
    (/v1/completions, `prompt`); a dataset's lines must be requests for that endpoint.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: Literal["chat", "completions"] = "chat"
    input_len: int = Field(default=256, gt=0)
    input_spread: float = Field(default=0.0, ge=0.0, lt=1.0)
    output_len: int = Field(default=128, gt=0)
    output_spread: float = Field(default=0.0, ge=0.0, lt=1.0)
    ignore_eos: bool = True
    dataset: Path | None = None


class BenchConfig(BaseModel):
    """One bench run: every level runs the same prompts against the same target."""

    model_config = ConfigDict(extra="forbid")

    target: str
    model: str | None = None  # None: the first model the target lists at /v1/models
    api_key: str | None = Field(default=None, repr=False)
    # The keys of mix streams, by the name of the environment variable each stream names in its
    # `api_key_env` (the CLI reads them); never written out. A stream that names none sends
    # `api_key`.
    api_keys_by_env: dict[str, str] = Field(default_factory=dict, repr=False, exclude=True)
    levels: list[Strategy] = Field(min_length=1)
    duration_s: float | None = Field(default=None, gt=0)
    requests: int | None = Field(default=None, gt=0)
    warmup_s: float = Field(default=0.0, ge=0)
    prompts: PromptSpec = PromptSpec()
    slo: SLO = SLO()
    request_timeout_s: float = Field(default=600.0, gt=0)
    # After a 429 or 503 a closed-loop worker pauses this long before its next request, so a full
    # queue is not hammered in a tight loop (which measures the client, not the service).
    reject_backoff_s: float = Field(default=0.1, ge=0)
    # Extra Prometheus text endpoints to sample besides the target's own /metrics (e.g. the engine
    # behind a gateway).
    metrics_urls: list[str] = Field(default_factory=list)
    # The longest time between two samples of those endpoints. Early in a level they are sampled
    # faster (from 0.1 s), so a level of a few seconds still gets ~20 samples (see bench.sampler).
    sample_interval_s: float = Field(default=1.0, gt=0)
    # The most points a level keeps of each sampled gauge over time (`server.series`); a longer
    # level is downsampled, each point the highest reading since the previous one.
    series_points: int = Field(default=300, ge=2)
    seed: int = 0

    @model_validator(mode="after")
    def _one_stop_rule(self) -> BenchConfig:
        if self.duration_s is None and self.requests is None:
            raise ValueError("give a duration or a request count per level")
        if self.duration_s is not None and self.requests is not None:
            raise ValueError("give a duration or a request count per level, not both")
        return self
