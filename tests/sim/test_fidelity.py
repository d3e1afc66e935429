"""The simulator bends like vLLM: throughput saturates at max_num_seqs, queueing shows in TTFT,
a KV cache smaller than the batch limit causes preemptions.

Closed-loop sweep with `time_scale` acceleration; asserts shapes with wide margins because the
machine is small and shared.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest

from tests.exposition import scrape_value
from tests.support import sim_server

PROMPT_TOKENS = 60  # 60 one-token words by the documented rule
OUTPUT_TOKENS = 64
BLOCK_SIZE = 16
# ceil((60 + 64) / 16) = 8 blocks per request at full length: 72 blocks hold about 9 requests.
BLOCKS_FOR_ABOUT_8 = 72
BLOCKS_FOR_ABOUT_5 = 40
BODY = {
    "prompt": "word " * PROMPT_TOKENS,
    "max_tokens": OUTPUT_TOKENS,
    "ignore_eos": True,
    "stream": True,
}
_TOKEN = b'"finish_reason":null'


@dataclass
class Level:
    concurrency: int
    throughput: float = 0.0  # output tokens per second
    ttft: float = 0.0  # median, seconds
    itl: float = 0.0  # median of per-request mean inter-token latency, seconds
    completed: list[int] = field(default_factory=list)  # tokens per finished request


async def _run_level(url: str, concurrency: int, duration: float, warmup: float) -> Level:
    level = Level(concurrency)
    token_times: list[float] = []
    ttfts: list[float] = []
    itls: list[float] = []
    t0 = time.perf_counter()
    measure_from, stop_at = t0 + warmup, t0 + duration

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            times: list[float] = []
            async with session.post(f"{url}/v1/completions", json=BODY) as resp:
                assert resp.status == 200
                async for line in resp.content:
                    if _TOKEN in line:
                        times.append(time.perf_counter())
            level.completed.append(len(times))
            token_times.extend(times)
            if start >= measure_from:
                ttfts.append(times[0] - start)
            itls.append((times[-1] - times[0]) / (len(times) - 1))

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
    window = [t for t in token_times if measure_from <= t <= stop_at]
    level.throughput = len(window) / (stop_at - measure_from)
    level.ttft = statistics.median(ttfts)
    level.itl = statistics.median(itls)
    return level


def _sweep(url: str, levels: tuple[int, ...], duration: float = 2.0) -> dict[int, Level]:
    async def run() -> dict[int, Level]:
        return {c: await _run_level(url, c, duration, warmup=0.6) for c in levels}

    return asyncio.run(run())


def _flags(blocks: int) -> list[str]:
    return [
        "--profile", "rtx3090-qwen2.5-14b-awq", "--time-scale", "10", "--max-num-seqs", "8",
        "--num-gpu-blocks", str(blocks), "--block-size", str(BLOCK_SIZE),
    ]  # fmt: skip


@pytest.mark.slow
def test_throughput_saturates_at_the_batch_limit_and_queueing_shows_in_ttft(
    tmp_path: Path,
) -> None:
    with sim_server(tmp_path / "sim.log", *_flags(BLOCKS_FOR_ABOUT_8)) as sim:
        r = _sweep(sim.url, (1, 2, 4, 8, 16, 32))
        preemptions = scrape_value(f"{sim.url}/metrics", "vllm:num_preemptions_total")
    summary = {
        c: (round(lv.throughput), round(lv.ttft * 1000, 1), round(lv.itl * 1000, 2))
        for c, lv in r.items()
    }
    # Output throughput rises with concurrency up to max_num_seqs = 8 ...
    assert r[2].throughput > 1.5 * r[1].throughput, summary
    assert r[4].throughput > 1.5 * r[2].throughput, summary
    assert r[8].throughput > 4.0 * r[1].throughput, summary
    # ... then flattens: more clients only wait.
    for c in (16, 32):
        assert 0.7 * r[8].throughput < r[c].throughput < 1.3 * r[8].throughput, summary
    # Decode is memory-bound: inter-token latency barely moves below the batch limit.
    assert r[4].itl < 1.5 * r[1].itl, summary
    assert r[8].itl < 1.7 * r[1].itl, summary
    # Beyond it, requests queue: time to first token grows.
    assert r[16].ttft > 2 * r[8].ttft, summary
    assert r[32].ttft > 1.5 * r[16].ttft, summary
    assert r[32].ttft > 5 * r[8].ttft, summary
    # Every request got all its tokens.
    assert {n for lv in r.values() for n in lv.completed} == {OUTPUT_TOKENS}
    assert preemptions < 10, summary


@pytest.mark.slow
def test_kv_cache_smaller_than_the_batch_causes_preemptions(tmp_path: Path) -> None:
    with sim_server(tmp_path / "sim.log", *_flags(BLOCKS_FOR_ABOUT_5)) as sim:
        assert scrape_value(f"{sim.url}/metrics", "vllm:num_preemptions_total") == 0
        r = _sweep(sim.url, (16,), duration=1.5)
        assert scrape_value(f"{sim.url}/metrics", "vllm:num_preemptions_total") > 0
        assert scrape_value(f"{sim.url}/metrics", "vllm:kv_cache_usage_perc") == 0
    # Preempted requests were recomputed, not cut short.
    assert set(r[16].completed) == {OUTPUT_TOKENS}
