"""Failover and the admission contract with several engines, over real sockets: an engine's error
before the first byte is retried once on another engine (never twice), a disconnect frees the slot
on the engine that held it, and 429/503 keep their meaning when every engine is busy."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

from tests.gateway.client import chat, run_post
from tests.gateway.conftest import MakeGateway, pool_gateway
from tests.gateway.test_disconnect import _open, _read_until
from tests.gateway.upstream import FakeEngine
from tests.support import eventually


def _name(engine: FakeEngine) -> str:
    return engine.url.removeprefix("http://")


def test_an_engine_error_before_the_first_byte_is_retried_on_another_engine(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    engines[0].fail_status = 503
    gw = pool_gateway(make_gateway, engines[:2], routing="round_robin")
    answers = [run_post(gw.url, chat(stream=stream)) for stream in (False, True, False, True)]
    assert [a.status for a in answers] == [200] * 4
    assert {a.headers["X-Llmctl-Engine"] for a in answers} == {_name(engines[1])}
    # Round robin sent it every other request (a retry does not move the turn); each was retried.
    assert engines[0].started == 2
    assert gw.metric("llmctl_gateway_retries_total", kind="status") == 2
    assert gw.metric("llmctl_gateway_routed_total", reason="retry") == 2


def test_a_request_is_retried_once_and_no_more(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    for engine in engines:
        engine.fail_status = 503
    gw = pool_gateway(make_gateway, engines)
    answer = run_post(gw.url, chat())
    assert answer.status == 503  # the second engine's own answer, passed through
    assert sum(e.started for e in engines) == 2
    assert gw.metric("llmctl_gateway_retries_total") == 1
    gw.wait_idle()


def test_a_disconnect_frees_the_slot_on_the_engine_that_held_it(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    gw = pool_gateway(make_gateway, engines[:2], max_active=1, queue_max=5)
    socks: list[socket.socket] = []
    for _ in range(2):
        socks.append(_open(gw.url, chat({"tokens": 200, "interval": 0.05}, stream=True)))
        _read_until(socks[-1], b"data:", 1)
    assert [e.in_flight for e in engines[:2]] == [1, 1]
    socks[0].close()
    eventually(lambda: gw.metric("llmctl_gateway_engine_active_requests") == 1)
    freed = next(e for e in engines[:2] if e.in_flight == 0)
    held = next(e for e in engines[:2] if e is not freed)
    assert freed.aborted == 1
    assert gw.metric("llmctl_gateway_engine_active_requests", engine=_name(freed)) == 0
    assert gw.metric("llmctl_gateway_engine_active_requests", engine=_name(held)) == 1
    # The freed slot takes the next request at once, on the engine that freed it.
    answer = run_post(gw.url, chat())
    assert answer.headers["X-Llmctl-Engine"] == _name(freed)
    socks[1].close()
    gw.wait_idle()
    assert gw.metric("llmctl_gateway_engine_active_requests") == 0


def test_every_engine_busy_means_one_queue_then_429_and_503(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    gw = pool_gateway(make_gateway, engines[:2], max_active=1, queue_max=1, queue_timeout_s=0.3)
    with ThreadPoolExecutor(4) as pool:
        busy = [pool.submit(run_post, gw.url, chat({"delay": 1.0})) for _ in range(2)]
        eventually(lambda: engines[0].in_flight + engines[1].in_flight == 2)
        queued = pool.submit(run_post, gw.url, chat())
        eventually(lambda: gw.gateway.admission.queued == 1)
        refused = run_post(gw.url, chat())
        timed_out = queued.result(5)
        assert [b.result(5).status for b in busy] == [200, 200]
    assert (refused.status, refused.error_code) == (429, "queue_full")
    assert (timed_out.status, timed_out.error_code) == (503, "queue_timeout")
    assert int(refused.headers["Retry-After"]) >= 1
    assert [e.max_in_flight for e in engines[:2]] == [1, 1]
    gw.wait_idle()
