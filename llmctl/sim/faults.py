"""Seeded fault injection: startup delay, HTTP 500s, mid-stream drops and stalls."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from llmctl.core.errors import ConfigError


class Fault(Enum):
    """What happens to one request."""

    NONE = "none"
    ERROR = "error"  # HTTP 500 before the first byte
    DROP = "drop"  # connection closed after some tokens
    STALL = "stall"  # nothing at all until the client gives up


@dataclass(frozen=True)
class FaultSpec:
    """Fault settings; rates are probabilities per request, checked in the order error, stall, drop."""

    startup_delay_s: float = 0.0
    error_rate: float = 0.0
    drop_rate: float = 0.0
    stall_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.startup_delay_s < 0:
            raise ConfigError(f"startup-delay must be >= 0 seconds, got {self.startup_delay_s}")
        for name in ("error_rate", "drop_rate", "stall_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name.replace('_', '-')} must be between 0 and 1, got {value}")


@dataclass(frozen=True)
class FaultDecision:
    fault: Fault
    drop_after: int = 0  # tokens sent before a DROP closes the connection


class FaultInjector:
    """Draws one decision per request from a seeded generator (same seed, same arrival order, same
    faults)."""

    def __init__(self, spec: FaultSpec, seed: int) -> None:
        self.spec = spec
        self._rng = random.Random(seed ^ 0x5EED_FA17)

    def decide(self, output_tokens: int) -> FaultDecision:
        # Always draw all numbers so one rate does not shift the sequence another sees.
        e, s, d = self._rng.random(), self._rng.random(), self._rng.random()
        drop_after = self._rng.randint(1, max(1, output_tokens - 1))
        if e < self.spec.error_rate:
            return FaultDecision(Fault.ERROR)
        if s < self.spec.stall_rate:
            return FaultDecision(Fault.STALL)
        if d < self.spec.drop_rate:
            return FaultDecision(Fault.DROP, drop_after)
        return FaultDecision(Fault.NONE)
