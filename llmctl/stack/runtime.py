"""The Runtime protocol that the local and Docker runtimes implement, and the factory picking one.

Contract for implementations (constructed as `Runtime(spec, directory)`):
- `directory` is `.llmctl/<stack>/`, already rendered by `render.render_stack` before `up`.
- `up` starts what is not running, waits until every service is healthy (or `timeout` passes),
  calling `progress` with the current statuses while it waits; it never prints. When everything
  was already running it returns `UpResult(already_running=True, ...)` and starts nothing.
- `restart` stops the named services (those running) and starts them again, as the spec says
  now, then waits as `up` does; `stop` stops the named ones only.
- `configs` is each service's configuration as comparable text (`reconcile` compares two).
- `down` stops exactly this stack's services; `status` only looks; `logs` yields text lines.
- Failures a user can act on raise `RuntimeBackendError` (or `ConfigError`) with what to do.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol, cast

from llmctl.core.errors import RuntimeBackendError, UsageError
from llmctl.stack.settings import saved_spec
from llmctl.stack.spec import RuntimeKind, StackSpec

State = Literal["running", "starting", "stopped", "exited", "skipped"]
Health = Literal["healthy", "unhealthy", "starting", "none"]


@dataclass(frozen=True)
class ServiceStatus:
    """One service as observed now."""

    name: str
    state: State
    health: Health = "none"
    detail: str = ""  # pid, container id, or why a service was skipped
    url: str | None = None

    @property
    def ready(self) -> bool:
        return self.state == "skipped" or (self.state == "running" and self.health == "healthy")


Progress = Callable[[Sequence[ServiceStatus]], None]


@dataclass(frozen=True)
class LogOptions:
    """Which log lines `logs` shows: the last `tail` (per service), those since `since` (epoch
    seconds), with the time each was logged in front (`timestamps`)."""

    tail: int | None = None
    since: float | None = None
    timestamps: bool = False


@dataclass
class UpResult:
    """What `up` did: whether the stack was already up, the final statuses, notes for the user."""

    already_running: bool
    services: list[ServiceStatus]
    notes: list[str] = field(default_factory=list)


class Runtime(Protocol):
    """Bring a rendered stack up and down, and look at it."""

    spec: StackSpec
    directory: Path

    def up(self, *, progress: Progress | None = None, timeout: float | None = None) -> UpResult: ...

    def restart(
        self,
        services: Sequence[str],
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> UpResult: ...

    def stop(self, services: Sequence[str]) -> list[str]: ...

    def configs(self) -> dict[str, str]: ...

    def down(self, *, volumes: bool = False) -> list[str]:
        """Stop the stack; returns one line per service stopped (or found already stopped)."""
        ...

    def status(self) -> list[ServiceStatus]: ...

    def logs(
        self,
        service: str | None = None,
        *,
        follow: bool = False,
        options: LogOptions | None = None,
    ) -> Iterator[str]: ...


def require_known(stack: str, services: Sequence[str], known: Sequence[str]) -> None:
    """UsageError naming the first of `services` the stack does not have (and those it has)."""
    unknown = [name for name in services if name not in known]
    if unknown:
        raise UsageError(f"no service {unknown[0]!r} in stack {stack}: {', '.join(known)}")


def make_runtime(spec: StackSpec, directory: Path, kind: RuntimeKind | None = None) -> Runtime:
    """The runtime for `spec` (or `kind`). Docker is imported only when asked for, so a machine
    without python-on-whales or Docker still runs local stacks."""
    kind = kind or spec.runtime
    if kind == "local":
        from llmctl.stack.local import LocalRuntime

        return LocalRuntime(spec, directory)
    try:
        module = importlib.import_module("llmctl.stack.docker")
    except ImportError as exc:
        raise RuntimeBackendError(
            f"the docker runtime is unavailable ({exc}); install llmctl with its dependencies "
            "or use `--runtime local`"
        ) from exc
    factory = cast(Callable[[StackSpec, Path], Runtime], module.DockerRuntime)
    return factory(spec, directory)


def observe(spec: StackSpec, directory: Path) -> list[ServiceStatus] | None:
    """`spec`'s services as its runtime sees them now; None when that runtime cannot be reached
    (no Docker engine, say), in which case nothing of the stack can be running there either."""
    try:
        return make_runtime(spec, directory).status()
    except RuntimeBackendError:
        return None


def running_spec(spec: StackSpec, directory: Path) -> tuple[StackSpec, str | None]:
    """The spec `down`/`status`/`logs` act on: the one `up` saved in `directory`, else `spec`;
    and a note for the user when a saved one was set aside.

    A saved spec for another runtime that cannot be reached now (so nothing of the stack can run
    there) yields to `spec`: otherwise one failed `up --runtime docker` would make every later
    command fail with Docker's error. A reachable one is kept even with nothing running: `down
    --volumes` still has its data to remove."""
    saved = saved_spec(directory)
    if saved is None or saved.runtime == spec.runtime:
        return saved or spec, None
    if observe(saved, directory) is None:
        return spec, (
            f"stack {saved.name} was last brought up with the {saved.runtime} runtime, which "
            f"cannot be reached now; using the {spec.runtime} runtime"
        )
    return saved, None
