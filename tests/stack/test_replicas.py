"""Several engines in one stack (`engine.replicas`): names, GPU groups and their checks (tables),
what each runtime runs (the local services, the compose file through `docker compose config`,
the Prometheus config through promtool), what `up` changes when the count changes, and doctor's
GPU count against a fake `nvidia-smi`."""

from __future__ import annotations

import json
import re
import shutil
import socket
from pathlib import Path

import httpx
import pytest
import yaml

from llmctl.core import metrics
from llmctl.core.errors import StackFileError
from llmctl.stack import processes, reconcile, replicas
from llmctl.stack.localservice import local_services, service_configs
from llmctl.stack.render import render_stack
from llmctl.stack.settings import load_stack, parse_set
from llmctl.stack.spec import StackSpec
from tests.stack.test_doctor import GIB_MIB, LLAMA, _checks, _rows, _smi, fake_bin
from tests.stack.test_local_e2e import RUN, _query, _records, llmctl, stack_dir
from tests.stack.test_render import _compose_config, _promtool, needs_compose, needs_promtool
from tests.support import eventually, free_port

__all__ = ["fake_bin", "stack_dir"]  # fixtures, imported for the tests below


def _spec(preset: str, *sets: str) -> StackSpec:
    return load_stack(preset=preset, environ={}, flags=[parse_set(s) for s in sets]).spec


@pytest.mark.parametrize(
    ("count", "names"),
    [(1, ["engine"]), (2, ["engine-0", "engine-1"]), (3, ["engine-0", "engine-1", "engine-2"])],
)
def test_names(count: int, names: list[str]) -> None:
    assert replicas.names(count) == names
    assert all(replicas.is_engine(name) for name in names)


@pytest.mark.parametrize("name", ["gateway", "engine-", "engine-x", "engines", "prometheus"])
def test_not_engines(name: str) -> None:
    assert not replicas.is_engine(name)


@pytest.mark.parametrize(
    ("args", "gpus"),
    [
        ([], 1),
        (["--tensor-parallel-size", "2"], 2),
        (["-tp", "4"], 4),
        (["--tensor-parallel-size=2", "--data-parallel-size", "2"], 4),
        (["-tp", "2", "-pp", "2", "-dp", "2"], 8),
        (["--tensor-parallel-size", "2", "--tensor-parallel-size", "4"], 4),  # the last wins
        (["--quantization", "awq"], 1),
    ],
)
def test_gpus_per_replica(args: list[str], gpus: int) -> None:
    assert replicas.gpus_per_replica(args) == gpus


@pytest.mark.parametrize(
    ("ids", "count", "per", "groups"),
    [
        (None, 1, 2, None),  # one engine, any two GPUs
        (None, 2, 1, [["0"], ["1"]]),
        (None, 2, 2, [["0", "1"], ["2", "3"]]),
        (["3", "1"], 2, 1, [["3"], ["1"]]),
        (["0", "1", "2", "3"], 2, 2, [["0", "1"], ["2", "3"]]),
        (["GPU-a", "GPU-b"], 1, 2, [["GPU-a", "GPU-b"]]),
    ],
)
def test_device_groups(
    ids: list[str] | None, count: int, per: int, groups: list[list[str]] | None
) -> None:
    assert replicas.device_groups(ids, count, per) == groups


@pytest.mark.parametrize(
    ("sets", "error"),
    [
        (
            ["engine.replicas=2", "engine.device_ids=['0', '1', '2']"],
            "3 GPU(s) listed, but 2 replica(s) x 1 GPU(s) each",
        ),
        (
            ["engine.replicas=2", "engine.extra_args=['-tp', '2']", "engine.device_ids=['0', '1']"],
            "need 4",
        ),
        (["engine.device_ids=['0', '0']"], "0 listed twice"),
        (["engine.device_ids=['0,1']"], "is not a GPU index or UUID"),
        (
            ["engine.replicas=2", "engine.env={CUDA_VISIBLE_DEVICES='1'}"],
            "list them in engine.device_ids",
        ),
        (["engine.replicas=3", "ports.engine=8078"], "ports.engine (8078-8080, one per engine"),
        (["engine.replicas=3", "ports.engine=65534"], "runs past 65535"),
    ],
)
def test_what_does_not_fit_is_refused(sets: list[str], error: str) -> None:
    with pytest.raises(StackFileError, match=re.escape(error)):
        _spec("qwen2.5-14b-awq-3090", "runtime='local'", *sets)


def test_local_services_one_per_replica(tmp_path: Path) -> None:
    spec = _spec(
        "qwen2.5-14b-awq-3090",
        "runtime='local'",
        "engine.replicas=2",
        "engine.extra_args=['-tp', '2']",
        "engine.device_ids=['4', '5', '6', '7']",
        "ports.engine=18000",
    )
    services = {s.name: s for s in local_services(spec, tmp_path, {}, resolve=False)}
    assert list(services) == ["engine-0", "engine-1", "gateway", "prometheus"]
    for name, port, gpus in [("engine-0", 18000, "4,5"), ("engine-1", 18001, "6,7")]:
        engine = services[name]
        assert engine.port == port
        assert engine.health_url == f"http://127.0.0.1:{port}/health"
        argv = engine.argv or []
        assert argv[argv.index("--port") + 1] == str(port)
        assert engine.env["CUDA_VISIBLE_DEVICES"] == gpus
    gateway = services["gateway"].argv or []
    upstream = gateway[gateway.index("--upstream") + 1]
    assert upstream == "http://127.0.0.1:18000,http://127.0.0.1:18001"


def test_a_vllm_replica_runs_with_its_gpus(tmp_path: Path) -> None:
    """Resolved as `up` resolves it: the configured interpreter, and only its own GPUs."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\nexit 0\n")
    python.chmod(0o755)
    spec = _spec(
        "qwen2.5-14b-awq-3090",
        "runtime='local'",
        "engine.replicas=2",
        f"engine.python='{python}'",
    )
    engines = [s for s in local_services(spec, tmp_path, {}) if replicas.is_engine(s.name)]
    assert [(s.argv or [""])[0] for s in engines] == [str(python), str(python)]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in engines] == ["0", "1"]


def test_sim_replicas_report_their_own_gpu(tmp_path: Path) -> None:
    spec = _spec("local-sim", "engine.replicas=3", "engine.device_ids=['0', '2', '5']")
    argvs = [s.argv or [] for s in local_services(spec, tmp_path, {}) if s.name != "gateway"]
    assert "--gpu-index" not in argvs[0]
    assert [a[a.index("--gpu-index") + 1] for a in argvs[1:3]] == ["2", "5"]
    # A simulator uses no GPU: nothing hides one from it.
    assert all("CUDA_VISIBLE_DEVICES" not in s.env for s in local_services(spec, tmp_path, {}))


def test_changing_the_count_renames_restarts_and_stops(tmp_path: Path) -> None:
    """One engine to two: `engine` stops, `engine-0` and `engine-1` start, the gateway restarts
    for its new upstreams; and back."""
    one, two = _spec("local-sim"), _spec("local-sim", "engine.replicas=2")
    configs = {n: service_configs(s, tmp_path, {}) for n, s in (("one", one), ("two", two))}
    grow = reconcile.plan(
        reconcile.differences(one, two),
        configs["one"],
        configs["two"],
        {"engine", "gateway", "prometheus"},
    )
    assert grow.stop == ["engine"]
    assert grow.restart == ["engine-0", "engine-1", "gateway", "prometheus"]
    shrink = reconcile.plan(
        reconcile.differences(two, one),
        configs["two"],
        configs["one"],
        {"engine-0", "engine-1", "gateway", "prometheus"},
    )
    assert shrink.stop == ["engine-0", "engine-1"]
    assert shrink.restart == ["engine", "gateway", "prometheus"]


@needs_compose
def test_compose_pins_each_replica_to_its_gpus(tmp_path: Path) -> None:
    spec = _spec(
        "qwen2.5-14b-awq-3090",
        "engine.replicas=2",
        "engine.extra_args=['--tensor-parallel-size', '2']",
        "engine.device_ids=['0', '1', '2', '3']",
    )
    render_stack(spec, tmp_path, environ={})
    services = _compose_config(tmp_path)["services"]
    assert "engine" not in services
    for name, gpus in [("engine-0", ["0", "1"]), ("engine-1", ["2", "3"])]:
        (devices,) = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices["device_ids"] == gpus
        assert "count" not in devices
        command = services[name]["command"]
        assert command[command.index("--tensor-parallel-size") + 1] == "2"
        assert "ports" not in services[name]
    gateway = services["gateway"]
    assert {n: d["condition"] for n, d in gateway["depends_on"].items()} == {
        "engine-0": "service_healthy",
        "engine-1": "service_healthy",
    }
    command = gateway["command"]
    upstream = command[command.index("--upstream") + 1]
    assert upstream == "http://engine-0:8000,http://engine-1:8000"


@needs_compose
def test_compose_one_engine_reserves_its_parallel_size(tmp_path: Path) -> None:
    """One replica with vLLM's own data parallelism: one service, any four GPUs."""
    spec = _spec("qwen2.5-14b-awq-3090", "engine.extra_args=['-dp', '2', '-tp', '2']")
    render_stack(spec, tmp_path, environ={})
    services = _compose_config(tmp_path)["services"]
    (devices,) = services["engine"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices["count"] == 4
    assert "device_ids" not in devices


@needs_compose
def test_compose_sim_replicas(tmp_path: Path) -> None:
    render_stack(_spec("local-sim", "runtime='docker'", "engine.replicas=2"), tmp_path, environ={})
    services = _compose_config(tmp_path)["services"]
    commands = [services[name]["command"] for name in ("engine-0", "engine-1")]
    assert "--gpu-index" not in commands[0]
    assert commands[1][commands[1].index("--gpu-index") + 1] == "1"
    assert "deploy" not in services["engine-0"]  # a simulator reserves no GPU


def _jobs(out: Path) -> dict[str, list[str]]:
    config = yaml.safe_load((out / "prometheus" / "prometheus.yml").read_text())
    return {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in config["scrape_configs"]
    }


@pytest.mark.parametrize(
    ("runtime", "engines"),
    [
        ("local", ["127.0.0.1:18000", "127.0.0.1:18001", "127.0.0.1:18002"]),
        ("docker", ["engine-0:8000", "engine-1:8000", "engine-2:8000"]),
    ],
)
def test_prometheus_scrapes_every_engine(tmp_path: Path, runtime: str, engines: list[str]) -> None:
    spec = _spec("local-sim", f"runtime='{runtime}'", "engine.replicas=3", "ports.engine=18000")
    render_stack(spec, tmp_path, environ={})
    jobs = _jobs(tmp_path)
    assert jobs[metrics.JOB_ENGINE] == engines
    assert jobs[metrics.JOB_GPU] == engines  # each simulator's DCGM telemetry
    if shutil.which("promtool"):
        _promtool("check", "config", tmp_path / "prometheus" / "prometheus.yml")


@needs_promtool
def test_prometheus_config_with_vllm_replicas_passes_promtool(tmp_path: Path) -> None:
    render_stack(_spec("llama3.1-8b-h100", "engine.replicas=2"), tmp_path, environ={})
    assert _jobs(tmp_path)[metrics.JOB_ENGINE] == ["engine-0:8000", "engine-1:8000"]
    _promtool("check", "config", tmp_path / "prometheus" / "prometheus.yml")


def test_doctor_counts_every_replicas_gpus(fake_bin: Path, tmp_path: Path) -> None:
    _smi(fake_bin, _rows((80 * GIB_MIB, 79 * GIB_MIB), (80 * GIB_MIB, 79 * GIB_MIB)))
    two = _checks(LLAMA, tmp_path, "engine.replicas=2")["gpus"]
    assert two.level == "ok", two.detail
    assert "2 engines use 1 each" in two.detail
    four = _checks(LLAMA, tmp_path, "engine.replicas=2", "engine.extra_args=['-tp', '2']")["gpus"]
    assert four.level == "fail"
    assert "no GPU 2, 3 here" in four.detail
    named = _checks(LLAMA, tmp_path, "engine.replicas=2", "engine.device_ids=['1', '7']")["gpus"]
    assert named.level == "fail"
    assert "no GPU 7 of engine.device_ids here" in named.detail


def _free_ports(count: int) -> int:
    """The first of `count` consecutive ports free right now (the engines' ports)."""
    for _ in range(50):
        first = free_port()
        try:
            for port in range(first + 1, first + count):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return first
    raise AssertionError(f"no {count} consecutive free ports")


def _served(engine: str) -> float:
    """Requests the engine itself says it finished (its own vllm:request_success_total)."""
    text = httpx.get(f"{engine}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(metrics.VLLM_REQUEST_SUCCESS.series + "{")
    )


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus binary (.ci/run)")
def test_two_sim_replicas_up_route_status_down(stack_dir: Path) -> None:
    gw, engine, prom = free_port(), _free_ports(2), free_port()
    up = llmctl(
        stack_dir,
        "up",
        "--gateway-port", str(gw),
        "--engine-port", str(engine),
        "--prometheus-port", str(prom),
        "--scrape-interval", "1s",
        "--set", "engine.replicas=2",
        "--set", "gateway.routing='round_robin'",
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    engines = {"engine-0": engine, "engine-1": engine + 1}
    records = _records(stack_dir)
    assert len(records) == 4  # two engines, the gateway, Prometheus

    status = llmctl(stack_dir, "status", "--format", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {s["name"]: s for s in json.loads(status.stdout)["services"]}
    assert list(rows) == ["engine-0", "engine-1", "gateway", "prometheus"]
    for name, port in engines.items():
        assert rows[name]["health"] == "healthy"
        assert rows[name]["url"] == f"http://127.0.0.1:{port}"

    chosen = set()
    for i in range(4):
        reply = httpx.post(
            f"http://127.0.0.1:{gw}/v1/completions",
            json={"model": "llmctl-sim", "prompt": f"hello {i}", "max_tokens": 4},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        chosen.add(reply.headers["X-Llmctl-Engine"])
    assert chosen == {f"127.0.0.1:{port}" for port in engines.values()}
    # Each engine served its share, by its own count.
    assert [_served(f"http://127.0.0.1:{p}") for p in engines.values()] == [2.0, 2.0]

    def scraped() -> bool:
        up_engines = _query(f"http://127.0.0.1:{prom}", f'up{{job="{metrics.JOB_ENGINE}"}} == 1')
        found = {r["metric"]["instance"] for r in up_engines}  # type: ignore[index]
        assert found == {f"127.0.0.1:{port}" for port in engines.values()}, found
        gpus = _query(f"http://127.0.0.1:{prom}", metrics.DCGM_GPU_UTIL.series)
        assert {r["metric"]["gpu"] for r in gpus} == {"0", "1"}  # type: ignore[index]
        return True

    eventually(scraped, timeout=30, interval=0.5)

    logs = llmctl(stack_dir, "logs", "engine-1")
    assert logs.returncode == 0, logs.stderr
    assert f"on http://127.0.0.1:{engine + 1} (" in logs.stdout
    assert f"on http://127.0.0.1:{engine} (" not in logs.stdout  # engine-0's own line

    down = llmctl(stack_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "engine-0: stopped" in down.stdout
    assert "engine-1: stopped" in down.stdout
    assert not any(processes.is_alive(r) for r in records)
    assert not list((stack_dir / RUN).glob("*.pid"))
