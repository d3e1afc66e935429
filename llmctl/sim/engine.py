"""The engine loop: runs scheduler steps on a simulated clock and wakes the waiting clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Coroutine, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from llmctl.sim.gpu import GpuTelemetry
from llmctl.sim.metrics import EngineMetrics
from llmctl.sim.profiles import EngineProfile
from llmctl.sim.scenario import Conditions, ConditionsClock, Scenario
from llmctl.sim.scheduler import FINISHED, Scheduler, SimRequest, StepResult
from llmctl.sim.text import TokenStream
from llmctl.sim.timing import output_seconds, step_seconds

log = logging.getLogger(__name__)

# How far the simulated clock may fall behind the wall clock before it gives up catching up
# (timer granularity and a busy CPU make single steps late; the average rate stays right).
_MAX_LAG_S = 0.05
_MAX_STEPS_WITHOUT_YIELD = 8
# The per-request overhead varies by +-50 % around the profile's request_s (seeded per request):
# with a fixed overhead, a closed loop's requests would reach the engine at the same phase of every
# step, and the time to first token would hinge on that phase instead of averaging over it.
_REQUEST_JITTER = 0.5
# The event loop's timers fire on whole milliseconds (uvloop), which would put a +-0.5 ms error
# on every token of a 7 ms step: the loop sleeps all but the last _FINE_S of a wait and a helper
# thread (time.sleep, ~0.1 ms precise) the rest.
_FINE_S = 0.002


def _notify(req: SimRequest) -> None:
    waiter = req.waiter
    if waiter is not None:
        req.waiter = None
        if not waiter.done():
            waiter.set_result(None)


class EngineFailedError(RuntimeError):
    """The engine loop died; requests waiting on it get this instead of hanging."""


class Engine:
    """One simulated vLLM engine: scheduler + time model + metrics + GPU telemetry."""

    def __init__(
        self,
        profile: EngineProfile,
        *,
        model_name: str,
        time_scale: float,
        seed: int,
        scenario: Scenario | None = None,
        prefix_caching: bool = True,
        gpu_index: int = 0,
    ) -> None:
        self.profile = profile
        self.time_scale = time_scale
        self.seed = seed
        self.tokens = TokenStream(seed)
        self.scheduler = Scheduler(
            max_num_seqs=profile.max_num_seqs,
            num_blocks=profile.num_gpu_blocks,
            block_size=profile.block_size,
            max_num_batched_tokens=profile.max_num_batched_tokens,
            prefix_caching=prefix_caching,
            # A generated token is its word, as the prompt's tokens are (text.py).
            output_ring=self.tokens.first,
        )
        self.max_model_len = min(profile.max_model_len, profile.kv_tokens)
        self.metrics = EngineMetrics(model_name, self.max_model_len)
        # time.monotonic, not loop.time(): uvloop's loop clock has millisecond resolution.
        self.clock = time.monotonic
        self.gpu = GpuTelemetry(
            profile, lambda: self.scheduler.kv_usage, self.clock, index=gpu_index
        )
        self._wake = asyncio.Event()
        self._requests = 0
        self._vclock = 0.0
        # The simulated API server works through its jobs in order: `_api_free` is when it is done
        # with the ones queued so far. `_arrivals` holds the requests it is handling, in the order
        # they reach the scheduler (so their times never decrease); aborted ones leave `_pending`.
        self._api_free = 0.0
        self._arrivals: deque[tuple[float, SimRequest]] = deque()
        self._pending: set[SimRequest] = set()
        # Steps whose tokens wait for the API server, with when it has processed them.
        self._outbox: deque[tuple[float, StepResult, int]] = deque()
        self._outbox_ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sleeper = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sim-clock")
        self.failure: str | None = None  # why the engine loop died, if it did
        # The GPU changing under load (scenario events on the virtual clock, live changes).
        self.conditions = ConditionsClock(scenario)
        self._started_at = self.clock()
        # A shrunk cache still holds one request of the longest length the engine accepts.
        self._min_blocks = -(-self.max_model_len // profile.block_size)

    def virtual_s(self) -> float:
        """Simulated seconds since the engine started (wall seconds x time scale)."""
        return (self.clock() - self._started_at) * self.time_scale

    def apply(self, conditions: Conditions) -> None:
        """Run under `conditions` from now on (the KV share takes effect at once)."""
        blocks = max(self._min_blocks, round(self.profile.num_gpu_blocks * conditions.kv_fraction))
        if blocks != self.scheduler.num_blocks:
            self.scheduler.resize(blocks)
            self._update_gauges()

    def change(self, changes: dict[str, object]) -> Conditions:
        """A live change of conditions (ConfigError if invalid; nothing changes then)."""
        self.conditions.advance(self.virtual_s())
        conditions = self.conditions.set(changes)
        self.apply(conditions)
        return conditions

    def start(self) -> None:
        self._started_at = self.clock()
        self._tasks = [
            asyncio.create_task(self._guarded(self._run()), name="sim-engine"),
            asyncio.create_task(self._guarded(self._deliver()), name="sim-api-server"),
        ]

    async def _guarded(self, loop: Coroutine[Any, Any, None]) -> None:
        """Run a loop; if it dies, say so loudly and fail every waiting client at once (a real
        engine that crashes drops its requests; it does not leave them hanging)."""
        try:
            await loop
        except Exception as exc:
            log.exception("the simulated engine loop died")
            self.failure = f"{type(exc).__name__}: {exc}"
            sched = self.scheduler
            for req in [*sched.running, *sched.waiting, *self._pending]:
                waiter = req.waiter
                if waiter is not None and not waiter.done():
                    req.waiter = None
                    waiter.set_exception(EngineFailedError(self.failure))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sleeper.shutdown(wait=False, cancel_futures=True)

    async def _sleep_until(self, deadline: float) -> None:
        """Wait until `deadline` (self.clock) to within about 0.1 ms."""
        delay = deadline - self.clock() - _FINE_S
        if delay > 0:
            await asyncio.sleep(delay)
        delay = deadline - self.clock()
        if delay > 0:
            await asyncio.get_running_loop().run_in_executor(self._sleeper, time.sleep, delay)

    def new_request(
        self, prompt_ids: Sequence[Hashable], max_tokens: int, ignore_eos: bool
    ) -> SimRequest:
        """A request for the prompt's tokens, numbered in arrival order; its text and simulated
        EOS follow from the seed."""
        prompt_tokens = len(prompt_ids)
        number = self._requests
        self._requests += 1
        p = self.profile
        rng = random.Random(self.seed * 7919 + number)
        natural = rng.randint(p.eos_min_tokens, p.eos_max_tokens)
        now = self.conditions.current
        if now.prompt_scale != 1 or now.output_scale != 1:
            # The mix changed (a scenario): as if this request came longer, within the window.
            prompt_tokens = min(
                max(1, round(prompt_tokens * now.prompt_scale)), self.max_model_len - 1
            )
            # Longer by repeating its own tokens, so equal prompts stay equal (and cacheable).
            prompt_ids = (list(prompt_ids) * -(-prompt_tokens // len(prompt_ids)))[:prompt_tokens]
            room = self.max_model_len - prompt_tokens
            max_tokens = min(max(1, round(max_tokens * now.output_scale)), room)
            natural = max(1, round(natural * now.output_scale))
        overhead = p.costs.request_s * rng.uniform(1 - _REQUEST_JITTER, 1 + _REQUEST_JITTER)
        stop_early = not ignore_eos and natural < max_tokens
        arrival = self.clock()
        return SimRequest(
            prompt_tokens=prompt_tokens,
            prompt_ids=prompt_ids,
            target_tokens=natural if stop_early else max_tokens,
            target_reason="stop" if stop_early else "length",
            arrival=arrival,
            queued=arrival + overhead / self.time_scale,
            text_offset=self.tokens.offset(number),
        )

    def submit(self, req: SimRequest) -> None:
        """Hand `req` to the API server, which handles it after the work already queued there;
        it reaches the scheduler at `req.queued`."""
        if self.failure is not None:
            raise EngineFailedError(self.failure)
        queued = req.queued if req.queued is not None else req.arrival
        req.queued = self._api_free = queued + max(0.0, self._api_free - req.arrival)
        self._arrivals.append((req.queued, req))
        self._pending.add(req)
        self._wake.set()

    def abort(self, req: SimRequest) -> None:
        """Drop `req` now (client gone): frees its KV blocks at once.

        Like vLLM 0.32's API server, a client abort records no request stats: it is not counted in
        vllm:request_success_total (checked against live vLLM in tests/vllm/test_metrics_parity.py).
        """
        if req in self._pending:
            self._pending.discard(req)  # _arrivals skips it when it comes up
            req.status = FINISHED
            req.finished_reason = "abort"
            req.finished_at = self.clock()
            _notify(req)
        elif self.scheduler.abort(req):
            req.finished_at = self.clock()
            self._update_gauges()
            _notify(req)

    def _update_gauges(self) -> None:
        s = self.scheduler
        self.metrics.update_state(len(s.running), len(s.waiting), s.kv_usage)

    def _admit(self, cutoff: float) -> None:
        """Move the requests that reached the engine by `cutoff` into the scheduler's queue."""
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= cutoff:
            req = arrivals.popleft()[1]
            if req in self._pending:
                self._pending.discard(req)
                self.scheduler.add(req)

    async def _next_arrival(self) -> float:
        """Wait, idle, until a request reaches the engine; the simulated time at which it did."""
        arrivals = self._arrivals
        while True:
            while arrivals and arrivals[0][1] not in self._pending:
                arrivals.popleft()  # aborted while in the API server
            self._wake.clear()
            if not arrivals:
                await self._wake.wait()
                continue
            ready = arrivals[0][0]
            now = self.clock()
            if ready <= now:
                # Start at the arrival, not at the late wake-up (up to _MAX_LAG_S), and never
                # before the previous step ended.
                return max(ready if ready > now - _MAX_LAG_S else now, self._vclock)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), ready - now)

    async def _run(self) -> None:
        clock = self.clock
        sched = self.scheduler
        costs = self.profile.costs
        pipelined = self.profile.async_scheduling
        streak = 0
        previous: float | None = None  # start of the previous step, while steps run back to back
        while True:
            if sched.has_work():
                now = clock()
                # Catch up with a late virtual clock only while busy.
                start = self._vclock if self._vclock > now - _MAX_LAG_S else now
                # With async scheduling this step was planned when the previous one started: it
                # sees only the requests that had reached the engine by then.
                cutoff = previous if pipelined and previous is not None else start
            else:
                # After an idle wait the GPU was free: the step starts when the request arrived.
                start = cutoff = await self._next_arrival()
            self._admit(cutoff)
            if not sched.has_work():
                previous = None
                continue
            conditions = self.conditions.current
            if self.conditions.has_pending:
                before = conditions
                conditions = self.conditions.advance((start - self._started_at) * self.time_scale)
                if conditions != before:
                    log.info("conditions now %s", conditions.model_dump())
                    self.apply(conditions)
            plan = sched.schedule(start)
            if plan.cache_queries:
                self.metrics.observe_prefix_cache(plan.cache_queries, plan.cache_hits)
            step = (
                conditions.slowdown
                * step_seconds(
                    costs,
                    seqs=len(plan.scheduled),
                    tokens=plan.tokens,
                    pairs=plan.prefill_pairs,
                    context=plan.decode_context,
                )
                / self.time_scale
            )
            end = start + step
            self._vclock = end
            previous = start
            if end > clock():
                await self._sleep_until(end)
                streak = 0
            elif streak < _MAX_STEPS_WITHOUT_YIELD:
                # Behind the wall clock: run the next step before the clients write, so a
                # starved CPU sends several tokens per write instead of falling further behind.
                streak += 1
            else:
                await asyncio.sleep(0)
                streak = 0
            result = sched.complete(plan, end)
            self.gpu.add_busy(step, end)
            work = output_seconds(costs, len(result.emitted)) / self.time_scale
            if work:
                # The API server detokenises and streams the tokens after the work queued ahead
                # of them; the engine does not wait for it (vLLM runs them as two processes).
                self._api_free = max(self._api_free, end) + work
                self._outbox.append((self._api_free, result, plan.preempted))
                self._outbox_ready.set()
            else:
                self._publish(result, plan.preempted)

    async def _deliver(self) -> None:
        """The API server's side: hand each step's tokens to the clients once it processed them."""
        outbox = self._outbox
        while True:
            while not outbox:
                self._outbox_ready.clear()
                await self._outbox_ready.wait()
            ready, result, preempted = outbox.popleft()
            if ready > self.clock():
                await self._sleep_until(ready)
            self._publish(result, preempted)

    def _publish(self, result: StepResult, preempted: int) -> None:
        metrics = self.metrics
        for req in result.emitted:
            if req.num_output == 1:
                metrics.observe_first_token(req)
            if req.waiter is not None and (req.stream or req.status == FINISHED):
                _notify(req)
        for req in result.finished:
            metrics.observe_finished(req)
        metrics.observe_step(len(result.emitted), preempted, result.inter_token)
        self._update_gauges()
