"""The adaptive limit in a running gateway, over real sockets: it moves MAX_ACTIVE by the law, can be
switched on and off live with requests in flight, stays in its bounds, and holds (saying so) when
the engine reports nonsense or nothing."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.gateway.client import chat, post_many
from tests.gateway.conftest import GatewayHandle, MakeGateway
from tests.gateway.upstream import FakeEngine
from tests.support import eventually

ADMIN = {"Authorization": "Bearer admin-secret"}


def _limits(gw: GatewayHandle) -> dict[str, Any]:
    resp = httpx.get(gw.url + "/admin/limits", headers=ADMIN)
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    return data


def _put(gw: GatewayHandle, **changes: Any) -> httpx.Response:
    return httpx.put(gw.url + "/admin/limits", json=changes, headers=ADMIN)


def _load(gw: GatewayHandle, n: int, delay: float) -> list[int]:
    answers = asyncio.run(post_many(gw.url, [chat({"delay": delay}) for _ in range(n)]))
    return [a.status for a in answers]


def test_a_slow_first_token_brings_the_limit_down_fast_and_it_stays_in_bounds(
    make_gateway: MakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="llmctl.gateway.limits")
    gw = make_gateway(
        admin_key="admin-secret",
        max_active=8,
        queue_max=200,
        limit_mode="adaptive",
        adaptive_min=2,
        adaptive_max=8,
        adaptive_ttft_s=0.1,
        adaptive_interval_s=0.2,
    )
    # Every request takes 0.3 s to its first token: three times the target.
    with ThreadPoolExecutor(1) as pool:
        statuses = pool.submit(_load, gw, 40, 0.3)
        eventually(lambda: _limits(gw)["max_active"] == 2, timeout=5)
        # At the bound, once requests admitted under it have reported: still over, and says so.
        eventually(lambda: "TTFT p95" in _limits(gw)["adaptive_last"]["reason"], timeout=5)
        assert set(statuses.result()) == {200}
    assert gw.metric("llmctl_gateway_limit_changes_total", source="adaptive", direction="down") >= 1
    assert _limits(gw)["max_active"] >= 2  # never below the bound
    # Each change is a log line naming its source and its reason.
    changes = [r.getMessage() for r in caplog.records if "changed by adaptive" in r.getMessage()]
    assert changes, [r.getMessage() for r in caplog.records]
    assert changes[0].startswith("limits changed by adaptive: max_active 8 -> ")
    assert "TTFT p95" in changes[0]


def test_switching_static_and_adaptive_live_costs_no_request_and_no_slot(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(admin_key="admin-secret", max_active=4, queue_max=200)

    async def switch() -> None:
        for mode in ("adaptive", "static", "adaptive", "static"):
            await asyncio.sleep(0.15)
            async with httpx.AsyncClient() as client:
                resp = await client.put(
                    gw.url + "/admin/limits",
                    json={"limit_mode": mode, "adaptive_interval_s": 0.1},
                    headers=ADMIN,
                )
                assert resp.status_code == 200

    async def scenario() -> list[int]:
        answers, _ = await asyncio.gather(
            post_many(gw.url, [chat({"delay": 0.2}) for _ in range(40)]), switch()
        )
        return [a.status for a in answers]

    assert set(asyncio.run(scenario())) == {200}
    gw.wait_idle()
    assert gw.gateway.admission.active == 0
    assert engine.max_in_flight <= _limits(gw)["adaptive_max"]


def test_nonsense_or_missing_engine_metrics_hold_the_last_safe_limit(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    engine.metrics_body = (
        b'vllm:num_requests_waiting{engine="0"} -7\n'
        b'vllm:kv_cache_usage_perc{engine="0"} 42\n'  # 4200 % is not a KV share
        b'vllm:num_preemptions_total{engine="0"} NaN\n'
    )
    gw = make_gateway(
        admin_key="admin-secret",
        max_active=5,
        limit_mode="adaptive",
        adaptive_min=1,
        adaptive_max=10,
        adaptive_interval_s=0.1,
        poll_interval_s=0.1,
    )
    # No traffic, no engine signal: the limit holds and the reason says why.
    eventually(lambda: "adaptive_last" in _limits(gw), timeout=3)
    last = _limits(gw)["adaptive_last"]
    assert last["direction"] == "hold"
    assert "no engine signals" in last["reason"]
    assert _limits(gw)["max_active"] == 5
    engine.metrics_body = None  # and none at all: still held, still said
    assert set(_load(gw, 6, 0.01)) == {200}
    eventually(lambda: "no engine signals" in _limits(gw)["adaptive_last"]["reason"], timeout=3)
    assert 1 <= _limits(gw)["max_active"] <= 10


def test_bad_adaptive_settings_are_refused_naming_the_field(make_gateway: MakeGateway) -> None:
    gw = make_gateway(admin_key="admin-secret")
    resp = _put(gw, adaptive_min=10, adaptive_max=4)
    assert resp.status_code == 400
    assert "adaptive_min" in resp.json()["error"]["message"]
    assert _put(gw, limit_mode="sometimes").status_code == 400
