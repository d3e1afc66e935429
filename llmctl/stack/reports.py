"""What `status`, `config` and `doctor` observed, as versioned models: the CLI prints them as
tables (or plain lines, Markdown), or as JSON with `--format json` (one object, `schema` first),
for scripts.

Each report says which stack it is about and how it ran, so a saved report stands on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmctl.stack.runtime import Health, ServiceStatus, State
from llmctl.stack.settings import LoadedStack
from llmctl.stack.spec import RuntimeKind, StackSpec

Level = Literal["ok", "warn", "fail"]


class _Report(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceReport(_Report):
    """One service as observed now."""

    name: str
    state: State
    health: Health
    ready: bool = Field(description="Healthy, or skipped on purpose.")
    url: str | None
    detail: str


class StatusReport(_Report):
    """`llmctl status`: every service of the stack, and whether all are ready."""

    schema_: Literal["llmctl.status/1"] = Field("llmctl.status/1", alias="schema")
    stack: str
    runtime: RuntimeKind
    ready: bool = Field(description="Every service healthy (or skipped): status exits 0.")
    services: list[ServiceReport]
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def of(
        cls, spec: StackSpec, services: Sequence[ServiceStatus], notes: Sequence[str] = ()
    ) -> StatusReport:
        shown = [
            ServiceReport(
                name=s.name,
                state=s.state,
                health=s.health,
                ready=s.ready,
                url=s.url,
                detail=s.detail,
            )
            for s in services
        ]
        return cls(
            stack=spec.name,
            runtime=spec.runtime,
            ready=all(s.ready for s in services),
            services=shown,
            notes=list(notes),
        )


class Setting(_Report):
    """One effective setting and where its value came from."""

    key: str
    value: Any
    source: str = Field(description='"default", "file F", "preset P", "env VAR" or "flag --x".')


class ConfigReport(_Report):
    """`llmctl config`: every effective setting of the stack with its source."""

    schema_: Literal["llmctl.config/1"] = Field("llmctl.config/1", alias="schema")
    stack: str
    origin: str = Field(description="Where the stack's settings were read from.")
    settings: list[Setting]
    notes: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, loaded: LoadedStack) -> ConfigReport:
        settings = [Setting(key=k, value=v, source=s) for k, v, s in loaded.effective_values()]
        return cls(
            stack=loaded.spec.name, origin=loaded.origin, settings=settings, notes=loaded.notes
        )


class Check(_Report):
    """One finding of `doctor`: `fail` means the stack cannot start; `warn` that something it
    uses will be missing or may not fit."""

    name: str
    level: Level
    detail: str


class DoctorReport(_Report):
    """`llmctl doctor`: every check for the stack, in one run."""

    schema_: Literal["llmctl.doctor/1"] = Field("llmctl.doctor/1", alias="schema")
    stack: str
    runtime: RuntimeKind
    ok: bool = Field(description="No check failed: the stack can start here (doctor exits 0).")
    checks: list[Check]
    seconds: float = Field(description="How long the checks took.")

    @classmethod
    def of(cls, spec: StackSpec, checks: Sequence[Check], seconds: float) -> DoctorReport:
        return cls(
            stack=spec.name,
            runtime=spec.runtime,
            ok=not any(c.level == "fail" for c in checks),
            checks=list(checks),
            seconds=round(seconds, 3),
        )


def to_json(report: _Report) -> str:
    return report.model_dump_json(by_alias=True, indent=2)
