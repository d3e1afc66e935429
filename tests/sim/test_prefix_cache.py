"""Prefix caching over a socket: hits counted in tokens as vLLM counts them, a cached prefix's
short time to first token, eviction under pressure, shared blocks counted once in KV usage,
preemption of requests that share blocks, a chat's next turn finding the last reply cached."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from llmctl.sim.text import count_tokens, render_chat
from tests.exposition import Exposition
from tests.sim.conftest import StartSim
from tests.support import eventually

QUERIES = "vllm:prefix_cache_queries_total"
HITS = "vllm:prefix_cache_hits_total"


def counters(url: str) -> tuple[float, float]:
    page = Exposition.scrape(f"{url}/metrics")
    return page.total(QUERIES), page.total(HITS)


def complete(url: str, prompt: Any, max_tokens: int = 1, **extra: Any) -> dict[str, Any]:
    body = {"prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, **extra}
    resp = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
    resp.raise_for_status()
    result: dict[str, Any] = resp.json()
    return result


def time_to_first_token(url: str, prompt: Any) -> float:
    body = {"prompt": prompt, "max_tokens": 2, "stream": True}
    start = time.perf_counter()
    with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as resp:
        lines = resp.iter_lines()
        next(line for line in lines if line.startswith("data:"))
        elapsed = time.perf_counter() - start
        for _ in lines:
            pass
    return elapsed


def test_hits_are_counted_in_tokens_and_a_cached_prefix_answers_sooner(
    start_sim: StartSim,
) -> None:
    # 16,000 token ids: a 0.85 s prefill on the H100 profile, 0.43 s at --time-scale 2.
    shared = list(range(16_000))
    with start_sim("--profile", "h100-llama3.1-8b", "--time-scale", "2") as sim:
        cold = time_to_first_token(sim.url, [*shared, 1])
        warm = time_to_first_token(sim.url, [*shared, 2])
        assert counters(sim.url) == (2 * 16_001, 16_000)
        # Every block of a 16,000-token prompt is cached, but the last token is computed anyway
        # (for its logits), so its last block is not a hit: 999 blocks of 16.
        complete(sim.url, shared)
        assert counters(sim.url) == (2 * 16_001 + 16_000, 16_000 + 999 * 16)
    assert warm < cold / 3, (cold, warm)


@pytest.mark.parametrize("flag", ["--no-prefix-caching", "--no-enable-prefix-caching"])
def test_without_prefix_caching_the_counters_stay_zero(start_sim: StartSim, flag: str) -> None:
    with start_sim("--profile", "tiny", flag) as sim:  # vLLM's flag name works too
        for _ in range(2):
            complete(sim.url, list(range(500)))
        assert counters(sim.url) == (0, 0)


def test_under_pressure_freed_blocks_are_evicted_tail_first(start_sim: StartSim) -> None:
    # 64 blocks of 16. A leaves 37 full blocks cached; B needs 38: the 26 + 1 blocks nobody
    # caches, then A's last 11 (a request's tail goes before its head).
    with start_sim("--profile", "tiny", "--num-gpu-blocks", "64") as sim:
        a, b = list(range(600)), list(range(10_000, 10_600))
        complete(sim.url, a)
        complete(sim.url, b)
        queries, hits = counters(sim.url)
        complete(sim.url, a)
        assert counters(sim.url) == (queries + 600, hits + 26 * 16)


def test_requests_sharing_a_prompt_hold_its_blocks_once(start_sim: StartSim) -> None:
    shared = list(range(4000))  # 250 blocks of 16, in a cache of 1000
    # Slowed down so that the scrape comes well before the two have generated much.
    with start_sim("--profile", "tiny", "--num-gpu-blocks", "1000", "--time-scale", "0.2") as sim:

        async def two_streams() -> float:
            async with httpx.AsyncClient(timeout=60) as client:
                started = [asyncio.Event(), asyncio.Event()]

                async def stream(last: int, started: asyncio.Event) -> None:
                    body = {"prompt": [*shared, last], "max_tokens": 3000, "ignore_eos": True,
                            "stream": True}  # fmt: skip
                    async with client.stream(
                        "POST", f"{sim.url}/v1/completions", json=body
                    ) as resp:
                        async for _ in resp.aiter_lines():
                            started.set()

                tasks = [asyncio.create_task(stream(i, e)) for i, e in enumerate(started)]
                for event in started:
                    await event.wait()
                page = Exposition.parse((await client.get(f"{sim.url}/metrics")).text)
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                assert page.total("vllm:num_requests_running") == 2
                return page.total("vllm:kv_cache_usage_perc")

        usage = asyncio.run(two_streams())
        # 250 shared blocks + each request's own (its 4001st token and what it generated so far,
        # under 800 tokens at 7 ms a step); held twice, the prompt alone would be 0.5.
        assert 0.25 <= usage < 0.35, usage
        eventually(lambda: Exposition.scrape(f"{sim.url}/metrics").total(
            "vllm:kv_cache_usage_perc") == 0, what="the cache is free again")  # fmt: skip


def test_requests_sharing_blocks_survive_preemption(start_sim: StartSim) -> None:
    # 40 blocks of 16: four requests share a 160-token prefix (10 blocks) and each grows by 150
    # tokens (10 more blocks): 50 blocks in all, so the latest admitted are preempted.
    prefix = list(range(160))
    with start_sim("--profile", "tiny", "--num-gpu-blocks", "40", "--time-scale", "0.5") as sim:

        async def four() -> list[int]:
            async with httpx.AsyncClient(timeout=60) as client:
                bodies = [{"prompt": [*prefix, *range(1000 + 8 * i, 1008 + 8 * i)],
                           "max_tokens": 150, "ignore_eos": True} for i in range(4)]  # fmt: skip
                answers = await asyncio.gather(
                    *(client.post(f"{sim.url}/v1/completions", json=b) for b in bodies)
                )
                return [a.json()["usage"]["completion_tokens"] for a in answers]

        assert asyncio.run(four()) == [150] * 4
        page = Exposition.scrape(f"{sim.url}/metrics")
        assert page.total("vllm:num_preemptions_total") > 0
        assert page.total(HITS) >= 3 * 160  # the three later requests found the prefix
        assert page.total("vllm:kv_cache_usage_perc") == 0


def test_the_next_turn_of_a_chat_finds_the_last_reply_cached(start_sim: StartSim) -> None:
    with start_sim("--profile", "tiny") as sim:
        messages = [
            {"role": "system", "content": "You answer briefly. " * 20},
            {"role": "user", "content": "What is a KV cache?"},
        ]
        body = {"messages": messages, "max_tokens": 37, "ignore_eos": True}
        resp = httpx.post(f"{sim.url}/v1/chat/completions", json=body, timeout=30).json()
        reply = resp["choices"][0]["message"]["content"]
        first_prompt, generated = resp["usage"]["prompt_tokens"], 37
        _, hits_before = counters(sim.url)
        messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": "And?"}]
        body = {"messages": messages, "max_tokens": 5}
        resp = httpx.post(f"{sim.url}/v1/chat/completions", json=body, timeout=30).json()
        rendered = render_chat([(m["role"], m["content"]) for m in messages])
        assert resp["usage"]["prompt_tokens"] == count_tokens(rendered)
        # The engine computed the first prompt and all but the last generated token; the reply
        # sent back tokenizes to what it generated, so every full block of that is a hit.
        _, hits = counters(sim.url)
        assert hits - hits_before == (first_prompt + generated - 1) // 16 * 16
