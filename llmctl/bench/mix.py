"""The mix file of `llmctl bench --mix`: several streams that run at once in one level.

A mix file (TOML) names the level and lists its streams:

    name = "noisy-neighbour"        # the level's label is `mix NAME` (default: the file's stem)

    [[streams]]
    name = "chat"                   # a row of the per-stream tables
    api_key_env = "CHAT_KEY"        # this stream's API key (default: the run's key)
    class = "interactive"           # sent as X-Llmctl-Class (a request may lower its class)
    rate = 2                        # open loop, requests a second: with arrival, burstiness and
    arrival = "poisson"             #   max_concurrency as the --rate flags have them
    output_len = 64                 # prompt settings left out are the run's flags

    [[streams]]
    name = "nightly"
    api_key_env = "BATCH_KEY"
    concurrency = 64                # closed loop: requests kept in flight
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmctl.bench.strategies import (
    HEADER_VALUE,
    STREAM_NAME,
    Arrival,
    ConcurrentStrategy,
    Load,
    MixStrategy,
    RateStrategy,
    StreamSpec,
)
from llmctl.core.errors import UsageError
from llmctl.core.validation import explain


class StreamEntry(BaseModel):
    """One `[[streams]]` table as a user writes it: the load's keys flat, beside the rest."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=STREAM_NAME)
    api_key_env: str | None = Field(default=None, min_length=1)
    class_name: str | None = Field(default=None, alias="class", pattern=HEADER_VALUE)
    concurrency: int | None = Field(default=None, gt=0)
    rate: float | None = Field(default=None, gt=0)
    arrival: Arrival | None = None
    burstiness: float | None = Field(default=None, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)
    input_len: int | None = Field(default=None, gt=0)
    input_spread: float | None = Field(default=None, ge=0.0, lt=1.0)
    output_len: int | None = Field(default=None, gt=0)
    output_spread: float | None = Field(default=None, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _one_load(self) -> StreamEntry:
        if (self.concurrency is None) == (self.rate is None):
            raise ValueError(f"stream {self.name}: give exactly one of concurrency or rate")
        open_loop = (self.arrival, self.burstiness, self.max_concurrency)
        if self.concurrency is not None and any(v is not None for v in open_loop):
            raise ValueError(
                f"stream {self.name}: arrival, burstiness and max_concurrency go with rate"
            )
        if self.burstiness not in (None, 1.0) and self.arrival != "gamma":
            raise ValueError(f'stream {self.name}: burstiness applies to arrival = "gamma"')
        return self

    def load(self) -> Load:
        if self.concurrency is not None:
            return ConcurrentStrategy(concurrency=self.concurrency)
        assert self.rate is not None  # _one_load
        return RateStrategy(
            rate=self.rate,
            arrival=self.arrival or "poisson",
            burstiness=self.burstiness or 1.0,
            max_concurrency=self.max_concurrency,
        )

    def spec(self) -> StreamSpec:
        prompts = self.model_dump(
            include={"input_len", "input_spread", "output_len", "output_spread"}
        )
        return StreamSpec(
            name=self.name,
            load=self.load(),
            api_key_env=self.api_key_env,
            class_name=self.class_name,
            **prompts,
        )


class MixSpec(BaseModel):
    """A whole mix file."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, pattern=STREAM_NAME)
    streams: list[StreamEntry] = Field(min_length=1)

    def strategy(self, default_name: str) -> MixStrategy:
        return MixStrategy(
            name=self.name or default_name, streams=tuple(s.spec() for s in self.streams)
        )


def _stem_name(path: Path) -> str:
    """The file's stem as a label (characters a label may not hold become '-')."""
    stem = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.stem).strip("-._")
    return (stem or "mix")[:63]


def load_mix(path: Path) -> MixStrategy:
    """Read a mix file; every problem is a usage error naming the file and the key."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--mix {path}: cannot read it: {exc.strerror or exc}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"--mix {path}: not valid TOML: {exc}") from exc
    try:
        spec = MixSpec.model_validate(data)
        return spec.strategy(_stem_name(path))
    except ValidationError as exc:
        raise UsageError(explain(exc, what=f"mix file {path}", model=MixSpec)) from exc
