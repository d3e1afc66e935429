"""A scheduler shaped like vLLM v1's: FCFS waiting queue, bounded running set, paged KV with
prefix caching (kvcache.py), preemption.

Pure bookkeeping, no clock and no I/O: `schedule()` picks the work of one engine step and
`complete()` applies its results. The engine (engine.py) times the steps and notifies clients.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from llmctl.sim.kvcache import KvCache
from llmctl.sim.timing import attention_pairs

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
    queued: float | None = None  # when it reaches the scheduler, after the API server's overhead
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
    # The prompt's tokens (text pieces or ids; empty: unknown, never cached) and the prefix
    # cache's view of the request (kvcache.py): its full blocks' chained hashes, the cached blocks
    # it holds, how many leading blocks were looked up or cached, the tokens its admission found.
    prompt_ids: Sequence[Hashable] = ()
    block_hashes: list[int] = field(default_factory=list)
    cached: list[int] = field(default_factory=list)
    hashed: int = 0
    num_cached_tokens: int = 0
    # Set by the server: a future the engine resolves when tokens arrive or the request ends.
    waiter: Any = None

    @property
    def num_tokens(self) -> int:
        return self.prompt_tokens + self.num_output


@dataclass(slots=True)
class StepPlan:
    """The work of one engine step, and what the time model (timing.py) charges for it."""

    scheduled: list[tuple[SimRequest, int]] = field(default_factory=list)
    tokens: int = 0  # computed this step: one per decoding sequence plus the prefill chunks
    prefill_tokens: int = 0
    prefill_pairs: int = 0  # causal attention pairs of the prefill chunks
    decode_context: int = 0  # tokens already cached, summed over the decoding sequences
    preempted: int = 0
    # vllm:prefix_cache_queries / _hits: tokens of the new (not preempted) requests admitted, and
    # how many of them the prefix cache held
    cache_queries: int = 0
    cache_hits: int = 0


@dataclass(slots=True)
class StepResult:
    """What one step produced."""

    emitted: list[SimRequest] = field(default_factory=list)
    finished: list[SimRequest] = field(default_factory=list)
    inter_token: list[float] = field(default_factory=list)


class Scheduler:
    """FCFS waiting queue; running set <= max_num_seqs; KV of num_blocks x block_size tokens.

    `prefix_caching` and `output_ring` configure the KV cache (kvcache.py)."""

    def __init__(
        self,
        *,
        max_num_seqs: int,
        num_blocks: int,
        block_size: int,
        max_num_batched_tokens: int,
        prefix_caching: bool = True,
        output_ring: Sequence[Hashable] = (),
    ) -> None:
        self.max_num_seqs = max_num_seqs
        self.block_size = block_size
        self.max_num_batched_tokens = max_num_batched_tokens
        self.kv = KvCache(num_blocks, block_size, caching=prefix_caching, output_ring=output_ring)
        self.waiting: deque[SimRequest] = deque()
        self.running: list[SimRequest] = []
        # Computed (KV-resident) tokens summed over the running set, kept up to date as requests
        # grow, finish, are preempted or aborted, so a step's decode context costs no extra pass.
        self.context_tokens = 0

    @property
    def num_blocks(self) -> int:
        return self.kv.num_blocks

    @property
    def free_blocks(self) -> int:
        """Blocks no request holds (cached ones among them); negative just after a shrink."""
        return self.kv.free

    @property
    def kv_usage(self) -> float:
        return self.kv.usage

    def resize(self, num_blocks: int) -> None:
        """Give the cache `num_blocks` blocks from now on (free ones go first, the uncached before
        the cached). Shrinking below what running requests hold leaves free_blocks negative: they
        keep the blocks they have, new blocks preempt the latest admitted until the cache fits
        again (vLLM's answer to running out of blocks)."""
        self.kv.resize(num_blocks)

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
            self.context_tokens -= req.num_computed
        else:
            self.waiting.remove(req)
        self._free(req)
        req.status = FINISHED
        req.finished_reason = "abort"
        return True

    def _free(self, req: SimRequest) -> None:
        self.kv.release(req)

    def _allocate(self, req: SimRequest, num_new: int) -> bool:
        bs = self.block_size
        need = (req.num_computed + num_new + bs - 1) // bs - req.blocks
        if need <= 0:
            return True
        kv = self.kv
        if need <= kv.anonymous:  # the common case, inline: no eviction needed
            kv.anonymous -= need
            req.blocks += need
            return True
        return kv.grow(req, need)

    def _preempt_last(self) -> SimRequest:
        """Send the most recently admitted running request back to waiting (recompute)."""
        victim = self.running.pop()
        self._free(victim)
        self.context_tokens -= victim.num_computed
        victim.num_computed = 0
        victim.status = WAITING
        victim.num_preemptions += 1
        self.waiting.appendleft(victim)
        return victim

    def schedule(self, now: float) -> StepPlan:
        """Pick this step's work: running requests first, then waiting ones (vLLM v1 order)."""
        plan = StepPlan()
        scheduled = plan.scheduled
        budget = self.max_num_batched_tokens
        block_size = self.block_size
        running = self.running
        tokens = prefill_tokens = pairs = 0
        kv = self.kv
        # Context of running requests that do not decode this step (prefill chunks, or left out
        # when the token budget ran out): the rest of context_tokens is the decode context.
        not_decoding = 0
        i = 0
        while i < len(running) and budget > 0:
            req = running[i]
            computed = req.num_computed
            remaining = req.prompt_tokens + req.num_output - computed
            if remaining <= 0:
                not_decoding += computed
                i += 1
                continue
            num_new = remaining if remaining < budget else budget
            # Most steps fit in the blocks a request already holds: skip the allocator then.
            if computed + num_new > req.blocks * block_size and not self._allocate(req, num_new):
                victim = self._preempt_last()
                plan.preempted += 1
                while victim is not req and not self._allocate(req, num_new):
                    victim = self._preempt_last()
                    plan.preempted += 1
                if victim is req:
                    break  # the request itself was preempted: nothing more fits this step
            scheduled.append((req, num_new))
            tokens += num_new
            if remaining != 1 or not req.num_output:  # a prefill chunk, not one decode token
                prefill_tokens += num_new
                pairs += attention_pairs(computed, num_new)
                not_decoding += computed
                kv.commit(req, computed + num_new)
            budget -= num_new
            i += 1
        for req in running[i:]:
            not_decoding += req.num_computed
        if not plan.preempted:
            waiting = self.waiting
            while waiting and len(running) < self.max_num_seqs and budget > 0:
                req = waiting[0]
                # Waiting requests hold no blocks and no computed tokens (preemption forgets
                # them): what the prefix cache holds is computed already, the rest is a prefill.
                hits = kv.lookup(req)
                cached = hits * block_size
                remaining = req.num_tokens - cached
                num_new = remaining if remaining < budget else budget
                if not kv.admit(req, hits, cached + num_new):
                    break
                waiting.popleft()
                req.status = RUNNING
                if req.first_scheduled is None:
                    req.first_scheduled = now
                running.append(req)
                if kv.caching and not req.num_preemptions:
                    # vLLM counts new requests only, at admission, in tokens.
                    plan.cache_queries += req.num_tokens
                    plan.cache_hits += cached
                req.num_cached_tokens = cached
                req.num_computed = cached
                self.context_tokens += cached
                not_decoding += cached
                kv.commit(req, cached + num_new)
                scheduled.append((req, num_new))
                tokens += num_new
                prefill_tokens += num_new
                pairs += attention_pairs(cached, num_new)
                budget -= num_new
        plan.tokens = tokens
        plan.prefill_tokens = prefill_tokens
        plan.prefill_pairs = pairs
        plan.decode_context = self.context_tokens - not_decoding
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
            self.context_tokens += num_new
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
                self.context_tokens -= req.num_computed
                req.status = FINISHED
                req.finished_reason = req.target_reason
                req.finished_at = now
                finished.append(req)
        return result
