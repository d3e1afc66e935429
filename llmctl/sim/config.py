"""Settings of one simulator process (what `llmctl sim serve` flags build)."""

from __future__ import annotations

from dataclasses import dataclass, field

from llmctl.core.errors import ConfigError
from llmctl.sim.faults import FaultSpec
from llmctl.sim.profiles import TINY, EngineProfile
from llmctl.sim.scenario import Scenario


@dataclass(frozen=True)
class SimConfig:
    """Where to listen, what to serve, how fast, which faults to inject, how the GPU changes,
    whether the KV cache keeps prefixes."""

    host: str = "127.0.0.1"
    port: int = 8000
    model: str = "llmctl-sim"
    profile: EngineProfile = TINY
    time_scale: float = 1.0
    seed: int = 0
    faults: FaultSpec = field(default_factory=FaultSpec)
    scenario: Scenario | None = None
    prefix_caching: bool = True  # vLLM v1's default (--enable-prefix-caching)

    def __post_init__(self) -> None:
        if not self.time_scale > 0:
            raise ConfigError(f"time-scale must be > 0, got {self.time_scale}")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be between 0 and 65535, got {self.port}")
        if not self.model:
            raise ConfigError("model name must not be empty")
