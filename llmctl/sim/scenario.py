"""Scenarios: the simulated GPU changing under load, at given times or through a live admin call.

What can change (`Conditions`), each as a factor on the engine's own profile:

- `slowdown`: every step takes this many times as long, as if another process took GPU time
  (2.0: decode and prefill run at half speed);
- `kv_fraction`: the share of the KV cache's blocks the engine may use (0.5: half the cache, as
  if another model or a larger context per sequence took the rest); a cache that shrinks under
  running requests preempts them, as vLLM does when it runs out of blocks;
- `prompt_scale`, `output_scale`: new requests' prompt and output lengths are multiplied (as if
  the prompt/output mix changed; requests already running keep theirs).

A scenario is a list of events, each at a time in the engine's virtual seconds since it started
(`--time-scale` applies: at `--time-scale 10` an event at 30 s comes 3 wall seconds in), setting
any of those fields; fields an event does not name keep their value. From a file
(`llmctl sim serve --scenario FILE`, TOML or JSON) or live (`PUT /sim/conditions`).
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmctl.core.errors import ConfigError
from llmctl.core.validation import explain

MAX_FACTOR = 100.0  # far beyond any plausible change; keeps a typo (2000) from freezing the sim


class Conditions(BaseModel):
    """The engine's conditions now, as factors on its profile (1.0: as the profile says)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    slowdown: float = Field(1.0, gt=0, le=MAX_FACTOR, description="Step time multiplier.")
    kv_fraction: float = Field(1.0, gt=0, le=1, description="Share of KV blocks available.")
    prompt_scale: float = Field(1.0, gt=0, le=MAX_FACTOR, description="New prompts' length x.")
    output_scale: float = Field(1.0, gt=0, le=MAX_FACTOR, description="New outputs' length x.")

    def changed(self, changes: Mapping[str, Any], *, what: str = "conditions") -> Conditions:
        """These conditions with `changes` applied (ConfigError naming the field if invalid)."""
        try:
            return Conditions.model_validate({**self.model_dump(), **changes}, strict=True)
        except ValidationError as exc:
            raise ConfigError(explain(exc, what=what, model=Conditions)) from exc


class Event(BaseModel):
    """At `at_s` virtual seconds, set the named conditions."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    at_s: float = Field(ge=0, description="Virtual seconds since the engine started.")
    slowdown: float | None = Field(None, gt=0, le=MAX_FACTOR)
    kv_fraction: float | None = Field(None, gt=0, le=1)
    prompt_scale: float | None = Field(None, gt=0, le=MAX_FACTOR)
    output_scale: float | None = Field(None, gt=0, le=MAX_FACTOR)

    def changes(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump(exclude={"at_s"}).items() if v is not None}


class Scenario(BaseModel):
    """Events in time order (a file may list them in any order)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    events: tuple[Event, ...] = ()


def load_scenario(path: Path) -> Scenario:
    """A scenario file: TOML (`[[events]]` tables) or JSON (`{"events": [...]}`)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read scenario {path}: {exc}") from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise ConfigError(f"scenario {path} is not valid {kind}: {exc}") from exc
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(explain(exc, what=f"scenario {path}", model=Scenario)) from exc


class ConditionsClock:
    """The conditions an engine runs under: a scenario on its virtual clock, plus live changes
    (a live change holds until the scenario's next event overrides the fields it names)."""

    def __init__(self, scenario: Scenario | None = None) -> None:
        self.scenario = scenario or Scenario()
        self._events = sorted(self.scenario.events, key=lambda e: e.at_s)
        self._next = 0
        self.current = Conditions()

    def advance(self, virtual_s: float) -> Conditions:
        """Apply every event due by `virtual_s`; the conditions now."""
        while self._next < len(self._events) and self._events[self._next].at_s <= virtual_s:
            self.current = self.current.changed(self._events[self._next].changes())
            self._next += 1
        return self.current

    def set(self, changes: Mapping[str, Any]) -> Conditions:
        """A live change (PUT /sim/conditions); ConfigError if invalid, nothing changes then."""
        self.current = self.current.changed(changes)
        return self.current

    @property
    def pending(self) -> list[Event]:
        return self._events[self._next :]

    @property
    def has_pending(self) -> bool:
        return self._next < len(self._events)
