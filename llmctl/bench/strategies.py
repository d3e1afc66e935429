"""Strategies (how one level's requests are timed) and the arrival-time generators behind them.

A level runs one load (closed or open loop), or a *mix*: several named streams at once, each with
its own load, API key, class header and prompt lengths (a tenant or class of a shared gateway).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Arrival = Literal["poisson", "constant", "gamma"]


class ConcurrentStrategy(BaseModel):
    """Closed loop: `concurrency` workers, each sends its next request when the previous one ends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["concurrent"] = "concurrent"
    concurrency: int = Field(gt=0)

    @property
    def label(self) -> str:
        return f"conc {self.concurrency}"


class RateStrategy(BaseModel):
    """Open loop: requests start at planned times, `rate` per second, whether or not others ended.

    `burstiness` is the gamma shape (as in `vllm bench serve`): 1 is Poisson, below 1 is burstier,
    above 1 is smoother; the coefficient of variation of the gaps is 1/sqrt(burstiness).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["rate"] = "rate"
    rate: float = Field(gt=0)
    arrival: Arrival = "poisson"
    burstiness: float = Field(default=1.0, gt=0)
    max_concurrency: int | None = Field(default=None, gt=0)

    @property
    def label(self) -> str:
        shape = f" b={self.burstiness:g}" if self.arrival == "gamma" else ""
        return f"{self.rate:g}/s {self.arrival}{shape}"


# The load of one stream: a plain level, or one stream of a mix.
Load = Annotated[ConcurrentStrategy | RateStrategy, Field(discriminator="kind")]
STREAM_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
# What an HTTP header value may be here: printable ASCII, no leading or trailing space.
HEADER_VALUE = r"^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$"


class StreamSpec(BaseModel):
    """One stream of a mix: who sends (the key in `api_key_env`, its class), how much, how long.

    Prompt settings left unset are the run's (`--input-len` and the rest)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=STREAM_NAME)
    load: Load
    api_key_env: str | None = None  # the variable's name is recorded, never its value
    class_name: str | None = Field(default=None, alias="class", pattern=HEADER_VALUE)
    input_len: int | None = Field(default=None, gt=0)
    input_spread: float | None = Field(default=None, ge=0.0, lt=1.0)
    output_len: int | None = Field(default=None, gt=0)
    output_spread: float | None = Field(default=None, ge=0.0, lt=1.0)


class MixStrategy(BaseModel):
    """Several streams at once in one level (`llmctl bench --mix FILE`); each is measured on its
    own and all together."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["mix"] = "mix"
    name: str = Field(pattern=STREAM_NAME)
    streams: tuple[StreamSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> MixStrategy:
        names = [s.name for s in self.streams]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"stream names must differ: {', '.join(twice)} appears twice")
        return self

    @property
    def label(self) -> str:
        return f"mix {self.name}"


Strategy = Annotated[ConcurrentStrategy | RateStrategy | MixStrategy, Field(discriminator="kind")]


def arrival_gaps(
    rate: float, arrival: Arrival, burstiness: float = 1.0, seed: int | None = 0
) -> Iterator[float]:
    """Endless gaps (seconds) between planned send times, reproducible for a given seed."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    if arrival == "constant":
        gap = 1.0 / rate
        while True:
            yield gap
    rng = random.Random(seed)
    shape = 1.0 if arrival == "poisson" else burstiness
    # Gamma(shape, scale) has mean shape*scale; pick scale so the mean gap is 1/rate.
    scale = 1.0 / (rate * shape)
    if shape == 1.0:
        while True:
            yield rng.expovariate(rate)
    while True:
        yield rng.gammavariate(shape, scale)


def planned_offsets(
    rate: float, arrival: Arrival, burstiness: float = 1.0, seed: int | None = 0
) -> Iterator[float]:
    """Planned send times relative to the level's start; the first request goes at 0."""
    t = 0.0
    gaps = arrival_gaps(rate, arrival, burstiness, seed)
    while True:
        yield t
        t += next(gaps)
