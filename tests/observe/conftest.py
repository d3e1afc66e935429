"""Fixtures for observability tests: rendered rules, and a live sim + gateway + Prometheus under load."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from llmctl.core import metrics as m
from llmctl.core.config import AlertThresholds
from llmctl.gateway.tenants import key_hash
from llmctl.observe.prometheus import PrometheusSource
from llmctl.stack import processes
from llmctl.stack.render import environment
from llmctl.stack.spec import StackSpec
from tests.support import REPO, Served, ServerProcess, eventually, free_port

RULES = ("alerts", "recording")
RUN = Path(".llmctl") / "local-sim" / "run"
# Variables that would change the stack under test if the caller's shell had them.
SCRUB = ("MAX_ACTIVE", "QUEUE_MODE", "QUEUE_MAX", "QUEUE_TIMEOUT_S", "LLMCTL_API_KEYS")
MODEL = "llmctl-sim"
# Small limits so the load below fills the slots and the queue and some requests get 429/503.
MAX_ACTIVE, QUEUE_MAX = 2, 2
# What Prometheus logs once it listens, port 0 resolved ("Listening on" address=127.0.0.1:PORT).
PROMETHEUS_LISTENING = r'msg="Listening on".*?address=(\S+)'


def render_rules(outdir: Path, alerts: AlertThresholds | None = None) -> list[Path]:
    """Render the rule templates with the stack renderer's environment, as `llmctl render` does."""
    env = environment(REPO / "templates")
    spec = StackSpec()
    ctx = {"spec": spec, "alerts": alerts or spec.alerts, "m": m}
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in RULES:
        path = outdir / f"{name}.yml"
        path.write_text(env.get_template(f"prometheus/rules/{name}.yml.j2").render(ctx))
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def rules_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    outdir = tmp_path_factory.mktemp("rules")
    render_rules(outdir)
    return outdir


def prometheus_config(gateway: str, engine: str) -> str:
    return f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["rules/*.yml"]
scrape_configs:
  - job_name: {m.JOB_GATEWAY}
    static_configs: [{{targets: ["{gateway}"]}}]
  - job_name: {m.JOB_ENGINE}
    static_configs: [{{targets: ["{engine}"]}}]
  - job_name: {m.JOB_GPU}
    metrics_path: /dcgm/metrics
    static_configs: [{{targets: ["{engine}"]}}]
"""


@dataclass
class Load:
    """A few client threads sending chat completions (half streamed) until stopped."""

    url: str
    workers: int = 6
    keys: tuple[str, ...] = ("",)  # Bearer keys the workers take turns with ("" sends none)
    stop: threading.Event = field(default_factory=threading.Event)
    statuses: dict[int, int] = field(default_factory=dict)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _run(self, worker: int) -> None:
        key = self.keys[worker % len(self.keys)]
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        with httpx.Client(base_url=self.url, timeout=30.0, headers=headers) as client:
            n = 0
            while not self.stop.is_set():
                n += 1
                body = {
                    "model": MODEL,
                    "messages": [{"role": "user", "content": f"worker {worker} request {n}"}],
                    "max_tokens": 24,
                    "stream": n % 2 == 0,
                }
                try:
                    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
                        resp.read()
                        self.statuses[resp.status_code] = self.statuses.get(resp.status_code, 0) + 1
                        if resp.status_code != 200:
                            time.sleep(0.05)
                except httpx.HTTPError:
                    time.sleep(0.1)

    def start(self) -> None:
        for i in range(self.workers):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(10)


@dataclass
class LiveStack:
    gateway: str
    engine: str
    prometheus: str
    load: Load
    cwd: Path  # where `llmctl up` ran: `llmctl top` there finds the stack without flags


def start_prometheus(config_dir: Path) -> Served:
    """A Prometheus of a test's own on port 0, reading config_dir/prometheus.yml; ready to query."""
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    server = ServerProcess(
        [
            exe,
            f"--config.file={config_dir / 'prometheus.yml'}",
            "--web.listen-address=127.0.0.1:0",
            f"--storage.tsdb.path={config_dir / 'data'}",
        ],
        config_dir / "prometheus.log",
    )
    try:
        url = f"http://{server.announced(PROMETHEUS_LISTENING).group(1)}"
        server.wait_ready(f"{url}/-/ready")
    except BaseException:
        server.stop()
        raise
    return Served(url, server)


def wait_for_data(source: PrometheusSource, queries: list[str], timeout: float = 60.0) -> None:
    """Until every query returns a sample (rates and rules need a few scrapes first)."""

    def answered() -> bool:
        missing = [q for q in queries if not source.vector(q)]
        assert not missing, f"no data for: {missing}"
        return True

    eventually(answered, timeout=timeout, interval=1.0)


def _llmctl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUB and not k.startswith("LLMCTL__")}
    return subprocess.run(
        [sys.executable, "-m", "llmctl", *args],
        cwd=cwd,
        env={**env, "NO_COLOR": "1", "COLUMNS": "160"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Package scope: the stack and its load end with tests/observe, before other areas' tests run.
@pytest.fixture(scope="package")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveStack]:
    """`llmctl up` of the local-sim stack (sim, gateway, Prometheus with the rendered rules; 1 s
    scrapes; small limits) with load running; `llmctl down` and a stop by pid afterwards."""
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus binary not installed (apt-get install prometheus)")
    cwd = tmp_path_factory.mktemp("stack")
    gw, engine, prom = free_port(), free_port(), free_port()
    # Two tenants in two classes, so the tenant and class panels have series; one has a token
    # limit low enough that the load meets it.
    tenants = cwd / "tenants.toml"
    tenants.write_text(
        f'[[tenants]]\nname = "chat"\nkeys = ["{key_hash("sk-chat")}"]\n'
        f'[[tenants]]\nname = "nightly"\nclass = "batch"\ntokens_per_minute = 2000\n'
        f'keys = ["{key_hash("sk-nightly")}"]\n'
    )
    flags = [
        "--gateway-port", str(gw), "--engine-port", str(engine), "--prometheus-port", str(prom),
        "--scrape-interval", "1s", "--max-active", str(MAX_ACTIVE), "--queue-max", str(QUEUE_MAX),
        "--queue-timeout", "0.5", "--set", "engine.sim.time_scale=4",
        "--set", f"gateway.tenants_file='{tenants}'",
        # Adaptive mode pinned at MAX_ACTIVE (min = max): its gauges have series, the limit holds.
        "--set", "gateway.limit_mode='adaptive'", "--set", f"gateway.adaptive_min={MAX_ACTIVE}",
        "--set", f"gateway.adaptive_max={MAX_ACTIVE}", "--set", "gateway.adaptive_interval_s=0.5",
    ]  # fmt: skip
    up = _llmctl(cwd, "up", *flags)
    records = [r for r in map(processes.read_pidfile, (cwd / RUN).glob("*.pid")) if r]
    load = Load(f"http://127.0.0.1:{gw}", keys=("sk-chat", "sk-nightly"))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        prometheus = f"http://127.0.0.1:{prom}"
        load.start()
        wait_for_data(
            PrometheusSource(prometheus),
            [
                m.REC_E2E_P95,
                m.REC_TTFT_P95,
                m.REC_REQUEST_RATE,
                f'{m.GATEWAY_REQUESTS.series}{{status="429"}}',
                f"rate({m.VLLM_GENERATION_TOKENS.series}[1m]) > 0",
                m.DCGM_GPU_UTIL.series,
            ],
        )
        yield LiveStack(
            f"http://127.0.0.1:{gw}", f"http://127.0.0.1:{engine}", prometheus, load, cwd
        )
    finally:
        load.close()
        _llmctl(cwd, "down")
        processes.stop_all(records, grace=2)
