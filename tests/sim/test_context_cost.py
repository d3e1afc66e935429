"""Over a real socket: decode slows down when the prompts get longer, as attention reads more KV.

The H100 profile at `--time-scale 6`, eight concurrent streams of 60 tokens each. With 50-token
prompts a decode step reads ~1,200 cached tokens and takes ~8.1 ms (simulated); with 16,000-token
prompts it reads ~128,000 and takes ~13.7 ms (43.7 ns per cached token): about 1.7 times longer.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import aiohttp

from tests.sim.conftest import StartSim

STREAMS = 8
OUTPUT_TOKENS = 60
_TOKEN = b'"finish_reason":null'


async def _itl_ms(url: str, prompt_tokens: int) -> float:
    """Each stream's mean gap between tokens over its second half, when every stream decodes
    (the first half can hold other streams' prefill steps); the median over the streams, ms."""
    body = {
        "prompt": "a " * prompt_tokens,  # one-letter words: one token each
        "max_tokens": OUTPUT_TOKENS,
        "ignore_eos": True,
        "stream": True,
    }

    async def one(session: aiohttp.ClientSession) -> float:
        times: list[float] = []
        async with session.post(f"{url}/v1/completions", json=body) as resp:
            assert resp.status == 200
            async for line in resp.content:
                if _TOKEN in line:
                    times.append(time.perf_counter())
        assert len(times) == OUTPUT_TOKENS
        half = OUTPUT_TOKENS // 2
        return (times[-1] - times[half]) / (OUTPUT_TOKENS - 1 - half) * 1000

    async with aiohttp.ClientSession() as session:
        return statistics.median(await asyncio.gather(*(one(session) for _ in range(STREAMS))))


def test_inter_token_latency_grows_with_the_prompt_length(start_sim: StartSim) -> None:
    with start_sim("--profile", "h100-llama3.1-8b", "--time-scale", "6") as sim:
        short = asyncio.run(_itl_ms(sim.url, 50))
        long = asyncio.run(_itl_ms(sim.url, 16_000))
    # Expected 1.35 and 2.28 ms of wall clock (ratio 1.69); the margins absorb a busy machine.
    assert 1.35 < long / short < 2.2, (short, long)
    assert 1.05 < short < 1.8, short
