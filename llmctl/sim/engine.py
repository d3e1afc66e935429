"""The engine loop: runs scheduler steps on a simulated clock and wakes the waiting clients."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time

from llmctl.sim.gpu import GpuTelemetry
from llmctl.sim.metrics import EngineMetrics
from llmctl.sim.profiles import EngineProfile
from llmctl.sim.scheduler import FINISHED, Scheduler, SimRequest, StepResult
from llmctl.sim.text import TokenStream

log = logging.getLogger(__name__)

# How far the simulated clock may fall behind the wall clock before it gives up catching up
# (timer granularity and a busy CPU make single steps late; the average rate stays right).
_MAX_LAG_S = 0.05
_MAX_STEPS_WITHOUT_YIELD = 8


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
        self, profile: EngineProfile, *, model_name: str, time_scale: float, seed: int
    ) -> None:
        self.profile = profile
        self.time_scale = time_scale
        self.seed = seed
        self.scheduler = Scheduler(
            max_num_seqs=profile.max_num_seqs,
            num_blocks=profile.num_gpu_blocks,
            block_size=profile.block_size,
            max_num_batched_tokens=profile.max_num_batched_tokens,
        )
        self.max_model_len = min(profile.max_model_len, profile.kv_tokens)
        self.metrics = EngineMetrics(model_name, self.max_model_len)
        self.tokens = TokenStream(seed)
        # time.monotonic, not loop.time(): uvloop's loop clock has millisecond resolution.
        self.clock = time.monotonic
        self.gpu = GpuTelemetry(profile, lambda: self.scheduler.kv_usage, self.clock)
        self._wake = asyncio.Event()
        self._requests = 0
        self._vclock = 0.0
        self._task: asyncio.Task[None] | None = None
        self.failure: str | None = None  # why the engine loop died, if it did

    def start(self) -> None:
        self._task = asyncio.create_task(self._guarded(), name="sim-engine")

    async def _guarded(self) -> None:
        """Run the loop; if it dies, say so loudly and fail every waiting client at once (a real
        engine that crashes drops its requests; it does not leave them hanging)."""
        try:
            await self._run()
        except Exception as exc:
            log.exception("the simulated engine loop died")
            self.failure = f"{type(exc).__name__}: {exc}"
            sched = self.scheduler
            for req in [*sched.running, *sched.waiting]:
                waiter = req.waiter
                if waiter is not None and not waiter.done():
                    req.waiter = None
                    waiter.set_exception(EngineFailedError(self.failure))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def new_request(self, prompt_tokens: int, max_tokens: int, ignore_eos: bool) -> SimRequest:
        """A request numbered in arrival order; its text and simulated EOS follow from the seed."""
        number = self._requests
        self._requests += 1
        p = self.profile
        natural = random.Random(self.seed * 7919 + number).randint(
            p.eos_min_tokens, p.eos_max_tokens
        )
        stop_early = not ignore_eos and natural < max_tokens
        return SimRequest(
            prompt_tokens=prompt_tokens,
            target_tokens=natural if stop_early else max_tokens,
            target_reason="stop" if stop_early else "length",
            arrival=self.clock(),
            text_offset=self.tokens.offset(number),
        )

    def submit(self, req: SimRequest) -> None:
        if self.failure is not None:
            raise EngineFailedError(self.failure)
        self.scheduler.add(req)
        self._update_gauges()
        self._wake.set()

    def abort(self, req: SimRequest) -> None:
        """Drop `req` now (client gone): frees its KV blocks at once.

        Like vLLM 0.32's API server, a client abort records no request stats: it is not counted in
        vllm:request_success_total (checked against live vLLM in tests/vllm/test_metrics_parity.py).
        """
        if self.scheduler.abort(req):
            req.finished_at = self.clock()
            self._update_gauges()
            _notify(req)

    def _update_gauges(self) -> None:
        s = self.scheduler
        self.metrics.update_state(len(s.running), len(s.waiting), s.kv_usage)

    async def _run(self) -> None:
        clock = self.clock
        sched = self.scheduler
        profile = self.profile
        streak = 0
        while True:
            idle = not sched.has_work()
            if idle:
                self._wake.clear()
                await self._wake.wait()
            now = clock()
            # Catch up with a late virtual clock only while busy: after an idle wait the GPU was
            # free, so the step starts now (starting it in the past would hide part of the TTFT).
            start = self._vclock if not idle and self._vclock > now - _MAX_LAG_S else now
            plan = sched.schedule(start)
            step = profile.step_seconds(plan.prefill_tokens, len(plan.scheduled)) / self.time_scale
            end = start + step
            self._vclock = end
            delay = end - clock()
            if delay > 0:
                await asyncio.sleep(delay)
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
            self._publish(result, plan.preempted)

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
