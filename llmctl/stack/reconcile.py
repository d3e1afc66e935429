"""What `llmctl up` does to a stack that is already running, decided as docker compose decides it:
compare the settings the stack runs with to the requested ones, and touch only what differs.

- Every setting that differs is listed (`KEY: OLD -> NEW`).
- The gateway's admission limits (`gateway.max_active`, the queue, the adaptive limit: the fields
  of core.config.AdmissionLimits) change live, through the gateway's admin API: no restart, no
  request dropped. If the gateway restarts anyway (its other settings changed), it simply starts
  with the new limits.
- A service restarts when its configuration changed: what its runtime would start it with (its
  command line, environment, rendered config files), compared with the requested limits put back
  to the running ones, so that a change of limits alone restarts nothing. A service that is not
  running is started; one the new settings no longer run is stopped.
- `--force-recreate` restarts every service.

This module only decides (a pure function of the two specs and the services' configurations);
`lifecycle.up` carries the plan out.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field
from typing import Any

from llmctl.core.config import AdmissionLimits
from llmctl.stack.settings import flatten
from llmctl.stack.spec import StackSpec

LIVE_FIELDS = tuple(AdmissionLimits.model_fields)


@dataclass(frozen=True)
class SettingChange:
    """One setting that differs between the running stack and the requested one."""

    key: str
    old: Any
    new: Any

    @property
    def live(self) -> bool:
        """Whether the gateway can take this change without a restart."""
        section, _, name = self.key.partition(".")
        return section == "gateway" and name in LIVE_FIELDS


@dataclass
class ReconcilePlan:
    """What `up` does to a running stack."""

    changes: list[SettingChange]
    live: dict[str, Any] = field(default_factory=dict)  # limit field -> value, via the admin API
    restart: list[str] = field(default_factory=list)  # services to (re)start, in start order
    stop: list[str] = field(default_factory=list)  # services the new settings no longer run
    why: dict[str, str] = field(default_factory=dict)  # service -> why it restarts

    @property
    def nothing(self) -> bool:
        return not (self.live or self.restart or self.stop)


def differences(old: StackSpec, new: StackSpec) -> list[SettingChange]:
    """Every leaf setting whose value differs, in the model's order."""
    before = dict(flatten(old.model_dump(mode="json")))
    after = dict(flatten(new.model_dump(mode="json")))
    keys = list(after) + [k for k in before if k not in after]
    return [
        SettingChange(key, before.get(key), after.get(key))
        for key in keys
        if before.get(key) != after.get(key)
    ]


def with_limits_of(spec: StackSpec, source: StackSpec) -> StackSpec:
    """`spec` with the gateway's admission limits of `source`: what the gateway of `spec` would be
    if its limits were changed live rather than by a restart."""
    data = spec.model_dump()
    data["gateway"].update({name: getattr(source.gateway, name) for name in LIVE_FIELDS})
    return StackSpec.model_validate(data)


def plan(
    changes: list[SettingChange],
    before: Mapping[str, str],
    after: Mapping[str, str],
    running: Set[str],
    *,
    force: bool = False,
) -> ReconcilePlan:
    """The plan for a running stack.

    `before`: service -> configuration of the running stack; `after`: the same for the requested
    settings with the running limits (`with_limits_of`); `running`: the services running now.
    Services restart in `after`'s order (the order the runtime starts them in)."""
    why: dict[str, str] = {}
    for name, config in after.items():
        if name not in running:
            why[name] = "was not running"
        elif before.get(name) != config:
            why[name] = "its configuration changed"
        elif force:
            why[name] = "--force-recreate"
    stop = [name for name in before if name not in after and name in running]
    live: dict[str, Any] = {}
    if "gateway" not in why:
        live = {c.key.partition(".")[2]: c.new for c in changes if c.live}
    return ReconcilePlan(changes, live, list(why), stop, why)
