"""What `up` does to a running stack, decided from the services' real configurations (command
lines, rendered files) on both runtimes: a table of changes and the services each restarts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from llmctl.stack import reconcile
from llmctl.stack.docker import DockerRuntime
from llmctl.stack.local import LocalRuntime
from llmctl.stack.settings import load_stack, parse_set
from llmctl.stack.spec import StackSpec

PROMETHEUS = shutil.which("prometheus") is not None


def _spec(runtime: str, *sets: str) -> StackSpec:
    # The docker runtime with everything local-sim switches off for the local one.
    base = ["observability.grafana=true"] if runtime == "docker" else []
    flags = [parse_set(f"runtime='{runtime}'"), *map(parse_set, [*base, *sets])]
    return load_stack(preset="local-sim", environ={}, flags=flags).spec


def _plan(
    tmp_path: Path, runtime: str, sets: tuple[str, ...], running: set[str] | None = None, **kw: Any
) -> reconcile.ReconcilePlan:
    old, new = _spec(runtime), _spec(runtime, *sets)

    def configs(spec: StackSpec) -> dict[str, str]:
        if runtime == "local":
            return LocalRuntime(spec, tmp_path, environ={"PATH": "/usr/bin:/bin"}).configs()
        return DockerRuntime(spec, tmp_path).configs()

    before = configs(old)
    after = configs(reconcile.with_limits_of(new, old))
    return reconcile.plan(
        reconcile.differences(old, new),
        before,
        after,
        set(before) if running is None else running,
        **kw,
    )


# (runtime, --set values, services restarted, limits changed live)
CASES = [
    (
        "local",
        ("gateway.max_active=9", "gateway.queue_max=3"),
        [],
        {"max_active": 9, "queue_max": 3},
    ),
    ("local", ("gateway.limit_mode='adaptive'",), [], {"limit_mode": "adaptive"}),
    ("local", ("engine.sim.time_scale=3.0",), ["engine"], {}),
    ("local", ("gateway.request_timeout_s=5.0",), ["gateway"], {}),
    # The gateway restarts anyway: it starts with the new limit, none is set live.
    ("local", ("gateway.request_timeout_s=5.0", "gateway.max_active=9"), ["gateway"], {}),
    ("local", ("gateway.access_log=false",), ["gateway"], {}),
    ("docker", ("gateway.max_active=9",), [], {"max_active": 9}),
    ("docker", ("engine.sim.seed=7",), ["engine"], {}),
    ("docker", ("alerts.gpu_temp_c=70.0",), ["prometheus"], {}),
    ("docker", ("observability.grafana_image='grafana/grafana:12.2.1'",), ["grafana"], {}),
    ("docker", ("gateway.image='llmctl:other'",), ["engine", "gateway"], {}),
]
if PROMETHEUS:
    CASES += [
        ("local", ("alerts.slo_p95_e2e_s=9.0",), ["prometheus"], {}),
        # Prometheus scrapes the gateway where it moved.
        ("local", ("ports.gateway=18999",), ["gateway", "prometheus"], {}),
    ]


@pytest.mark.parametrize(("runtime", "sets", "restart", "live"), CASES)
def test_only_what_changed_restarts(
    tmp_path: Path, runtime: str, sets: tuple[str, ...], restart: list[str], live: dict[str, Any]
) -> None:
    plan = _plan(tmp_path, runtime, sets)
    assert plan.restart == restart
    assert plan.live == live
    assert plan.stop == []
    assert {c.key for c in plan.changes} >= {s.split("=")[0] for s in sets}


def test_nothing_changed_is_nothing_to_do(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "local", ())
    assert plan.changes == []
    assert plan.nothing


def test_a_service_that_is_not_running_starts_and_force_restarts_all(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "local", (), running={"engine"})
    assert plan.restart == [s for s in ("gateway", "prometheus") if s == "gateway" or PROMETHEUS]
    assert plan.why["gateway"] == "was not running"
    forced = _plan(tmp_path, "local", ("gateway.max_active=2",), force=True)
    assert forced.restart == ["engine", "gateway", *(["prometheus"] if PROMETHEUS else [])]
    assert forced.live == {}  # the gateway restarts with the new limit


def test_a_service_switched_off_stops(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "docker", ("observability.grafana=false",))
    assert plan.stop == ["grafana"]
    assert plan.restart == []


def test_every_change_is_listed_old_and_new() -> None:
    old = _spec("local")
    new = _spec("local", "gateway.max_active=9", "engine.sim.seed=3")
    changes = {c.key: (c.old, c.new, c.live) for c in reconcile.differences(old, new)}
    assert changes == {"gateway.max_active": (4, 9, True), "engine.sim.seed": (0, 3, False)}
