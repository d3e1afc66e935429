"""Prefix caching in the scheduler's KV cache, as vLLM v1 does it: chained block hashes, shared
blocks counted once, freed blocks kept until evicted (least recently freed first, a request's tail
before its head), hits counted in tokens for new requests only."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from llmctl.sim.scheduler import FINISHED, RUNNING, Scheduler, SimRequest, StepPlan

RING = tuple(f"w{i}" for i in range(64))  # stands in for the engine's ring of generated words


def make(tokens: Sequence[object], output: int = 4, offset: int = 0) -> SimRequest:
    return SimRequest(
        prompt_tokens=len(tokens),
        target_tokens=output,
        target_reason="length",
        arrival=0,
        prompt_ids=tuple(tokens),
        text_offset=offset,
    )


def sched(num_blocks: int = 64, block_size: int = 4, **kwargs: object) -> Scheduler:
    return Scheduler(
        max_num_seqs=8,
        num_blocks=num_blocks,
        block_size=block_size,
        max_num_batched_tokens=256,
        output_ring=RING,
        **kwargs,  # type: ignore[arg-type]
    )


def step(s: Scheduler) -> StepPlan:
    plan = s.schedule(0.0)
    s.complete(plan, 0.0)
    return plan


def run(s: Scheduler, *reqs: SimRequest) -> list[StepPlan]:
    """Add `reqs` and step until all finished; the plans."""
    for req in reqs:
        s.add(req)
    plans = []
    while any(r.status != FINISHED for r in reqs):
        plans.append(step(s))
    return plans


def words(n: int, tag: str = "t") -> list[str]:
    return [f"{tag}{i}" for i in range(n)]


@pytest.mark.parametrize(
    ("first", "second", "hit_tokens"),
    [
        # The same 10 tokens: two full blocks of 4; the last token is always computed.
        (words(10), words(10), 8),
        # Exactly three blocks: the third is not a hit (its last token must be computed).
        (words(12), words(12), 8),
        # A shared 9-token prefix, then different: the two whole blocks inside it.
        (words(9) + ["x"] * 5, words(9) + ["y"] * 5, 8),
        # A shared prefix shorter than a block: nothing.
        (words(3) + ["x"] * 9, words(3) + ["y"] * 9, 0),
        # The same later blocks after a different first one: the chain breaks at block 0.
        (["a", *words(11)[1:]], ["b", *words(11)[1:]], 0),
        # Token ids work as text pieces do.
        (list(range(20)), [*list(range(20)), 7], 20),
    ],
)
def test_a_request_finds_the_longest_run_of_cached_leading_blocks(
    first: list[object], second: list[object], hit_tokens: int
) -> None:
    s = sched()
    run(s, make(first))
    later = make(second)
    plans = run(s, later)
    assert later.num_cached_tokens == hit_tokens
    assert plans[0].cache_hits == hit_tokens
    assert plans[0].cache_queries == len(second)
    # The time model is charged for the uncached tokens only, attending to the cached ones.
    assert plans[0].prefill_tokens == len(second) - hit_tokens


def test_without_prefix_caching_nothing_is_found_or_counted() -> None:
    s = sched(prefix_caching=False)
    run(s, make(words(20)))
    again = make(words(20))
    plans = run(s, again)
    assert again.num_cached_tokens == 0
    assert (plans[0].cache_queries, plans[0].cache_hits) == (0, 0)
    assert s.free_blocks == s.num_blocks


def test_requests_sharing_a_prefix_hold_its_blocks_once() -> None:
    s = sched(num_blocks=64, block_size=4)
    prefix = words(16)  # four blocks
    a, b = make([*prefix, "a"], output=50), make([*prefix, "b"], output=50)
    s.add(a)
    step(s)  # a's prefill: 17 tokens in 5 blocks, the first four now cached
    s.add(b)
    step(s)
    assert a.status == b.status == RUNNING
    assert b.num_cached_tokens == 16
    # 4 shared + a's 5th + b's 5th (+ a's decode needs no new block yet)
    assert s.num_blocks - s.free_blocks == 6
    assert s.kv_usage == pytest.approx(6 / 64)
    for req in (a, b):
        s.abort(req)
    # Freed blocks stay cached but count as free.
    assert s.free_blocks == 64
    assert len(s.kv.refs) == 4


def test_a_request_that_finished_leaves_its_output_cached_for_the_next_turn() -> None:
    s = sched(block_size=4)
    turn1 = make(words(6), output=9, offset=5)
    run(s, turn1)
    reply = [RING[(5 + i) % len(RING)] for i in range(turn1.num_output)]
    # The next turn's prompt repeats the first prompt and the reply, then asks more.
    turn2 = make(words(6) + reply + ["more", "please"])
    run(s, turn2)
    # 6 + 9 tokens were known; 6 + 8 were computed (the last sampled token never is): 3 blocks.
    assert turn2.num_cached_tokens == 12


def test_freed_blocks_are_evicted_least_recently_freed_first_and_tail_first() -> None:
    s = sched(num_blocks=8, block_size=4)
    old, new = make(words(12, "o"), output=1), make(words(12, "n"), output=1)
    run(s, old)
    run(s, new)
    # Each left 3 cached blocks (12 tokens computed); 2 anonymous blocks are free too.
    assert s.free_blocks == 8
    assert len(s.kv.evictable) == 6
    # 4 new blocks: the 2 anonymous first, then old's tail (its blocks 2 and 1), not its head.
    run(s, make(words(13, "z"), output=1))
    assert s.kv.lookup(make([*words(12, "o"), "?"])) == 1
    assert s.kv.lookup(make([*words(12, "n"), "?"])) == 3


def test_a_hit_on_a_free_cached_block_takes_it_out_of_the_free_pool() -> None:
    s = sched(num_blocks=6, block_size=4)
    run(s, make(words(16), output=1))  # 4 cached blocks, free
    # Needs its 4 cached blocks plus 2 new: fits exactly; nothing of its own prefix is evicted.
    req = make(words(16) + ["x"] * 5, output=5)
    s.add(req)
    step(s)
    assert req.num_cached_tokens == 16
    assert s.free_blocks == 0


def test_preempting_a_request_that_shares_blocks_keeps_them_for_the_other() -> None:
    # 10 blocks of 4: the shared 8-token prefix (2 blocks) and two requests that grow past it.
    s = sched(num_blocks=10, block_size=4)
    prefix = words(8)
    first, second = make([*prefix, "a"], output=18), make([*prefix, "b"], output=18)
    plans = run(s, first, second)
    assert sum(p.preempted for p in plans) >= 1
    assert second.num_preemptions >= 1
    assert first.num_preemptions == 0
    assert first.num_output == second.num_output == 18
    assert s.free_blocks == 10
    # The preempted request's readmission is not a new query (vLLM counts those apart).
    assert sum(p.cache_queries for p in plans) == 18


def test_shrinking_the_cache_gives_up_anonymous_blocks_before_cached_ones() -> None:
    s = sched(num_blocks=16, block_size=4)
    run(s, make(words(16), output=1))
    assert len(s.kv.evictable) == 4  # and 12 anonymous
    s.resize(5)
    assert s.free_blocks == 5
    assert len(s.kv.evictable) == 4
    s.resize(2)  # the least recently freed cached blocks (the request's tail) go
    assert s.free_blocks == 2
    assert len(s.kv.evictable) == 2
    assert s.kv.lookup(make([*words(16), "?"])) == 2


def test_block_accounting_holds_under_random_shared_prefixes_preemption_and_aborts() -> None:
    """Every block is held, cached-free or anonymous-free: held blocks (counted once however many
    share them) plus free ones make the cache; each cached block's count is its holders."""
    rng = random.Random(11)
    s = sched(num_blocks=48, block_size=4)
    systems = [words(rng.randint(4, 30), f"s{k}-") for k in range(3)]
    live: list[SimRequest] = []
    hits = preempted = 0
    for n in range(800):
        if rng.random() < 0.3:
            prompt = rng.choice(systems) + words(rng.randint(1, 12), f"u{n}-")
            req = make(prompt, output=rng.randint(1, 30), offset=rng.randrange(64))
            s.add(req)
            live.append(req)
        if live and rng.random() < 0.04:
            s.abort(live.pop(rng.randrange(len(live))))
        if rng.random() < 0.02:
            s.resize(rng.randint(30, 48))
        plan = step(s)
        hits += plan.cache_hits
        preempted += plan.preempted
        holders: dict[int, int] = {}
        anonymous = 0
        for req in s.running:
            for h in req.cached:
                holders[h] = holders.get(h, 0) + 1
            anonymous += req.blocks - len(req.cached)
        kv = s.kv
        assert {h: c for h, c in kv.refs.items() if c} == holders
        assert set(kv.evictable) == {h for h, c in kv.refs.items() if not c}
        assert len(holders) + anonymous + kv.free == kv.num_blocks
        assert s.context_tokens == sum(r.num_computed for r in s.running)
        live = [r for r in live if r.status != FINISHED]
    assert hits > 0
    assert preempted > 0
