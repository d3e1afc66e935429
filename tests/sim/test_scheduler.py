"""The vLLM-v1-shaped scheduler: FCFS, batch bound, chunked prefill, preemption, abort, and the
work of each step that the time model charges (tokens, prefill attention pairs, decode context)."""

from __future__ import annotations

import random

from llmctl.sim.scheduler import FINISHED, RUNNING, WAITING, Scheduler, SimRequest


def make(prompt: int, output: int) -> SimRequest:
    return SimRequest(prompt_tokens=prompt, target_tokens=output, target_reason="length", arrival=0)


def run_step(s: Scheduler) -> tuple[int, list[SimRequest]]:
    plan = s.schedule(0.0)
    result = s.complete(plan, 0.0)
    return plan.preempted, result.finished


def test_fcfs_admission_is_bounded_by_max_num_seqs() -> None:
    s = Scheduler(max_num_seqs=2, num_blocks=100, block_size=16, max_num_batched_tokens=1000)
    reqs = [make(10, 5), make(10, 50), make(10, 5), make(10, 5)]
    for r in reqs:
        s.add(r)
    run_step(s)
    assert s.running == reqs[:2]
    assert list(s.waiting) == reqs[2:]
    while reqs[0].status != FINISHED:
        run_step(s)
    run_step(s)
    assert reqs[2] in s.running
    assert reqs[3].status == WAITING


def test_long_prompt_is_prefilled_in_chunks_within_the_token_budget() -> None:
    s = Scheduler(max_num_seqs=4, num_blocks=100, block_size=16, max_num_batched_tokens=32)
    req = make(100, 3)
    s.add(req)
    chunks = []
    while req.num_output == 0:
        plan = s.schedule(0.0)
        chunks.append(plan.scheduled[0][1])
        s.complete(plan, 0.0)
    assert chunks == [32, 32, 32, 4]
    assert req.blocks == 7  # ceil(100 / 16): the first sampled token is not computed yet


def test_out_of_blocks_preempts_the_most_recent_request_which_recomputes() -> None:
    # 6 blocks of 4 tokens: two requests of 8 prompt tokens fit, but not while both grow.
    s = Scheduler(max_num_seqs=4, num_blocks=6, block_size=4, max_num_batched_tokens=100)
    first, second = make(8, 8), make(8, 8)
    s.add(first)
    s.add(second)
    preempted = 0
    steps = 0
    while first.status != FINISHED:
        n, _ = run_step(s)
        preempted += n
        steps += 1
        assert s.free_blocks >= 0
    assert preempted >= 1
    assert second.num_preemptions >= 1
    assert first.num_preemptions == 0  # the older request keeps running
    while second.status != FINISHED:
        run_step(s)
    assert second.num_output == 8
    assert s.free_blocks == 6


def test_abort_frees_blocks_wherever_the_request_is() -> None:
    s = Scheduler(max_num_seqs=1, num_blocks=10, block_size=16, max_num_batched_tokens=100)
    running, waiting = make(20, 50), make(20, 50)
    s.add(running)
    s.add(waiting)
    run_step(s)
    assert running.status == RUNNING
    assert s.free_blocks == 8
    assert s.abort(running)
    assert s.abort(waiting)
    assert not s.abort(waiting)
    assert s.free_blocks == 10
    assert running.finished_reason == "abort"
    assert not s.has_work()


def test_each_plan_carries_the_work_the_time_model_charges() -> None:
    # A 40-token prompt in chunks of at most 32 tokens next to a request that decodes.
    s = Scheduler(max_num_seqs=4, num_blocks=100, block_size=16, max_num_batched_tokens=32)
    decoder, prompt = make(10, 50), make(40, 5)
    s.add(decoder)
    run_step(s)  # decoder's prefill: 10 tokens
    run_step(s)  # its first decode (10 cached tokens)
    s.add(prompt)
    plans = []
    for _ in range(3):
        plan = s.schedule(0.0)
        plans.append((plan.tokens, plan.prefill_tokens, plan.prefill_pairs, plan.decode_context))
        s.complete(plan, 0.0)
    assert plans == [
        # decoder (11 cached) + a 31-token chunk at position 0: 31 x 32 / 2 pairs
        (32, 31, 496, 11),
        # decoder (12 cached) + the last 9 tokens at positions 31..39: 9 x 31 + 9 x 10 / 2
        (10, 9, 324, 12),
        # both decode: 13 + 40 cached tokens
        (2, 0, 0, 53),
    ]


def _brute_context(s: Scheduler) -> int:
    return sum(r.num_computed for r in s.running)


def test_the_incremental_context_sum_matches_a_full_recount() -> None:
    """Random arrivals, chunked prefills, preemptions (a small KV cache) and aborts: the running
    total and each plan's decode context agree with summing over the requests."""
    rng = random.Random(7)
    s = Scheduler(max_num_seqs=6, num_blocks=40, block_size=8, max_num_batched_tokens=48)
    live: list[SimRequest] = []
    preemptions = 0
    for _ in range(600):
        if rng.random() < 0.3:
            req = make(rng.randint(1, 90), rng.randint(1, 40))
            s.add(req)
            live.append(req)
        if live and rng.random() < 0.05:
            s.abort(live.pop(rng.randrange(len(live))))
        plan = s.schedule(0.0)
        preemptions += plan.preempted
        decoding = [
            r
            for r, n in plan.scheduled
            if n == 1 and r.num_output and r.num_computed == r.num_tokens - 1
        ]
        assert plan.decode_context == sum(r.num_computed for r in decoding)
        assert plan.tokens == sum(n for _, n in plan.scheduled)
        s.complete(plan, 0.0)
        assert s.context_tokens == _brute_context(s)
        live = [r for r in live if r.status != FINISHED]
    assert preemptions > 0
