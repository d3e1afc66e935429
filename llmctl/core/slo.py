"""The latency target (SLO) every part of llmctl means by that word, and its one text syntax.

An SLO names up to three latencies, in seconds: time to first token (`ttft`), inter-token latency
(`itl`) and end-to-end latency (`e2e`). Judging one request (bench's goodput), its ITL is its TPOT,
the mean gap between its tokens, as `vllm bench serve --goodput tpot:` does; judging a load (tune,
alerts, the adaptive limit), each target applies to the p95 of that latency.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from llmctl.core.errors import UsageError

LATENCIES = ("ttft", "itl", "e2e")
_ALIASES = {"ttft": "ttft", "itl": "itl", "tpot": "itl", "e2e": "e2e", "e2el": "e2e"}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|m)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


class SLO(BaseModel):
    """Latency targets in seconds; None means not constrained."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    ttft_s: float | None = Field(default=None, gt=0, description="Time to first token.")
    itl_s: float | None = Field(default=None, gt=0, description="Inter-token latency.")
    e2e_s: float | None = Field(default=None, gt=0, description="End-to-end latency.")

    @property
    def empty(self) -> bool:
        return self.ttft_s is None and self.itl_s is None and self.e2e_s is None

    def target(self, latency: str) -> float | None:
        """The target for `ttft`, `itl` or `e2e`, in seconds."""
        value: float | None = getattr(self, f"{latency}_s")
        return value

    def text(self) -> str:
        """The SLO in its own syntax, e.g. `ttft=2s,itl=100ms` (`none` when empty)."""
        parts = [
            f"{name}={format_duration(value)}"
            for name in LATENCIES
            if (value := self.target(name)) is not None
        ]
        return ",".join(parts) or "none"


def parse_duration_s(text: str) -> float:
    """'2s' -> 2.0, '100ms' -> 0.1, '1m' -> 60.0, a bare number is seconds."""
    match = _DURATION.match(text)
    if match is None:
        raise UsageError(f"not a duration: {text!r} (use e.g. 2s, 100ms)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def format_duration(seconds: float) -> str:
    """0.1 -> '100ms', 2.0 -> '2s', 1.5 -> '1.5s'."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def parse_slo(text: str) -> SLO:
    """`ttft=2s,itl=100ms,e2e=30s` (any subset; `tpot` means `itl`) into an SLO."""
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        name = _ALIASES.get(key.strip().lower())
        if not sep or name is None:
            raise UsageError(f"bad SLO item {part!r}: use ttft=.., itl=.., e2e=.. (e.g. ttft=2s)")
        seconds = parse_duration_s(value)
        if seconds <= 0:
            raise UsageError(f"SLO {key.strip()} must be positive")
        values[f"{name}_s"] = seconds
    return SLO(**values)
