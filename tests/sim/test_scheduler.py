"""The vLLM-v1-shaped scheduler: FCFS, batch bound, chunked prefill, preemption, abort."""

from __future__ import annotations

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
