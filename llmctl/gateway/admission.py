"""Exact FIFO admission control: at most MAX_ACTIVE requests at the engine, a bounded queue behind it.

One controller lives in one process on one event loop; it needs no locks because every state change
happens between two awaits. The count of active requests is raised at the moment a slot is granted
(to the waiter at the head of the queue, or to the arrival itself), so the limit holds at every instant,
and `Slot.release()` is idempotent so every exit path can call it without double counting.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any

from llmctl.core.config import AdmissionLimits


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

    __slots__ = ("_controller", "_released", "admitted_at", "waited_s")

    def __init__(
        self, controller: AdmissionController, admitted_at: float, waited_s: float
    ) -> None:
        self._controller = controller
        self._released = False
        self.admitted_at = admitted_at
        self.waited_s = waited_s

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._controller._release(time.monotonic() - self.admitted_at)


class AdmissionController:
    """FIFO admission with live limits (see `update`)."""

    # Weight of the newest service time in the moving average behind Retry-After.
    _EWMA_ALPHA = 0.2

    def __init__(self, limits: AdmissionLimits) -> None:
        self._limits = limits
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._service_s: float | None = None

    @property
    def limits(self) -> AdmissionLimits:
        return self._limits

    @property
    def active(self) -> int:
        return self._active

    @property
    def queued(self) -> int:
        return len(self._waiters)

    def update(self, changes: dict[str, Any]) -> AdmissionLimits:
        """Apply a partial change, as JSON gives it: each value of its own JSON type only (strict:
        no "8" or true for a count), within the fields' bounds (else ValidationError, nothing
        changes). Raising MAX_ACTIVE admits waiters at once; lowering it lets in-flight requests
        finish and admits no one until the count is below the new limit. Requests already waiting
        keep their place when QUEUE_MAX or the mode change."""
        merged = {**self._limits.model_dump(), **changes}
        self._limits = AdmissionLimits.model_validate(merged, strict=True)
        self._grant_waiters()
        return self._limits

    def retry_after(self, ahead: int | None = None) -> int:
        """Seconds until a new arrival would likely get a slot: the queue ahead of it drained by
        MAX_ACTIVE parallel slots at the observed mean service time (1 s before any observation)."""
        if self._service_s is None:
            return 1
        ahead = self.queued if ahead is None else ahead
        estimate = (ahead + 1) * self._service_s / self._limits.max_active
        return max(1, min(3600, math.ceil(estimate)))

    async def acquire(self) -> Slot:
        """Wait for a slot in FIFO order, or raise AdmissionRefusedError. Cancellation leaves no trace."""
        arrived = time.monotonic()
        limits = self._limits
        if self._active < limits.max_active and not self._waiters:
            self._active += 1
            return Slot(self, arrived, 0.0)
        if limits.queue_mode == "reject":
            raise AdmissionRefusedError("rejected", 429, self.retry_after(), 0.0)
        if len(self._waiters) >= limits.queue_max:
            raise AdmissionRefusedError("queue_full", 429, self.retry_after(), 0.0)

        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(limits.queue_timeout_s):
                await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                # Granted in the same tick the timer fired: the slot is ours, so keep it.
                now = time.monotonic()
                return Slot(self, now, now - arrived)
            waited = time.monotonic() - arrived
            raise AdmissionRefusedError("queue_timeout", 503, self.retry_after(), waited) from None
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Granted, but our task was cancelled before it could use the slot: pass it on.
                self._release(None)
            raise
        finally:
            if not waiter.done():
                waiter.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)
        now = time.monotonic()
        return Slot(self, now, now - arrived)

    def _release(self, service_s: float | None) -> None:
        self._active -= 1
        if service_s is not None:
            prev = self._service_s
            self._service_s = (
                service_s if prev is None else prev + self._EWMA_ALPHA * (service_s - prev)
            )
        self._grant_waiters()

    def _grant_waiters(self) -> None:
        waiters = self._waiters
        while waiters and self._active < self._limits.max_active:
            waiter = waiters.popleft()
            if waiter.done():
                continue
            self._active += 1
            waiter.set_result(None)
