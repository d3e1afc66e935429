"""Readiness follows the engine; liveness follows the process."""

from __future__ import annotations

import time

import httpx

from tests.gateway.conftest import MakeGateway
from tests.gateway.upstream import FakeEngine
from tests.support import free_port


def _wait_status(url: str, status: int, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(url).status_code == status:
            return
        time.sleep(0.02)
    raise AssertionError(f"{url} never answered {status}")


def test_health_is_503_until_the_engine_lists_the_model(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    engine.ready = False
    gw = make_gateway(health_interval_s=0.1)
    time.sleep(0.3)
    resp = httpx.get(gw.url + "/health")
    assert resp.status_code == 503
    assert "does not list" in resp.json()["engine"]
    assert gw.metric("llmctl_gateway_engine_ready") == 0
    assert httpx.get(gw.url + "/livez").status_code == 200
    engine.ready = True
    _wait_status(gw.url + "/health", 200)
    assert gw.metric("llmctl_gateway_engine_ready") == 1
    engine.ready = False
    _wait_status(gw.url + "/health", 503)


def test_health_needs_the_configured_model(make_gateway: MakeGateway) -> None:
    gw = make_gateway(model_name="another-model", health_interval_s=0.1)
    time.sleep(0.3)
    assert httpx.get(gw.url + "/health").status_code == 503


def test_health_is_503_when_the_engine_is_down(make_gateway: MakeGateway) -> None:
    gw = make_gateway(upstream_url=f"http://127.0.0.1:{free_port()}", health_interval_s=0.1)
    time.sleep(0.3)
    resp = httpx.get(gw.url + "/health")
    assert resp.status_code == 503
    assert "unreachable" in resp.json()["engine"]
    assert httpx.get(gw.url + "/livez").status_code == 200
