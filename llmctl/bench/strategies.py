"""Strategies (how one level's requests are timed) and the arrival-time generators behind them."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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


Strategy = Annotated[ConcurrentStrategy | RateStrategy, Field(discriminator="kind")]


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
