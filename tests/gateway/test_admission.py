"""Admission: the limit, the bounded FIFO queue, reject mode, timeouts and Retry-After."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from llmctl.core.config import AdmissionLimits
from llmctl.gateway.admission import AdmissionController, AdmissionRefusedError
from tests.gateway.client import chat, post_many, run_post
from tests.gateway.conftest import MakeGateway
from tests.gateway.upstream import FakeEngine
from tests.support import eventually_async

# --- over real sockets -------------------------------------------------------------------------


def test_engine_never_sees_more_than_max_active(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_active=3, queue_max=64)
    bodies = [chat({"tokens": 3, "interval": 0.02}, stream=i % 2 == 0) for i in range(24)]
    answers = asyncio.run(post_many(gw.url, bodies))
    assert [a.status for a in answers] == [200] * 24
    assert engine.max_in_flight == 3
    assert engine.started == 24
    gw.wait_idle()


def test_exactly_max_active_plus_queue_max_succeed_when_many_arrive(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_active=3, queue_max=5)
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.4}) for _ in range(20)]))
    statuses = Counter(a.status for a in answers)
    assert statuses == {200: 8, 429: 12}
    refused = [a for a in answers if a.status == 429]
    assert {a.error_code for a in refused} == {"queue_full"}
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
    assert engine.max_in_flight == 3
    assert gw.metric("llmctl_gateway_requests_total", reason="queue_full") == 12
    gw.wait_idle()


def test_reject_mode_admits_when_idle_and_rejects_when_full(make_gateway: MakeGateway) -> None:
    gw = make_gateway(max_active=2, queue_mode="reject", queue_max=10)
    assert run_post(gw.url, chat()).status == 200
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.4}) for _ in range(6)]))
    assert Counter(a.status for a in answers) == {200: 2, 429: 4}
    assert {a.error_code for a in answers if a.status == 429} == {"rejected"}
    assert run_post(gw.url, chat()).status == 200
    gw.wait_idle()


def test_queue_max_zero_means_no_queue(make_gateway: MakeGateway, engine: FakeEngine) -> None:
    gw = make_gateway(max_active=2, queue_max=0)
    assert run_post(gw.url, chat()).status == 200
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 0.4}) for _ in range(7)]))
    assert Counter(a.status for a in answers) == {200: 2, 429: 5}
    assert gw.metric("llmctl_gateway_queue_max") == 0
    gw.wait_idle()


def test_queue_timeout_is_503_with_retry_after(make_gateway: MakeGateway) -> None:
    gw = make_gateway(max_active=1, queue_max=4, queue_timeout_s=0.3)
    answers = asyncio.run(post_many(gw.url, [chat({"delay": 1.0}), chat(), chat()]))
    assert sorted(a.status for a in answers) == [200, 503, 503]
    for ans in answers:
        if ans.status == 503:
            assert ans.error_code == "queue_timeout"
            assert int(ans.headers["Retry-After"]) >= 1
            assert float(ans.headers["X-Queue-Wait-Ms"]) >= 290
    assert gw.metric("llmctl_gateway_requests_total", status="503", reason="queue_timeout") == 2
    # The queue-wait histogram holds admitted requests only: the one that was served at once.
    assert gw.metric("llmctl_gateway_queue_wait_seconds_count") == 1
    gw.wait_idle()


# --- the controller itself ----------------------------------------------------------------------


def _controller(**limits: object) -> AdmissionController:
    return AdmissionController(AdmissionLimits.model_validate(limits))


def test_waiters_are_admitted_in_arrival_order() -> None:
    async def scenario() -> list[int]:
        ctl = _controller(max_active=1, queue_max=10)
        first = await ctl.acquire()
        order: list[int] = []

        async def wait(i: int) -> None:
            slot = await ctl.acquire()
            order.append(i)
            await asyncio.sleep(0.001)
            slot.release()

        tasks = [asyncio.create_task(wait(i)) for i in range(6)]
        await eventually_async(lambda: ctl.queued == 6)  # all queued: the order is the queue's
        first.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == list(range(6))


def test_cancelled_waiters_leave_no_phantom_entries_and_limit_holds() -> None:
    async def scenario() -> None:
        ctl = _controller(max_active=2, queue_max=100, queue_timeout_s=5)
        peak = 0

        async def user(i: int) -> None:
            nonlocal peak
            slot = await ctl.acquire()
            try:
                peak = max(peak, ctl.active)
                await asyncio.sleep(0.002 * (i % 3))
            finally:
                slot.release()

        tasks = [asyncio.create_task(user(i)) for i in range(60)]
        await asyncio.sleep(0)
        for task in tasks[5::4]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert peak <= 2
        assert ctl.active == 0
        assert ctl.queued == 0
        # Full capacity is available again at once.
        slots = [await asyncio.wait_for(ctl.acquire(), 0.1) for _ in range(2)]
        assert ctl.active == 2
        for slot in slots:
            slot.release()

    asyncio.run(scenario())


def test_granted_then_cancelled_waiter_passes_its_slot_on() -> None:
    async def scenario() -> None:
        ctl = _controller(max_active=1, queue_max=5)
        holder = await ctl.acquire()
        doomed = asyncio.create_task(ctl.acquire())
        nxt = asyncio.create_task(ctl.acquire())
        await asyncio.sleep(0)
        holder.release()  # grants `doomed` its slot...
        doomed.cancel()  # ...which it never gets to use
        await asyncio.gather(doomed, return_exceptions=True)
        slot = await asyncio.wait_for(nxt, 0.5)
        assert ctl.active == 1
        slot.release()
        assert ctl.active == 0
        assert ctl.queued == 0

    asyncio.run(scenario())


def test_release_is_idempotent() -> None:
    async def scenario() -> None:
        ctl = _controller(max_active=1)
        slot = await ctl.acquire()
        slot.release()
        slot.release()
        assert ctl.active == 0

    asyncio.run(scenario())


def test_retry_after_grows_with_service_time_and_queue() -> None:
    async def scenario() -> tuple[int, int]:
        ctl = _controller(max_active=1, queue_max=50)
        assert ctl.retry_after() == 1  # nothing observed yet
        slot = await ctl.acquire()
        await asyncio.sleep(0.5)
        slot.release()
        short = ctl.retry_after()
        holder = await ctl.acquire()
        waiters = [asyncio.create_task(ctl.acquire()) for _ in range(10)]
        await asyncio.sleep(0)
        ctl.update({"queue_max": 10})  # now full: the next arrival is refused with an estimate
        with pytest.raises(AdmissionRefusedError) as refused:
            await ctl.acquire()
        long = refused.value.retry_after
        for task in waiters:
            task.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)
        holder.release()
        return short, long

    short, long = asyncio.run(scenario())
    assert short == 1
    assert 4 <= long <= 9, long
