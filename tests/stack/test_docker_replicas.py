"""Two simulated engines as compose services against a real Docker engine: up, both routed to,
both scraped as their own GPU, a status row each, down (the docker tier, tests/stack/dockerd.py)."""

from __future__ import annotations

import json

import httpx
import pytest

from llmctl.core import metrics
from tests.stack.test_docker_runtime import API_KEY, Stack, _query, engine_env, stack
from tests.support import eventually

__all__ = ["engine_env", "stack"]  # fixtures
pytestmark = [pytest.mark.docker, pytest.mark.slow]

ENGINES = {"engine-0:8000", "engine-1:8000"}  # the gateway's and Prometheus' name for each


def test_two_replicas_up_routed_scraped_status_down(stack: Stack) -> None:
    stack.env["LLMCTL__ENGINE__REPLICAS"] = "2"
    stack.env["LLMCTL__GATEWAY__ROUTING"] = "round_robin"
    up = stack.llmctl("up")
    assert up.returncode == 0, up.stdout + up.stderr

    status = stack.llmctl("status", "--format", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = {s["name"]: s for s in json.loads(status.stdout)["services"]}
    assert {"engine-0", "engine-1", "gateway", "prometheus"} <= set(rows)
    assert "engine" not in rows
    assert rows["engine-0"]["health"] == rows["engine-1"]["health"] == "healthy"

    chosen = set()
    for i in range(4):
        reply = httpx.post(
            f"http://127.0.0.1:{stack.gateway_port}/v1/completions",
            headers={"Authorization": f"Bearer {API_KEY}"},
            json={"model": "llmctl-sim", "prompt": f"hello {i}", "max_tokens": 4},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text
        chosen.add(reply.headers["X-Llmctl-Engine"])
    assert chosen == ENGINES

    prometheus = f"http://127.0.0.1:{stack.prometheus_port}"

    def scraped() -> bool:
        engines = _query(prometheus, f'up{{job="{metrics.JOB_ENGINE}"}} == 1')
        assert {r["metric"]["instance"] for r in engines} == ENGINES  # type: ignore[index]
        gpus = _query(prometheus, metrics.DCGM_GPU_UTIL.series)
        assert {r["metric"]["gpu"] for r in gpus} == {"0", "1"}  # type: ignore[index]
        return True

    eventually(scraped, timeout=30, interval=0.5, what="both engines scraped")

    down = stack.llmctl("down", "--volumes")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "removed engine-0" in down.stdout
    assert "removed engine-1" in down.stdout
    assert stack.containers() == []
