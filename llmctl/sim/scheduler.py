"""A scheduler shaped like vLLM v1's: FCFS waiting queue, bounded running set, paged KV, preemption.

Pure bookkeeping, no clock and no I/O: `schedule()` picks the work of one engine step and
`complete()` applies its results. The engine (engine.py) times the steps and notifies clients.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

WAITING = "waiting"
RUNNING = "running"
FINISHED = "finished"


@dataclass(eq=False, slots=True)
class SimRequest:
    """One generation request as the engine tracks it (times are loop-clock seconds)."""

    prompt_tokens: int
    target_tokens: int  # output length at which the request finishes
    target_reason: str  # "length" (max_tokens reached) or "stop" (simulated EOS)
    arrival: float
    text_offset: int = 0
    status: str = WAITING
    num_output: int = 0
    num_computed: int = 0
    blocks: int = 0
    num_preemptions: int = 0
    first_scheduled: float | None = None
    first_token: float | None = None
    last_token: float | None = None
    finished_reason: str | None = None
    finished_at: float | None = None
    stream: bool = True  # wake the client per token (else only when finished)
    # Set by the server: a future the engine resolves when tokens arrive or the request ends.
    waiter: Any = None

    @property
    def num_tokens(self) -> int:
        return self.prompt_tokens + self.num_output


@dataclass(slots=True)
class StepPlan:
    """The work of one engine step."""

    scheduled: list[tuple[SimRequest, int]] = field(default_factory=list)
    prefill_tokens: int = 0
    preempted: int = 0


@dataclass(slots=True)
class StepResult:
    """What one step produced."""

    emitted: list[SimRequest] = field(default_factory=list)
    finished: list[SimRequest] = field(default_factory=list)
    inter_token: list[float] = field(default_factory=list)


class Scheduler:
    """FCFS waiting queue; running set <= max_num_seqs; KV of num_blocks x block_size tokens."""

    def __init__(
        self, *, max_num_seqs: int, num_blocks: int, block_size: int, max_num_batched_tokens: int
    ) -> None:
        self.max_num_seqs = max_num_seqs
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.max_num_batched_tokens = max_num_batched_tokens
        self.free_blocks = num_blocks
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []

    @property
    def kv_usage(self) -> float:
        return 1.0 - self.free_blocks / self.num_blocks

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def add(self, req: SimRequest) -> None:
        self.waiting.append(req)

    def abort(self, req: SimRequest) -> bool:
        """Remove `req` wherever it is and free its blocks; False if it had already finished."""
        if req.status == FINISHED:
            return False
        if req.status == RUNNING:
            self.running.remove(req)
        else:
            self.waiting.remove(req)
        self._free(req)
        req.status = FINISHED
        req.finished_reason = "abort"
        return True

    def _free(self, req: SimRequest) -> None:
        self.free_blocks += req.blocks
        req.blocks = 0

    def _allocate(self, req: SimRequest, num_new: int) -> bool:
        bs = self.block_size
        need = (req.num_computed + num_new + bs - 1) // bs - req.blocks
        if need > self.free_blocks:
            return False
        if need > 0:
            self.free_blocks -= need
            req.blocks += need
        return True

    def _preempt_last(self) -> SimRequest:
        """Send the most recently admitted running request back to waiting (recompute)."""
        victim = self.running.pop()
        self._free(victim)
        victim.num_computed = 0
        victim.status = WAITING
        victim.num_preemptions += 1
        self.waiting.appendleft(victim)
        return victim

    def schedule(self, now: float) -> StepPlan:
        """Pick this step's work: running requests first, then waiting ones (vLLM v1 order)."""
        plan = StepPlan()
        budget = self.max_num_batched_tokens
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            num_new = min(req.num_tokens - req.num_computed, budget)
            if num_new <= 0:
                i += 1
                continue
            while not self._allocate(req, num_new):
                victim = self._preempt_last()
                plan.preempted += 1
                if victim is req:
                    break
            else:
                plan.scheduled.append((req, num_new))
                budget -= num_new
                i += 1
                continue
            break  # the request itself was preempted: nothing more fits this step
        if not plan.preempted:
            while self.waiting and len(self.running) < self.max_num_seqs and budget > 0:
                req = self.waiting[0]
                num_new = min(req.num_tokens - req.num_computed, budget)
                if not self._allocate(req, num_new):
                    break
                self.waiting.popleft()
                req.status = RUNNING
                if req.first_scheduled is None:
                    req.first_scheduled = now
                self.running.append(req)
                plan.scheduled.append((req, num_new))
                budget -= num_new
        for req, num_new in plan.scheduled:
            if not (num_new == 1 and req.num_output and req.num_computed == req.num_tokens - 1):
                plan.prefill_tokens += num_new
        return plan

    def complete(self, plan: StepPlan, now: float) -> StepResult:
        """Apply a finished step: which requests got a token, which finished, the gaps between."""
        result = StepResult()
        emitted = result.emitted
        finished = result.finished
        for req, num_new in plan.scheduled:
            if req.status != RUNNING:
                continue  # aborted while the step ran
            req.num_computed += num_new
            if req.num_computed < req.num_tokens:
                continue  # a chunk of a longer prefill
            req.num_output += 1
            if req.first_token is None:
                req.first_token = now
            else:
                result.inter_token.append(now - req.last_token)  # type: ignore[operator]
            req.last_token = now
            emitted.append(req)
            if req.num_output >= req.target_tokens:
                self.running.remove(req)
                self._free(req)
                req.status = FINISHED
                req.finished_reason = req.target_reason
                req.finished_at = now
                finished.append(req)
        return result
