"""The local runtime for real: `llmctl up` local-sim, a chat through the gateway, PromQL, down."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from llmctl.core import metrics
from llmctl.stack import processes
from tests.support import eventually, free_port

RUN = Path(".llmctl") / "local-sim" / "run"
# Variables that would change the stack or the gateway under test if the caller's shell had them.
SCRUB = ("MAX_ACTIVE", "QUEUE_MODE", "QUEUE_MAX", "LLMCTL_API_KEYS", "LLMCTL_ADMIN_KEY")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB and not k.startswith("LLMCTL__")}
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "160"
    return env


def llmctl(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmctl", *args],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _records(cwd: Path) -> list[processes.PidRecord]:
    found = [processes.read_pidfile(p) for p in sorted((cwd / RUN).glob("*.pid"))]
    return [r for r in found if r is not None]


@pytest.fixture
def stack_dir(tmp_path: Path) -> Iterator[Path]:
    """A working folder; whatever the test leaves running there is stopped by pid afterwards."""
    seen: list[processes.PidRecord] = []
    try:
        yield tmp_path
    finally:
        seen = _records(tmp_path)
        if seen:
            llmctl(tmp_path, "down")
        processes.stop_all(seen, grace=2)


def _query(prometheus: str, promql: str) -> list[dict[str, object]]:
    resp = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    resp.raise_for_status()
    result: list[dict[str, object]] = resp.json()["data"]["result"]
    return result


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus binary (.ci/run)")
def test_up_chat_query_status_down(stack_dir: Path) -> None:
    gw, engine, prom = free_port(), free_port(), free_port()
    ports = ["--gateway-port", str(gw), "--engine-port", str(engine)]
    ports += ["--prometheus-port", str(prom), "--scrape-interval", "1s"]
    up = llmctl(stack_dir, "up", *ports)
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"http://127.0.0.1:{gw}" in up.stdout
    # Piped, `up` says how each service came up, a line per change (a CI log shows progress).
    for service in ("engine", "gateway", "prometheus"):
        assert re.search(rf"^\[[\d.]+s\] {service}: running, healthy", up.stdout, re.M), up.stdout
    records = _records(stack_dir)
    assert len(records) == 3
    assert all(processes.is_alive(r) for r in records)

    client = OpenAI(base_url=f"http://127.0.0.1:{gw}/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(
        model="llmctl-sim", messages=[{"role": "user", "content": "Hello"}], max_tokens=16
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0

    prometheus = f"http://127.0.0.1:{prom}"
    gateway_series = f'{metrics.GATEWAY_REQUESTS.series}{{job="{metrics.JOB_GATEWAY}"}}'
    engine_series = f'{metrics.VLLM_REQUEST_SUCCESS.series}{{job="{metrics.JOB_ENGINE}"}}'
    wanted_jobs = {metrics.JOB_GATEWAY, metrics.JOB_ENGINE, metrics.JOB_GPU}

    def scraped() -> bool:
        assert _query(prometheus, gateway_series), "no gateway series in Prometheus"
        assert _query(prometheus, engine_series), "no engine series in Prometheus"
        # Each job's first scrape lands on its own schedule: wait for all of them, not two.
        up_jobs = {r["metric"]["job"] for r in _query(prometheus, "up == 1")}  # type: ignore[index]
        assert wanted_jobs <= up_jobs, up_jobs
        return True

    eventually(scraped, timeout=30, interval=0.5)

    again = llmctl(stack_dir, "up", *ports)
    assert again.returncode == 0
    assert "already running" in again.stdout
    assert _records(stack_dir) == records

    status = llmctl(stack_dir, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.count("healthy") == 3

    chat = llmctl(stack_dir, "chat", "Hello")
    assert chat.returncode == 0
    assert chat.stdout.strip()
    assert "llmctl-sim" in chat.stderr

    # A crashed gateway leaves a stale pid file: status says so, and `up` restarts only it.
    gateway = processes.read_pidfile(stack_dir / RUN / "gateway.pid")
    assert gateway is not None
    processes.stop_all([gateway], grace=0)
    assert not processes.is_alive(gateway)
    crashed = llmctl(stack_dir, "status")
    assert crashed.returncode == 1
    assert "exited" in crashed.stdout
    restarted = llmctl(stack_dir, "up", *ports)
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert "restarted gateway: was not running" in restarted.stdout
    new_gateway = processes.read_pidfile(stack_dir / RUN / "gateway.pid")
    assert new_gateway is not None
    assert new_gateway != gateway
    assert processes.read_pidfile(stack_dir / RUN / "engine.pid") == records[0]
    records = [*_records(stack_dir), gateway]

    data = stack_dir / ".llmctl" / "local-sim" / "prometheus" / "data"
    assert data.is_dir()
    down = llmctl(stack_dir, "down", "--volumes")
    assert down.returncode == 0, down.stdout + down.stderr
    assert not any(processes.is_alive(r) for r in records)
    assert not data.exists()
    assert not list((stack_dir / RUN).glob("*.pid"))
    stopped = llmctl(stack_dir, "status")
    assert stopped.returncode == 1
    assert "stopped" in stopped.stdout


@pytest.mark.slow
def test_engine_crash_during_up_stops_everything_and_shows_its_log(stack_dir: Path) -> None:
    fake = stack_dir / "fake-python"
    fake.write_text("#!/bin/sh\necho 'fake vllm: no model here' >&2\nexit 3\n")
    fake.chmod(0o755)
    up = llmctl(
        stack_dir,
        "up",
        "--gateway-port", str(free_port()),
        "--engine-port", str(free_port()),
        "--prometheus-port", str(free_port()),
        "--set", "engine.kind='vllm'",
        "--set", f"engine.python='{fake}'",
        "--set", "engine.model='some/model'",
    )  # fmt: skip
    assert up.returncode == 1
    assert "engine exited during start" in up.stderr
    assert "fake vllm: no model here" in up.stderr
    assert not list((stack_dir / RUN).glob("*.pid"))


def test_busy_port_is_reported_before_anything_starts(stack_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = llmctl(
            stack_dir,
            "up",
            "--gateway-port", str(port),
            "--engine-port", str(free_port()),
            "--prometheus-port", str(free_port()),
        )  # fmt: skip
    assert up.returncode == 1
    assert f"port {port}" in up.stderr
    assert "--gateway-port" in up.stderr
    assert not list((stack_dir / RUN).glob("*.pid"))


def _ipv6_loopback() -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_up_on_ipv6_loopback(stack_dir: Path) -> None:
    gw, engine, prom = free_port(), free_port(), free_port()
    up = llmctl(
        stack_dir,
        "up",
        "--bind", "::1",
        "--gateway-port", str(gw),
        "--engine-port", str(engine),
        "--prometheus-port", str(prom),
    )  # fmt: skip
    assert up.returncode == 0, up.stdout + up.stderr
    assert f"http://[::1]:{gw}" in up.stdout
    status = llmctl(stack_dir, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    chat = llmctl(stack_dir, "chat", "Hello")
    assert chat.returncode == 0, chat.stdout + chat.stderr
    assert f"[::1]:{gw}" in chat.stderr  # "MODEL via GATEWAY", beside the answer
    down = llmctl(stack_dir, "down")
    assert down.returncode == 0, down.stdout + down.stderr


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(): v.decode(errors="replace") for k, _, v in pairs}


@pytest.mark.slow
def test_each_service_gets_only_its_environment_and_stale_pid_files_are_not_adopted(
    stack_dir: Path,
) -> None:
    (stack_dir / "llmctl.toml").write_text(
        'name = "local-sim"\n[gateway]\napi_keys_env = "TEAM_KEYS"\n'
        '[engine.env]\nENGINE_SETTING = "on"\n[observability]\nprometheus = false\n'
    )
    gw, engine = free_port(), free_port()
    run = stack_dir / RUN
    run.mkdir(parents=True)
    innocent = subprocess.Popen(["sleep", "60"])
    try:
        for name in ("engine", "gateway"):  # no start time: not verifiable, so not ours
            (run / f"{name}.pid").write_text(f"{innocent.pid}\n")
        secrets = {
            "TEAM_KEYS": "sk-team-key-1",
            "HF_TOKEN": "hf_not_for_the_sim",
            "UNRELATED_SECRET": "s3cr3t",
        }
        up = subprocess.run(
            [sys.executable, "-m", "llmctl", "up", "--gateway-port", str(gw),
             "--engine-port", str(engine)],
            cwd=stack_dir, env={**_env(), **secrets}, capture_output=True, text=True,
            timeout=120, check=False,
        )  # fmt: skip
        assert up.returncode == 0, up.stdout + up.stderr
        assert "already running" not in up.stdout
        records = {r.pid: r for r in _records(stack_dir)}
        assert innocent.pid not in records
        engine_env = _environ(processes.read_pidfile(run / "engine.pid").pid)  # type: ignore[union-attr]
        gateway_env = _environ(processes.read_pidfile(run / "gateway.pid").pid)  # type: ignore[union-attr]
        everywhere = "\n".join(f"{k}={v}" for k, v in engine_env.items())
        for value in secrets.values():
            assert value not in everywhere
        assert engine_env["ENGINE_SETTING"] == "on"
        assert "PATH" in engine_env
        assert gateway_env["LLMCTL_API_KEYS"] == "sk-team-key-1"
        assert "LLMCTL_ADMIN_KEY" in gateway_env  # generated into .env, given to the gateway only
        assert "LLMCTL_ADMIN_KEY" not in engine_env
        for name in ("TEAM_KEYS", "HF_TOKEN", "UNRELATED_SECRET"):
            assert name not in gateway_env
        resp = httpx.post(
            f"http://127.0.0.1:{gw}/v1/completions",
            json={"prompt": "hi", "max_tokens": 2},
            headers={"Authorization": "Bearer sk-team-key-1"},
            timeout=10,
        )
        assert resp.status_code == 200, resp.text
        logs = llmctl(stack_dir, "logs", "gateway")
        assert logs.returncode == 0
        assert "gateway listening" in logs.stdout
        down = llmctl(stack_dir, "down")
        assert down.returncode == 0, down.stdout + down.stderr
        assert innocent.poll() is None
    finally:
        innocent.kill()
        innocent.wait()
