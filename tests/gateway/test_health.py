"""Readiness follows the engine; liveness follows the process."""

from __future__ import annotations

import httpx

from tests.gateway.client import health_saying
from tests.gateway.conftest import MakeGateway
from tests.gateway.upstream import FakeEngine
from tests.support import eventually


def test_health_is_503_until_the_engine_lists_the_model(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    engine.ready = False
    gw = make_gateway(health_interval_s=0.1)
    # The verdict of a probe, not the 503 a gateway gives before its first probe has answered.
    resp = health_saying(gw.url, "does not list")
    assert resp.status_code == 503
    assert gw.metric("llmctl_gateway_engine_ready") == 0
    assert httpx.get(gw.url + "/livez").status_code == 200
    engine.ready = True
    eventually(lambda: httpx.get(gw.url + "/health").status_code == 200, timeout=3.0)
    assert gw.metric("llmctl_gateway_engine_ready") == 1
    engine.ready = False
    assert health_saying(gw.url, "does not list").status_code == 503


def test_health_needs_the_configured_model(make_gateway: MakeGateway) -> None:
    gw = make_gateway(model_name="another-model", health_interval_s=0.1)
    assert health_saying(gw.url, "does not list another-model").status_code == 503


def test_health_is_503_when_the_engine_is_down(make_gateway: MakeGateway, refused_url: str) -> None:
    gw = make_gateway(upstream_url=refused_url, health_interval_s=0.1)
    assert health_saying(gw.url, "unreachable").status_code == 503
    assert httpx.get(gw.url + "/livez").status_code == 200
