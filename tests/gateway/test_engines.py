"""Several engines behind one gateway, over real sockets: per-engine limits and a global cap under
one FIFO queue, routing policies, failover before the first byte, a clean error event after it,
gradual re-admission, and the gauges back at 0."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.gateway.client import chat, post_many, run_post
from tests.gateway.conftest import MakeGateway, pool_gateway
from tests.gateway.upstream import FakeEngine, LoopThread
from tests.support import eventually


def _served_by(engines: list[FakeEngine]) -> list[int]:
    return [e.completed for e in engines]


def test_each_engine_holds_its_own_limit_under_one_queue(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    gw = pool_gateway(make_gateway, engines, max_active=2, queue_max=20)
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.3}) for _ in range(12)]))
    assert [a.status for a in answers] == [200] * 12
    assert [e.max_in_flight for e in engines] == [2, 2, 2]
    assert sum(_served_by(engines)) == 12
    gw.wait_idle()
    assert all(gw.metric("llmctl_gateway_engine_active_requests", engine=e.url[7:]) == 0
               for e in engines)  # fmt: skip


def test_an_engine_may_have_its_own_limit_and_a_global_cap_bounds_all(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    urls = [f"{engines[0].url}?max_active=1", engines[1].url, engines[2].url]
    gw = make_gateway(upstreams=urls, max_active=3, max_active_total=5, queue_max=30)
    eventually(lambda: gw.metric("llmctl_gateway_engine_up") == 3)
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.3}) for _ in range(15)]))
    assert Counter(a.status for a in answers) == {200: 15}
    assert engines[0].max_in_flight == 1
    assert max(e.max_in_flight for e in engines) <= 3
    # Five at once in all, never more: the engines saw at most 5 together.
    assert sum(e.max_in_flight for e in engines) >= 5  # each reached its share at some point
    assert gw.gateway.admission.active == 0
    limits = gw.gateway.admission.limits
    assert limits.max_active_total == 5


def test_the_global_cap_is_never_exceeded(loop: LoopThread, engines: list[FakeEngine]) -> None:
    from llmctl.core.config import AdmissionLimits
    from llmctl.gateway.admission import AdmissionController
    from llmctl.gateway.engines import Engine, EnginePool

    async def scenario() -> int:
        pool = EnginePool([Engine(f"http://e{i}", ready=True) for i in range(3)])
        ctl = AdmissionController(
            AdmissionLimits(max_active=4, max_active_total=5, queue_max=100), pool
        )
        peak = 0

        async def user() -> None:
            nonlocal peak
            slot = await ctl.acquire()
            peak = max(peak, ctl.active)
            assert all(e.active <= 4 for e in pool)
            await asyncio.sleep(0.01)
            slot.release()

        await asyncio.gather(*(user() for _ in range(40)))
        return peak

    assert asyncio.run(scenario()) == 5


@pytest.mark.parametrize("policy", ["round_robin", "least_loaded"])
def test_policies_spread_uniform_load_evenly(
    make_gateway: MakeGateway, engines: list[FakeEngine], policy: str
) -> None:
    gw = pool_gateway(make_gateway, engines, max_active=4, queue_max=50, routing=policy)
    for _ in range(4):
        answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.05}) for _ in range(9)]))
        assert {a.status for a in answers} == {200}
    served = _served_by(engines)
    assert sum(served) == 36
    assert max(served) <= 1.3 * (36 / 3), served
    routed = gw.metric("llmctl_gateway_routed_total", reason=policy)
    assert routed == 36


def test_prefix_affinity_keeps_a_prefix_and_a_session_on_one_engine(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    gw = pool_gateway(make_gateway, engines, max_active=4, routing="prefix_affinity")
    system = "You are a careful assistant. " * 40  # a few chunks of shared prefix
    conversations = [
        [{"role": "system", "content": system}, {"role": "user", "content": f"question {i} " * 30}]
        for i in range(3)
    ]
    first = [run_post(gw.url, chat(messages=c)) for c in conversations]
    engine_of = [a.headers["X-Llmctl-Engine"] for a in first]
    # Later turns extend each conversation: they go where its prefix went.
    for conversation, engine in zip(conversations, engine_of, strict=True):
        longer = [
            *conversation,
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "more"},
        ]
        assert run_post(gw.url, chat(messages=longer)).headers["X-Llmctl-Engine"] == engine
    # A session id pins whatever the text.
    headers = {"X-Session-Id": "chat-42"}
    engines_seen = {
        run_post(
            gw.url, chat(messages=[{"role": "user", "content": f"turn {i}"}]), headers=headers
        ).headers["X-Llmctl-Engine"]
        for i in range(5)
    }
    assert len(engines_seen) == 1
    assert gw.metric("llmctl_gateway_routed_total", reason="affinity") >= 3 + 4


def test_a_dead_engine_costs_no_request_that_had_not_started(
    loop: LoopThread, make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    gw = pool_gateway(make_gateway, engines, max_active=2, queue_max=50, health_interval_s=30)
    loop.run(engines[0].stop())  # refuses connections now; the probe will not notice for 30 s
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.05}) for _ in range(12)]))
    assert [a.status for a in answers] == [200] * 12
    assert engines[0].completed == 0
    assert gw.metric("llmctl_gateway_retries_total", kind="connect") >= 1
    down = engines[0].url.removeprefix("http://")
    assert gw.metric("llmctl_gateway_engine_up", engine=down) == 0  # out of rotation at once
    gw.wait_idle()


def test_a_stream_that_had_started_ends_with_an_error_event(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    gw = pool_gateway(make_gateway, engines, max_active=2)
    ans = run_post(gw.url, chat({"drop_after": 2, "interval": 0.01}, stream=True))
    assert ans.status == 200
    assert b'"error"' in ans.body
    assert ans.body.rstrip().endswith(b"data: [DONE]")
    assert gw.metric("llmctl_gateway_retries_total") == 0
    gw.wait_idle()


def test_an_engine_that_comes_back_is_readmitted_gradually(
    loop: LoopThread, make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    gw = pool_gateway(make_gateway, engines, max_active=8, rejoin_ramp_s=2.0)
    name = engines[1].url.removeprefix("http://")
    port = engines[1].port
    loop.run(engines[1].stop())
    eventually(lambda: gw.metric("llmctl_gateway_engine_up", engine=name) == 0)
    loop.run(engines[1].start(port))
    eventually(lambda: gw.metric("llmctl_gateway_engine_up", engine=name) == 1)
    ramping = gw.metric("llmctl_gateway_engine_max_active", engine=name)
    assert 1 <= ramping < 8
    eventually(lambda: gw.metric("llmctl_gateway_engine_max_active", engine=name) == 8, timeout=5)


def test_an_engine_still_loading_when_the_gateway_starts_gets_its_full_limit_at_once(
    loop: LoopThread, make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    # Every start: the gateway probes before the engine listens. That engine is not coming back
    # from a failure, and a ramp here held MAX_ACTIVE 4 at 1 for the first seconds of a bench.
    port = engines[1].port
    loop.run(engines[1].stop())
    gw = make_gateway(upstreams=[engines[1].url], max_active=8, rejoin_ramp_s=30.0)
    eventually(lambda: gw.metric("llmctl_gateway_engine_up", engine=f"127.0.0.1:{port}") == 0)
    loop.run(engines[1].start(port))
    eventually(lambda: gw.metric("llmctl_gateway_engine_up", engine=f"127.0.0.1:{port}") == 1)
    assert gw.metric("llmctl_gateway_engine_max_active", engine=f"127.0.0.1:{port}") == 8
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.3}) for _ in range(8)]))
    assert [a.status for a in answers] == [200] * 8
    assert engines[1].max_in_flight == 8


def test_a_dns_upstream_becomes_the_engines_it_resolves_to(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    port = engines[0].port
    gw = make_gateway(upstream_dns=f"http://localhost:{port}", dns_interval_s=0.2)
    # localhost may also resolve to ::1, where nothing listens: that engine stays out of rotation.
    eventually(lambda: gw.metric("llmctl_gateway_engine_up", engine=f"127.0.0.1:{port}") == 1)
    ans = run_post(gw.url, chat())
    assert ans.status == 200
    assert ans.headers["X-Llmctl-Engine"] == f"127.0.0.1:{port}"


def test_engines_that_leave_drain_and_are_forgotten() -> None:
    from llmctl.gateway.engines import EnginePool

    pool = EnginePool.of(["http://10.0.0.1:8000", "http://10.0.0.2:8000"])
    left: list[str] = []
    pool.on_leave = lambda engine: left.append(engine.name)
    busy = pool.by_name("10.0.0.2:8000")
    assert busy is not None
    busy.active = 1
    joined, gone = pool.reconcile(["http://10.0.0.1:8000", "http://10.0.0.3:8000"])
    assert [e.name for e in joined] == ["10.0.0.3:8000"]
    assert [e.name for e in gone] == ["10.0.0.2:8000"]
    # Still listed while its request runs, but out of rotation; forgotten once it is done.
    assert [e.name for e in pool] == ["10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"]
    assert not busy.in_rotation()
    busy.active = 0
    pool.prune()
    assert [e.name for e in pool] == ["10.0.0.1:8000", "10.0.0.3:8000"]
    assert left == ["10.0.0.2:8000"]


def _name(engine: FakeEngine) -> str:
    return engine.url.removeprefix("http://")


def test_a_re_resolved_name_adds_engines_and_drains_those_it_drops(
    loop: LoopThread, make_gateway: MakeGateway
) -> None:
    first, second = FakeEngine(), FakeEngine()
    loop.run(first.start())
    loop.run(second.start(first.port, host="127.0.0.2"))  # the same port, another address
    addresses = ["127.0.0.1"]

    async def lookup(host: str, port: int) -> list[str]:
        return list(addresses)

    try:
        gw = make_gateway(
            upstream_dns=f"http://localhost:{first.port}", dns_interval_s=0.1, routing="round_robin"
        )
        monitor = gw.gateway.monitor
        assert monitor is not None
        monitor.lookup = lookup  # the answers a DNS server would give, changing below
        eventually(lambda: gw.metric("llmctl_gateway_engine_up") == 1)
        # The name gains an address: a new engine, probed, then routed to.
        addresses.append("127.0.0.2")
        eventually(lambda: gw.metric("llmctl_gateway_engine_up", engine=_name(second)) == 1)
        answers = asyncio.run(post_many(gw.url, [chat() for _ in range(4)]))
        assert Counter(a.headers["X-Llmctl-Engine"] for a in answers) == {
            _name(first): 2,
            _name(second): 2,
        }
        # It loses one while that engine serves a request: the request ends normally, new ones
        # go to the other engine, and the one that left is forgotten once it is idle.
        with ThreadPoolExecutor(1) as client:
            slow = client.submit(run_post, gw.url, chat({"delay": 0.8}))
            eventually(lambda: first.in_flight + second.in_flight == 1)
            busy, idle = (first, second) if first.in_flight else (second, first)
            addresses[:] = [idle.host]
            pool = gw.gateway.pool
            eventually(lambda: not next(e for e in pool if e.name == _name(busy)).member)
            quick = [run_post(gw.url, chat()) for _ in range(3)]
            assert {a.headers["X-Llmctl-Engine"] for a in quick} == {_name(idle)}
            assert slow.result(5).status == 200
        eventually(lambda: [e.name for e in pool] == [_name(idle)])
        assert gw.metric("llmctl_gateway_engine_active_requests") == 0
    finally:
        loop.run(first.stop())
        loop.run(second.stop())


def _vllm_page(waiting: float, kv: float) -> bytes:
    return (
        f'vllm:num_requests_waiting{{engine="0",model_name="m"}} {waiting}\n'
        f'vllm:kv_cache_usage_perc{{engine="0",model_name="m"}} {kv}\n'
    ).encode()


def test_least_loaded_weighs_each_engines_own_queue_and_kv_cache(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    engines[0].metrics_body = _vllm_page(waiting=6, kv=0.2)  # score 0.5*6/4 + 0.5*0.2 = 0.85
    engines[1].metrics_body = _vllm_page(waiting=0, kv=0.9)  # 0.45
    engines[2].metrics_body = _vllm_page(waiting=0, kv=0.1)  # 0.05
    gw = pool_gateway(
        make_gateway, engines, max_active=4, routing="least_loaded", poll_interval_s=0.05
    )
    eventually(lambda: all(e.polled for e in gw.gateway.pool))
    one_at_a_time = {run_post(gw.url, chat()).headers["X-Llmctl-Engine"] for _ in range(3)}
    assert one_at_a_time == {_name(engines[2])}
    # Two in flight at engines[2] (0.05 + 2/4) outweigh engines[1]'s full KV cache (0.45).
    asyncio.run(post_many(gw.url, [chat({"delay": 0.3}) for _ in range(3)]))
    assert [e.max_in_flight for e in engines] == [0, 1, 2]
    # The engine's signals change, and so does the choice, with no request scraping anything.
    engines[2].metrics_body = _vllm_page(waiting=20, kv=1.0)
    eventually(lambda: run_post(gw.url, chat()).headers["X-Llmctl-Engine"] == _name(engines[1]))


def test_affinity_yields_to_the_least_loaded_engine_beyond_the_slack(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    gw = pool_gateway(make_gateway, engines, max_active=2, routing="prefix_affinity")
    shared = [{"role": "system", "content": "A long shared instruction. " * 40}]
    first = run_post(gw.url, chat(messages=shared))
    home = first.headers["X-Llmctl-Engine"]
    # Two at once with the same prefix: the second would make its engine one request (0.5 of
    # an engine) busier than the idle ones, beyond the 0.25 slack, so it goes elsewhere.
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.3}, messages=shared)] * 2))
    served = sorted(a.headers["X-Llmctl-Engine"] for a in answers)
    assert home in served
    assert len(set(served)) == 2
    assert gw.metric("llmctl_gateway_routed_total", reason="affinity_overloaded") == 1


def test_the_access_log_names_the_engine_of_each_request(
    make_gateway: MakeGateway, engines: list[FakeEngine]
) -> None:
    gw = pool_gateway(make_gateway, engines[:2], routing="round_robin")
    access = gw.gateway.access_log
    assert access is not None
    access.stream = io.StringIO()
    answers = [run_post(gw.url, chat()) for _ in range(2)]
    assert len({a.headers["X-Llmctl-Engine"] for a in answers}) == 2
    eventually(lambda: access.flush() or access.stream.getvalue().count("\n") == 2)
    lines = access.stream.getvalue().splitlines()
    for answer, line in zip(answers, lines, strict=True):
        assert f"request_id={answer.headers['X-Request-Id']} " in line
        assert f" engine={answer.headers['X-Llmctl-Engine']} " in line
