"""The admin API: off without a key, 401 on a wrong key, live limit changes that take effect at once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from tests.gateway.client import chat, post_many
from tests.gateway.conftest import MakeGateway
from tests.gateway.upstream import FakeEngine
from tests.support import eventually_async

ADMIN = {"Authorization": "Bearer admin-secret"}


def test_admin_api_is_off_without_an_admin_key(make_gateway: MakeGateway) -> None:
    gw = make_gateway()
    resp = httpx.get(gw.url + "/admin/limits", headers=ADMIN)
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"
    assert httpx.put(gw.url + "/admin/limits", json={"max_active": 9}).status_code == 404


def test_admin_api_needs_the_admin_key(make_gateway: MakeGateway) -> None:
    gw = make_gateway(admin_key="admin-secret", api_keys=["user-key"])
    assert httpx.get(gw.url + "/admin/limits").status_code == 401
    wrong = {"Authorization": "Bearer user-key"}  # an API key is not an admin key
    assert httpx.get(gw.url + "/admin/limits", headers=wrong).status_code == 401
    resp = httpx.get(gw.url + "/admin/limits", headers=ADMIN)
    assert resp.status_code == 200
    assert resp.json() == {
        "max_active": 4,
        "max_active_total": None,
        "queue_mode": "queue",
        "queue_max": 64,
        "queue_timeout_s": 30.0,
        "limit_mode": "static",
        "adaptive_min": 1,
        "adaptive_max": 64,
        "adaptive_ttft_s": 2.0,
        "adaptive_itl_s": None,
        "adaptive_interval_s": 1.0,
    }


def test_put_limits_validates_and_updates_the_gauges(make_gateway: MakeGateway) -> None:
    gw = make_gateway(admin_key="admin-secret")
    for bad in ({"max_active": 0}, {"queue_max": -1}, {"queue_mode": "drop"}, {"bogus": 1}):
        resp = httpx.put(gw.url + "/admin/limits", json=bad, headers=ADMIN)
        assert resp.status_code == 400, bad
        assert resp.json()["error"]["code"] == "bad_request"
    bad_json = httpx.put(gw.url + "/admin/limits", content=b"[1", headers=ADMIN)
    assert bad_json.status_code == 400
    for endless in (
        b'{"queue_timeout_s": "inf"}',
        b'{"queue_timeout_s": Infinity}',
        b'{"queue_timeout_s": NaN}',
    ):
        resp = httpx.put(gw.url + "/admin/limits", content=endless, headers=ADMIN)
        assert resp.status_code == 400, endless
        assert "queue_timeout_s" in resp.json()["error"]["message"]
    assert httpx.get(gw.url + "/admin/limits", headers=ADMIN).json()["queue_timeout_s"] == 30.0
    resp = httpx.put(
        gw.url + "/admin/limits", json={"max_active": 7, "queue_max": 3}, headers=ADMIN
    )
    assert resp.status_code == 200
    assert resp.json()["max_active"] == 7
    assert resp.json()["queue_timeout_s"] == 30.0  # untouched fields keep their values
    assert gw.metric("llmctl_gateway_max_active") == 7
    assert gw.metric("llmctl_gateway_queue_max") == 3


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"max_active": "8"}', "max_active"),  # a string is not a number
        (b'{"max_active": true}', "max_active"),  # nor is a boolean
        (b'{"max_active": 1.5}', "max_active"),
        (b'{"max_active": 8.0}', "max_active"),  # a count is a JSON integer
        (b'{"max_active": 1e34}', "max_active"),
        (b'{"max_active": 10001}', "max_active"),  # above MAX_ACTIVE_MAX
        (b'{"queue_max": 100001}', "queue_max"),
        (b'{"queue_max": "3"}', "queue_max"),
        (b'{"queue_timeout_s": 1e308}', "queue_timeout_s"),
        (b'{"queue_timeout_s": 86401}', "queue_timeout_s"),  # over a day
        (b'{"queue_timeout_s": "30"}', "queue_timeout_s"),
        (b'{"queue_timeout_s": false}', "queue_timeout_s"),
        (b'{"queue_timeout_s": 1e999}', "queue_timeout_s"),  # inf after parsing: not JSON
        (b'{"queue_timeout_s": -Infinity}', "queue_timeout_s"),
        (b'{"queue_mode": 1}', "queue_mode"),
    ],
)
def test_put_limits_takes_only_json_types_within_bounds(
    make_gateway: MakeGateway, body: bytes, field: str
) -> None:
    gw = make_gateway(admin_key="admin-secret")
    before = httpx.get(gw.url + "/admin/limits", headers=ADMIN).json()
    resp = httpx.put(gw.url + "/admin/limits", content=body, headers=ADMIN)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "bad_request"
    assert field in resp.json()["error"]["message"]
    assert httpx.get(gw.url + "/admin/limits", headers=ADMIN).json() == before


def test_put_limits_takes_integers_for_seconds_and_the_bounds_themselves(
    make_gateway: MakeGateway,
) -> None:
    gw = make_gateway(admin_key="admin-secret")
    body = {"max_active": 10_000, "queue_max": 100_000, "queue_timeout_s": 86_400}
    resp = httpx.put(gw.url + "/admin/limits", json=body, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert resp.json() | body == resp.json()
    assert resp.json()["queue_timeout_s"] == 86_400.0


def test_raising_max_active_admits_waiters_at_once(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_active=1, queue_max=10, admin_key="admin-secret")

    async def scenario() -> tuple[list[int], float]:
        sending = asyncio.ensure_future(post_many(gw.url, [chat({"delay": 1.5}) for _ in range(4)]))  # noqa: RUF006 - awaited below
        await eventually_async(lambda: engine.in_flight == 1 and gw.gateway.admission.queued == 3)
        async with httpx.AsyncClient() as client:
            resp = await client.put(gw.url + "/admin/limits", json={"max_active": 4}, headers=ADMIN)
            assert resp.status_code == 200
        changed = time.monotonic()
        await eventually_async(lambda: engine.in_flight == 4)
        admitted_after = time.monotonic() - changed
        answers = await sending
        return [a.status for a in answers], admitted_after

    statuses, admitted_after = asyncio.run(scenario())
    assert statuses == [200] * 4
    assert admitted_after < 0.5
    gw.wait_idle()


def test_lowering_max_active_lets_in_flight_finish_and_admits_no_one_above_it(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_active=4, queue_max=10, admin_key="admin-secret")
    seen: list[int] = []

    async def scenario() -> list[int]:
        sending = asyncio.ensure_future(post_many(gw.url, [chat({"delay": 0.6}) for _ in range(4)]))  # noqa: RUF006 - awaited below
        await eventually_async(lambda: engine.in_flight == 4)
        async with httpx.AsyncClient() as client:
            resp = await client.put(gw.url + "/admin/limits", json={"max_active": 1}, headers=ADMIN)
            assert resp.status_code == 200
        later = asyncio.ensure_future(post_many(gw.url, [chat({"delay": 0.2}) for _ in range(3)]))  # noqa: RUF006 - awaited below
        while not later.done():
            seen.append(engine.in_flight)
            await asyncio.sleep(0.005)
        first = await sending
        return [a.status for a in first + await later]

    statuses = asyncio.run(scenario())
    assert Counter(statuses) == {200: 7}
    # The four in flight finished; after they drained, never more than one at a time again.
    drained = next(i for i, n in enumerate(seen) if n <= 1)
    assert max(seen[drained:]) == 1
    assert engine.max_in_flight == 4
    gw.wait_idle()
