"""Exact admission control over one or several engines: at most MAX_ACTIVE requests at each engine
(its own limit when it has one), at most `max_active_total` in all when that cap is set, at most a
tenant's own `max_concurrent`, and a bounded queue behind them: first come first served, or with
tenants, priority classes and weighted fair sharing (fairness.py decides who is next).

One controller lives in one process on one event loop; it needs no locks because every state change
happens between two awaits. An engine's count is raised at the moment a slot on it is granted (to
the waiter at the head of the queue, or to the arrival itself), so no limit is ever exceeded, and
`Slot.release()` is idempotent so every exit path can call it without double counting. Which engine
a granted request goes to is the router's choice among the engines with room (see routing.py); a
waiter that must avoid an engine (a retry after that engine failed), or whose tenant is at its own
limit, lets the ones behind it pass.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Any

from llmctl.core.config import AdmissionLimits
from llmctl.gateway.engines import Engine, EnginePool
from llmctl.gateway.fairness import Entry, FifoQueue, Queue
from llmctl.gateway.tenants import Tenant

# (candidates with room, the waiter's routing hint) -> the engine to use
Router = Callable[[list[Engine], Any], Engine]


def first_engine(candidates: list[Engine], hint: Any) -> Engine:
    return candidates[0]


class AdmissionRefusedError(Exception):
    """A request that will not be admitted: `reason` is the metric reason and the error code."""

    def __init__(self, reason: str, status: int, retry_after: int, waited_s: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        self.waited_s = waited_s


class Slot:
    """One granted engine slot; `release()` gives it back exactly once, however often it is called."""

    __slots__ = ("_controller", "_released", "admitted_at", "engine", "rank", "tenant", "waited_s")

    def __init__(
        self,
        controller: AdmissionController,
        grant: _Grant,
        admitted_at: float,
        waited_s: float,
    ) -> None:
        self._controller = controller
        self._released = False
        self.engine = grant.engine
        self.tenant = grant.tenant
        self.rank = grant.rank
        self.admitted_at = admitted_at
        self.waited_s = waited_s

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._controller._release(self, time.monotonic() - self.admitted_at)


class _Grant:
    __slots__ = ("engine", "rank", "tenant")

    def __init__(self, engine: Engine, tenant: Tenant | None, rank: int) -> None:
        self.engine, self.tenant, self.rank = engine, tenant, rank


class _Waiter:
    __slots__ = ("exclude", "future", "grant", "hint", "tenant")

    def __init__(
        self,
        future: asyncio.Future[None],
        hint: Any,
        exclude: frozenset[str],
        tenant: Tenant | None,
    ) -> None:
        self.future = future
        self.hint = hint
        self.exclude = exclude
        self.tenant = tenant
        self.grant: _Grant | None = None


def single_engine_pool() -> EnginePool:
    """A pool of one engine assumed ready (for a controller used on its own, as in tests)."""
    return EnginePool([Engine("http://engine", name="engine", ready=True)])


class AdmissionController:
    """FIFO admission over `pool` with live limits (see `update`)."""

    # Weight of the newest service time in the moving average behind Retry-After.
    _EWMA_ALPHA = 0.2

    def __init__(
        self,
        limits: AdmissionLimits,
        pool: EnginePool | None = None,
        router: Router = first_engine,
        queue: Queue | None = None,
    ) -> None:
        self._limits = limits
        self.pool = pool if pool is not None else single_engine_pool()
        self.router = router
        self.queue: Queue = queue if queue is not None else FifoQueue()
        self._active = 0
        self._service_s: float | None = None

    @property
    def limits(self) -> AdmissionLimits:
        return self._limits

    @property
    def active(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return len(self.queue)

    def update(self, changes: dict[str, Any]) -> AdmissionLimits:
        """Apply a partial change, as JSON gives it: each value of its own JSON type only (strict:
        no "8" or true for a count), within the fields' bounds (else ValidationError, nothing
        changes). Raising MAX_ACTIVE admits waiters at once; lowering it lets in-flight requests
        finish and admits no one until the count is below the new limit. Requests already waiting
        keep their place when QUEUE_MAX or the mode change."""
        merged = {**self._limits.model_dump(), **changes}
        self._limits = AdmissionLimits.model_validate(merged, strict=True)
        self.wake()
        return self._limits

    def wake(self) -> None:
        """Grant what can be granted now (after a limit change or an engine joining rotation)."""
        self._grant_waiters()

    def capacity(self) -> int:
        """Requests all engines in rotation may hold at once, within the global cap."""
        limits = self._limits
        total = self.pool.capacity(limits.max_active)
        if limits.max_active_total is not None:
            total = min(total, limits.max_active_total)
        return total

    def retry_after(self, ahead: int | None = None) -> int:
        """Seconds until a new arrival would likely get a slot: the queue ahead of it drained by
        every slot in parallel at the observed mean service time (1 s before any observation)."""
        if self._service_s is None:
            return 1
        ahead = self.queued if ahead is None else ahead
        estimate = (ahead + 1) * self._service_s / max(1, self.capacity())
        return max(1, min(3600, math.ceil(estimate)))

    def _room_total(self) -> bool:
        cap = self._limits.max_active_total
        return cap is None or self._active < cap

    @staticmethod
    def _tenant_room(tenant: Tenant | None) -> bool:
        return (
            tenant is None or tenant.max_concurrent is None or tenant.active < tenant.max_concurrent
        )

    def _grant(
        self, hint: Any, exclude: frozenset[str], tenant: Tenant | None, rank: int
    ) -> _Grant | None:
        """A slot for a request now, counted at once; None when no engine has room for it."""
        if not (self._room_total() and self._tenant_room(tenant)):
            return None
        candidates = self.pool.candidates(self._limits.max_active, exclude)
        if not candidates:
            return None
        engine = self.router(candidates, hint)
        engine.active += 1
        engine.routed += 1
        self._active += 1
        if tenant is not None:
            tenant.active += 1
        self.queue.hold(rank, 1, time.monotonic())
        return _Grant(engine, tenant, rank)

    async def acquire(
        self,
        hint: Any = None,
        *,
        tenant: Tenant | None = None,
        rank: int = 0,
        exclude: frozenset[str] = frozenset(),
        front: bool = False,
    ) -> Slot:
        """Wait for a slot, or raise AdmissionRefusedError. `hint` goes to the router; `tenant`
        and `rank` (its class) place the request in a fair queue; `exclude` names engines not to
        use; `front` queues ahead of everyone (a retry, which was admitted once already).
        Cancellation leaves no trace."""
        arrived = time.monotonic()
        limits = self._limits
        if not any(e.name not in exclude for e in self.pool.routable()):
            raise AdmissionRefusedError("engine_unavailable", 503, 1, 0.0)
        if front or (not len(self.queue) and self.queue.admits(rank, self.capacity, arrived)):
            grant = self._grant(hint, exclude, tenant, rank)
            if grant is not None:
                return Slot(self, grant, arrived, 0.0)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), hint, exclude, tenant)
        entry = Entry(
            tenant.name if tenant is not None else "",
            rank,
            tenant.weight if tenant is not None else 1.0,
            arrived,
            waiter,
        )
        if not front:
            if limits.queue_mode == "reject":
                raise AdmissionRefusedError("rejected", 429, self.retry_after(), 0.0)
            if len(self.queue) >= limits.queue_max:
                # Full: refuse the arrival, or (fair queue) the waiter it takes the place of.
                victim = self.queue.displace(entry) if len(self.queue) else None
                if victim is None:
                    raise AdmissionRefusedError("queue_full", 429, self.retry_after(), 0.0)
                pushed: _Waiter = victim.item
                if not pushed.future.done():  # done: it was leaving anyway (cancelled)
                    waited = arrived - victim.arrived
                    pushed.future.set_exception(
                        AdmissionRefusedError("queue_full", 429, self.retry_after(), waited)
                    )
        self.queue.push(entry, front=front)
        self._grant_waiters()  # a slot may be free for it (others wait only for their tenant)
        future = waiter.future
        try:
            if not future.done():
                async with asyncio.timeout(limits.queue_timeout_s):
                    await future
        except TimeoutError:
            if future.done() and not future.cancelled() and waiter.grant is not None:
                # Granted in the same tick the timer fired: the slot is ours, so keep it.
                now = time.monotonic()
                return Slot(self, waiter.grant, now, now - arrived)
            waited = time.monotonic() - arrived
            raise AdmissionRefusedError("queue_timeout", 503, self.retry_after(), waited) from None
        except BaseException:
            if future.done() and not future.cancelled() and waiter.grant is not None:
                # Granted, but our task was cancelled before it could use the slot: pass it on.
                self._give_back(waiter.grant, None)
            raise
        finally:
            if not future.done():
                future.cancel()
            self.queue.remove(entry)
        if waiter.grant is None:
            raise RuntimeError("a waiter was woken without a slot")
        now = time.monotonic()
        return Slot(self, waiter.grant, now, now - arrived)

    def _release(self, slot: Slot, service_s: float | None) -> None:
        self._give_back(_Grant(slot.engine, slot.tenant, slot.rank), service_s)

    def _give_back(self, grant: _Grant, service_s: float | None) -> None:
        engine = grant.engine
        engine.active -= 1
        self._active -= 1
        if grant.tenant is not None:
            grant.tenant.active -= 1
        self.queue.hold(grant.rank, -1, time.monotonic())
        if service_s is not None:
            prev = self._service_s
            self._service_s = (
                service_s if prev is None else prev + self._EWMA_ALPHA * (service_s - prev)
            )
        if not engine.member and engine.active == 0:
            self.pool.prune()
        self._grant_waiters()

    def _grant_waiters(self) -> None:
        queue = self.queue
        limit = self._limits.max_active
        # No engine with room: nobody can be granted (and the queue is not scanned for nothing).
        if not len(queue) or not self._room_total() or not self.pool.candidates(limit):
            return
        now = time.monotonic()
        capacity = self.capacity()

        def can_take(entry: Entry) -> bool:
            waiter: _Waiter = entry.item
            if waiter.future.done() or not self._tenant_room(waiter.tenant):
                return False
            return bool(self.pool.candidates(limit, waiter.exclude))

        while len(queue) and self._room_total():
            entry = queue.pick(can_take, now, capacity)
            if entry is None:
                return
            waiter = entry.item
            grant = self._grant(waiter.hint, waiter.exclude, waiter.tenant, entry.rank)
            if grant is None:  # can_take said yes: only a bug gets here
                raise RuntimeError("a waiter that could take a slot got none")
            waiter.grant = grant
            waiter.future.set_result(None)
