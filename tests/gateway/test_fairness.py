"""The queue disciplines and the rate limits as pure bookkeeping: who gets the next slot, and when a
tenant is refused."""

from __future__ import annotations

from collections import Counter

import pytest

from llmctl.gateway.fairness import RESERVE_IDLE_S, ClassPolicy, Entry, FairQueue, FifoQueue
from llmctl.gateway.ratelimit import WindowLimit, duration_text

CLASSES = [ClassPolicy("interactive", 0), ClassPolicy("batch", 1, share=0.25, aging_s=30.0)]


def _yes(entry: Entry) -> bool:
    return True


def _entry(tenant: str, rank: int = 0, weight: float = 1.0, arrived: float = 0.0) -> Entry:
    return Entry(tenant, rank, weight, arrived, item=f"{tenant}@{arrived}")


def _drain(queue: FairQueue, n: int, now: float = 0.0, capacity: int = 100) -> list[Entry]:
    out = []
    for _ in range(n):
        entry = queue.pick(_yes, now, capacity)
        assert entry is not None
        out.append(entry)
    return out


def test_fifo_serves_in_order_and_a_retry_first() -> None:
    queue = FifoQueue()
    a, b, retry = _entry("x"), _entry("y"), _entry("z")
    queue.push(a)
    queue.push(b)
    queue.push(retry, front=True)
    assert [queue.pick(_yes, 0, 1) for _ in range(3)] == [retry, a, b]
    assert queue.pick(_yes, 0, 1) is None


def test_one_request_of_another_tenant_waits_behind_at_most_one_of_a_flood() -> None:
    queue = FairQueue(CLASSES)
    for i in range(1000):
        queue.push(_entry("flood", arrived=i * 0.001))
    served = _drain(queue, 10)  # the flood is being served
    single = _entry("single", arrived=2.0)
    queue.push(single)
    after = _drain(queue, 2)
    assert single in after  # next or the one after: one slot's service time at most
    assert all(e.tenant == "flood" for e in served)


@pytest.mark.parametrize(("weights", "expected"), [((1, 1), 1.0), ((3, 1), 3.0)])
def test_saturating_tenants_share_by_weight(weights: tuple[int, int], expected: float) -> None:
    queue = FairQueue(CLASSES)
    for i in range(400):
        queue.push(_entry("a", weight=weights[0], arrived=i))
        queue.push(_entry("b", weight=weights[1], arrived=i))
    served = Counter(e.tenant for e in _drain(queue, 200))
    assert served["a"] / served["b"] == pytest.approx(expected, rel=0.05)


def test_interactive_goes_first_but_batch_keeps_its_share() -> None:
    queue = FairQueue(CLASSES)
    for i in range(10):
        queue.push(_entry("nightly", rank=1, arrived=i))
    for i in range(10):
        queue.push(_entry("chat", rank=0, arrived=10 + i))
    # 8 slots in all; batch holds none: its 25 % share (2 slots) goes to it first...
    first = queue.pick(_yes, 20, capacity=8)
    assert first is not None
    assert first.rank == 1
    queue.hold(1, 1, 0.0)
    second = queue.pick(_yes, 20, capacity=8)
    assert second is not None
    assert second.rank == 1
    queue.hold(1, 1, 0.0)
    # ...then every waiting interactive request comes before the rest of batch.
    rest = [queue.pick(_yes, 20, capacity=8) for _ in range(10)]
    assert all(e is not None and e.rank == 0 for e in rest)


def test_lower_classes_leave_a_reserve_free_while_its_class_is_in_use() -> None:
    queue = FairQueue(
        [ClassPolicy("interactive", 0, reserve=0.25), ClassPolicy("batch", 1, aging_s=30.0)]
    )
    # 8 slots: interactive keeps 2 free for itself. Batch holds 6; interactive used one at 0 s.
    for _ in range(6):
        queue.hold(1, 1, 0.0)
    queue.hold(0, 1, 0.0)
    queue.hold(0, -1, 1.0)
    assert not queue.admits(1, lambda: 8, 2.0)
    assert queue.admits(0, lambda: 8, 2.0)
    waiting = _entry("nightly", rank=1, arrived=2.0)
    queue.push(waiting)
    assert queue.pick(_yes, 2.0, 8) is None
    chat = _entry("chat", rank=0, arrived=3.0)
    queue.push(chat)
    assert queue.pick(_yes, 3.0, 8) is chat
    queue.hold(0, 1, 3.0)
    # One slot free, and interactive still lacks one of its two: batch keeps waiting...
    assert queue.pick(_yes, 4.0, 8) is None
    queue.hold(0, 1, 4.0)
    queue.hold(1, -1, 4.0)
    # ...until interactive holds its reserve: then batch may take any free slot.
    assert queue.pick(_yes, 4.0, 8) is waiting
    queue.hold(1, 1, 4.0)
    # A request that waited its ageing time is served as interactive, reserve or not.
    old = _entry("nightly", rank=1, arrived=5.0)
    queue.push(old)
    queue.hold(0, -1, 6.0)
    queue.hold(0, -1, 6.0)
    assert queue.pick(_yes, 10.0, 8) is None
    assert queue.pick(_yes, 35.0, 8) is old
    queue.hold(1, 1, 35.0)
    # Interactive idle for RESERVE_IDLE_S: its reserve lapses.
    assert not queue.admits(1, lambda: 8, 6.0 + RESERVE_IDLE_S - 1)
    assert queue.admits(1, lambda: 8, 6.0 + RESERVE_IDLE_S)


def test_a_reserve_never_takes_every_slot() -> None:
    queue = FairQueue([ClassPolicy("interactive", 0, reserve=0.9), ClassPolicy("batch", 1)])
    queue.hold(0, 1, 0.0)
    queue.hold(0, -1, 0.0)
    assert queue.admits(1, lambda: 1, 0.0)  # one slot: the reserve rounds to it, and one is left
    assert queue.admits(1, lambda: 10, 0.0)  # 9 kept of 10: the tenth is batch's
    queue.hold(1, 1, 0.0)
    assert not queue.admits(1, lambda: 10, 0.0)
    assert FifoQueue().admits(5, lambda: 1, 0.0)


def test_ageing_serves_a_long_waiting_batch_request_before_new_interactive_ones() -> None:
    queue = FairQueue([ClassPolicy("interactive", 0), ClassPolicy("batch", 1, aging_s=30.0)])
    old = _entry("nightly", rank=1, arrived=0.0)
    queue.push(old)
    for i in range(5):
        queue.push(_entry("chat", rank=0, arrived=40.0 + i))
    early = queue.pick(_yes, 10.0, 4)  # at 10 s: interactive first (no share for batch here)
    assert early is not None
    assert early.rank == 0
    assert queue.pick(_yes, 31.0, 4) is old  # after 30 s of waiting it is served


def test_a_tenant_at_its_own_limit_lets_others_pass_and_removal_keeps_order() -> None:
    queue = FairQueue(CLASSES)
    blocked = [_entry("capped", arrived=i) for i in range(3)]
    for entry in blocked:
        queue.push(entry)
    other = _entry("other", arrived=5)
    queue.push(other)
    assert queue.pick(lambda e: e.tenant != "capped", 0, 8) is other
    queue.remove(blocked[0])
    assert queue.pick(_yes, 0, 8) is blocked[1]
    assert len(queue) == 1


def test_window_limit_refuses_only_at_the_limit_and_knows_when_to_retry() -> None:
    limit = WindowLimit(100, window_s=60)
    first = limit.charge(60, now=0.0)
    assert limit.allows(1.0)
    limit.charge(50, now=10.0)  # 110 >= 100: the next request waits
    assert not limit.allows(11.0)
    assert limit.wait_s(11.0) == pytest.approx(49.0)  # the 60 leaves the window at 60 s
    first.correct(20, now=12.0)  # the request used 20, not 60: under the limit again
    assert limit.allows(12.0)
    assert limit.used(12.0) == pytest.approx(70)
    assert limit.used(61.0) == pytest.approx(50)  # the first charge left the window
    assert limit.reset_s(61.0) == pytest.approx(9.0)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.35, "350ms"), (1.5, "1.5s"), (59.95, "60s"), (360, "6m0s")]
)
def test_reset_durations_read_like_openai(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def _full(lines: dict[tuple[str, int, float], int]) -> tuple[FairQueue, dict[str, list[Entry]]]:
    """A fair queue holding `count` waiters of each (tenant, rank, weight)."""
    queue = FairQueue(CLASSES)
    held: dict[str, list[Entry]] = {}
    arrived = 0.0
    for (tenant, rank, weight), count in lines.items():
        for _ in range(count):
            entry = _entry(tenant, rank, weight, arrived)
            queue.push(entry)
            held.setdefault(tenant, []).append(entry)
            arrived += 1.0
    return queue, held


# (waiters by (tenant, rank, weight), the arrival (tenant, rank, weight), who is pushed out)
DISPLACE_CASES = [
    ({("nightly", 1, 1.0): 8}, ("chat", 0, 1.0), "nightly"),  # a lower class makes room
    ({("chat", 0, 1.0): 8}, ("nightly", 1, 1.0), None),  # never a higher class
    ({("flood", 0, 1.0): 8}, ("single", 0, 1.0), "flood"),  # the longest line, same class
    ({("flood", 0, 1.0): 8}, ("flood", 0, 1.0), None),  # not its own line
    ({("a", 0, 1.0): 4, ("b", 0, 1.0): 4}, ("a", 0, 1.0), None),  # would be longer than b's
    ({("a", 0, 1.0): 5, ("b", 0, 1.0): 3}, ("b", 0, 1.0), "a"),
    ({("heavy", 0, 3.0): 6, ("light", 0, 1.0): 1}, ("light", 0, 1.0), None),  # 6/3 <= 2/1
    ({("heavy", 0, 3.0): 6}, ("light", 0, 1.0), "heavy"),  # 6/3 > 1/1
    ({("chat", 0, 1.0): 2, ("nightly", 1, 1.0): 6}, ("chat", 0, 1.0), "nightly"),
]


@pytest.mark.parametrize(("lines", "arrival", "pushed"), DISPLACE_CASES)
def test_a_full_queue_pushes_out_the_newest_of_the_longest_lower_line(
    lines: dict[tuple[str, int, float], int], arrival: tuple[str, int, float], pushed: str | None
) -> None:
    queue, held = _full(lines)
    size = len(queue)
    victim = queue.displace(_entry(*arrival, arrived=100.0))
    if pushed is None:
        assert victim is None
        assert len(queue) == size
        return
    assert victim is held[pushed][-1]  # the newest of that line
    assert len(queue) == size - 1
    assert victim not in list(queue.entries())
    # The tenant gets back the virtual time it had reserved: its next request takes that tag.
    again = _entry(pushed, victim.rank, victim.weight, 101.0)
    queue.push(again)
    assert again.tag == victim.tag


def test_fifo_never_pushes_anyone_out() -> None:
    queue = FifoQueue()
    queue.push(_entry("x"))
    assert queue.displace(_entry("y")) is None
    assert len(queue) == 1
