"""The decisions behind up, down, status and logs: which spec a command acts on, when a stack is
rendered, and when the spec it runs with is recorded.

- `up` on a stack that is already running keeps the settings it runs with (and says which differ);
  otherwise it renders the requested spec and starts it.
- The spec is recorded (`.llmctl/<stack>/stack.json`) once `up` started something: after a
  success, and after a failure that left services behind (containers kept for a look), so `down`
  finds them. A runtime that never started (no Docker engine) records nothing.
- `down`, `status` and `logs` act on the recorded spec (its ports, its runtime), else the current
  one (`runtime.running_spec` decides when a recorded spec for another runtime is set aside).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llmctl.stack.render import render_stack
from llmctl.stack.runtime import (
    Progress,
    ServiceStatus,
    UpResult,
    make_runtime,
    observe,
    running_spec,
)
from llmctl.stack.settings import LoadedStack, save_spec, saved_spec, stack_dir
from llmctl.stack.spec import StackSpec


@dataclass
class UpOutcome:
    """What `up` did: the spec the stack runs with, the runtime's result, notes for the user."""

    spec: StackSpec
    result: UpResult
    notes: list[str] = field(default_factory=list)


def up(
    spec: StackSpec,
    *,
    progress: Progress | None = None,
    timeout: float | None = None,
    cwd: Path | None = None,
) -> UpOutcome:
    """Bring `spec` up (see the module docstring for what is decided here)."""
    directory = stack_dir(spec, cwd)
    notes: list[str] = []
    previous = saved_spec(directory)
    before = observe(previous, directory) if previous is not None else None
    if previous is not None and any(s.state == "running" for s in before or []):
        if previous != spec:
            notes.append(
                "the stack runs with its earlier settings; "
                "`llmctl down` then `llmctl up` to apply the new ones"
            )
        spec = previous
    else:
        render_stack(spec, directory)
    runtime = make_runtime(spec, directory)
    try:
        result = runtime.up(progress=progress, timeout=timeout)
    except BaseException:
        left = observe(spec, directory)
        if left is not None and any(s.state not in ("stopped", "skipped") for s in left):
            save_spec(spec, directory)
        raise
    save_spec(spec, directory)
    return UpOutcome(spec, result, notes + result.notes)


def acted_on(loaded: LoadedStack, cwd: Path | None = None) -> tuple[StackSpec, list[str]]:
    """The spec `down`, `status` and `logs` act on, and notes for the user."""
    spec, note = running_spec(loaded.spec, stack_dir(loaded.spec, cwd))
    return spec, [note] if note else []


def down(spec: StackSpec, *, volumes: bool = False, cwd: Path | None = None) -> list[str]:
    return make_runtime(spec, stack_dir(spec, cwd)).down(volumes=volumes)


def status(spec: StackSpec, cwd: Path | None = None) -> Sequence[ServiceStatus]:
    return make_runtime(spec, stack_dir(spec, cwd)).status()


def logs(
    spec: StackSpec, service: str | None, *, follow: bool = False, cwd: Path | None = None
) -> Iterator[str]:
    return make_runtime(spec, stack_dir(spec, cwd)).logs(service, follow=follow)
