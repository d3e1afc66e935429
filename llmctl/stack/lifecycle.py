"""The decisions behind up, restart, down, status and logs: which spec a command acts on, when a
stack is rendered, and when the spec it runs with is recorded.

- `up` on a stack that is not running renders the requested spec and starts it. On a running
  stack it reconciles (`llmctl.stack.reconcile`): it lists the settings that differ, changes the
  gateway's limits live through its admin API and restarts only the services whose configuration
  changed (every one with `force`).
- The spec is recorded (`.llmctl/<stack>/stack.json`) once `up` started something: after a
  success, and after a failure that left services behind (containers kept for a look), so `down`
  finds them. A runtime that never started (no Docker engine) records nothing.
- `down`, `status`, `logs` and `restart` act on the recorded spec (its ports, its runtime), else
  the current one (`runtime.running_spec` decides when a recorded spec for another runtime is set
  aside); when the settings do not load (a broken stack file), the recorded stack, with the
  error as a note (`recorded.fallback`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmctl.core.admin import GatewayAdmin
from llmctl.core.errors import (
    ConfigError,
    LlmctlError,
    RuntimeBackendError,
    StackFileError,
    UsageError,
)
from llmctl.stack import ports, reconcile, recorded
from llmctl.stack.credentials import admin_key
from llmctl.stack.render import render_stack
from llmctl.stack.runtime import (
    LogOptions,
    Progress,
    ServiceStatus,
    UpResult,
    make_runtime,
    observe,
    running_spec,
)
from llmctl.stack.settings import LoadedStack, save_spec, saved_spec, stack_dir
from llmctl.stack.spec import StackSpec, duration_s


@dataclass
class UpOutcome:
    """What `up` did: the spec the stack runs with, the runtime's result, notes for the user;
    for a running stack, what was reconciled."""

    spec: StackSpec
    result: UpResult
    notes: list[str] = field(default_factory=list)
    plan: reconcile.ReconcilePlan | None = None  # None: the stack was not running
    already_live: list[str] = field(default_factory=list)  # limits the gateway already had
    stopped: list[str] = field(default_factory=list)


def up(
    spec: StackSpec,
    *,
    progress: Progress | None = None,
    timeout: float | None = None,
    force: bool = False,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> UpOutcome:
    """Bring `spec` up (see the module docstring for what is decided here)."""
    directory = stack_dir(spec, cwd)
    previous = saved_spec(directory)
    before = observe(previous, directory) if previous is not None else None
    running = {s.name for s in before or [] if s.state == "running"}
    if previous is None or not running:
        render_stack(spec, directory)
        return _started(spec, directory, progress, timeout)
    if previous.runtime != spec.runtime:
        raise ConfigError(
            f"stack {spec.name} runs with the {previous.runtime} runtime: `llmctl down`, then "
            f"`llmctl up` to move it to the {spec.runtime} runtime"
        )
    environ = os.environ if environ is None else environ
    old = make_runtime(previous, directory).configs()
    new = make_runtime(reconcile.with_limits_of(spec, previous), directory).configs()
    plan = reconcile.plan(reconcile.differences(previous, spec), old, new, running, force=force)
    # A port the new settings move to must be free before anything stops.
    moved = [p for p in ports.wanted(spec) if p not in ports.wanted(previous)]
    busy = ports.conflicts(moved)
    if busy:
        raise RuntimeBackendError("\n".join(str(c) for c in busy))
    render_stack(spec, directory)
    runtime = make_runtime(spec, directory)
    outcome = UpOutcome(spec, UpResult(True, []), plan=plan)
    if plan.live:
        try:
            outcome.already_live = _set_live(spec, directory, plan.live, environ)
        except LlmctlError as exc:
            outcome.notes.append(
                f"the gateway's limits could not change live ({exc}); restarted it"
            )
            plan.restart.append("gateway")
            plan.why["gateway"] = "its limits could not change live"
            plan.live = {}
    try:
        if plan.stop:
            outcome.stopped = runtime.stop(plan.stop)
        if plan.restart:
            outcome.result = runtime.restart(plan.restart, progress=progress, timeout=timeout)
        else:
            outcome.result = UpResult(True, runtime.status())
    finally:
        save_spec(spec, directory)  # what runs now is (at least partly) the new settings
    return outcome


def _started(
    spec: StackSpec, directory: Path, progress: Progress | None, timeout: float | None
) -> UpOutcome:
    runtime = make_runtime(spec, directory)
    try:
        result = runtime.up(progress=progress, timeout=timeout)
    except BaseException:
        left = observe(spec, directory)
        if left is not None and any(s.state not in ("stopped", "skipped") for s in left):
            save_spec(spec, directory)
        raise
    save_spec(spec, directory)
    return UpOutcome(spec, result, list(result.notes))


def _set_live(
    spec: StackSpec, directory: Path, changes: dict[str, Any], environ: Mapping[str, str]
) -> list[str]:
    """Put `changes` into the running gateway's limits; the fields it already had."""
    key = admin_key(spec, directory, environ)
    if key is None:
        raise ConfigError("the gateway has no admin key")
    with GatewayAdmin(spec.endpoints()["gateway"], key, source="up") as admin:
        current = admin.get().model_dump()
        wanted = {name: value for name, value in changes.items() if current[name] != value}
        if wanted:
            admin.put(**wanted)
    return [name for name in changes if name not in wanted]


def restart(
    spec: StackSpec,
    services: Sequence[str],
    *,
    progress: Progress | None = None,
    timeout: float | None = None,
    cwd: Path | None = None,
) -> UpResult:
    """Restart `services` (all the stack runs when empty) as they are recorded."""
    directory = stack_dir(spec, cwd)
    runtime = make_runtime(spec, directory)
    names = list(services) or list(runtime.configs())
    render_stack(spec, directory)
    return runtime.restart(names, progress=progress, timeout=timeout)


def acted_on(
    load: Callable[[], LoadedStack], cwd: Path | None = None
) -> tuple[StackSpec, list[str]]:
    """The spec `down`, `status`, `logs`, `restart` and `chat` act on, and notes for the user:
    the running stack's, also when the settings `load` reads are broken."""
    try:
        loaded = load()
    except StackFileError as exc:
        return recorded.fallback(exc, cwd or Path.cwd())
    spec, note = running_spec(loaded.spec, stack_dir(loaded.spec, cwd))
    return spec, [note] if note else []


def down(spec: StackSpec, *, volumes: bool = False, cwd: Path | None = None) -> list[str]:
    return make_runtime(spec, stack_dir(spec, cwd)).down(volumes=volumes)


def status(spec: StackSpec, cwd: Path | None = None) -> Sequence[ServiceStatus]:
    return make_runtime(spec, stack_dir(spec, cwd)).status()


def log_options(tail: int | None, since: str | None, timestamps: bool) -> LogOptions:
    """`logs --tail N --since WHEN --timestamps`: WHEN is a duration back from now (`10m`, `90s`,
    `2h`) or a moment (`2025-01-31T12:00:00`, UTC unless it says otherwise)."""
    if tail is not None and tail < 0:
        raise UsageError(f"--tail: must be a number of lines, 0 or more (got {tail})")
    start: float | None = None
    if since is not None:
        try:
            start = time.time() - duration_s(since.strip())
        except ValueError:
            try:
                moment = datetime.fromisoformat(since.strip().replace("Z", "+00:00"))
            except ValueError:
                raise UsageError(
                    "--since: must be a duration back from now (10m, 90s, 2h) or a time "
                    f"(2025-01-31T12:00:00) (got {since!r})"
                ) from None
            start = (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    return LogOptions(tail=tail, since=start, timestamps=timestamps)


def logs(
    spec: StackSpec,
    service: str | None,
    *,
    follow: bool = False,
    options: LogOptions | None = None,
    cwd: Path | None = None,
) -> Iterator[str]:
    return make_runtime(spec, stack_dir(spec, cwd)).logs(service, follow=follow, options=options)
