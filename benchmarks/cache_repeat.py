"""The response cache on a workload where half the requests repeat an earlier one: off vs. on.

    python benchmarks/cache_repeat.py [--profile rtx3090-qwen2.5-14b-awq] [--requests 400]
        [--concurrency 16] [--max-tokens 64] [--repeat 0.5] [--rounds 3]

Starts `llmctl sim serve` and two gateways in front of it, one without the cache and one with
`--cache`, both at the same MAX_ACTIVE, as child processes. One round sends `--requests` greedy
streamed chat requests from `--concurrency` clients, in a fixed order in which a `--repeat` share
of the requests (exactly) are byte-identical repeats of an earlier request of the round, the rest
new. Rounds alternate cache off / cache on so both see the same machine noise; the cache is purged
before each of its rounds. Reported per setting: requests per second, generated tokens delivered
per second (from each answer's usage), client-side time to first token (p50, p95; the first event
with text) and how many answers said `x-cache: hit`. Prints a Markdown table and one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field

import aiohttp

# Run as `python benchmarks/cache_repeat.py`, so this folder is on sys.path.
from _common import free_port, started

from llmctl.core import aio
from llmctl.core.openai import CHAT, has_text, usage_tokens

MODEL = "bench-model"
ADMIN_KEY = "bench-admin"
_FILLER = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "the",
    "lazy",
    "dog",
    "while",
    "the",
    "model",
    "counts",
    "tokens",
]


@dataclass
class Round:
    cache: bool
    seconds: float
    ttfts: list[float] = field(default_factory=list)
    cached_ttfts: list[float] = field(default_factory=list)  # answers with x-cache: hit
    engine_ttfts: list[float] = field(default_factory=list)  # the others
    tokens: int = 0
    hits: int = 0
    coalesced: float = 0.0  # of the hits, how many waited for an identical request in flight

    @property
    def requests(self) -> int:
        return len(self.ttfts)


def workload(n: int, repeat: float, max_tokens: int, seed: int) -> list[bytes]:
    """`n` bodies in order: `round(n * repeat)` of them (never the first) repeat an earlier body
    exactly, chosen at random; the others are new."""
    rng = random.Random(seed)
    repeats = set(rng.sample(range(1, n), min(n - 1, round(n * repeat))))
    bodies: list[bytes] = []
    for i in range(n):
        if i in repeats:
            bodies.append(rng.choice(bodies))
            continue
        words = " ".join(rng.choice(_FILLER) for _ in range(150))
        body = {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"request {seed}-{i}: {words}"}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        bodies.append(json.dumps(body).encode())
    return bodies


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, result: Round) -> None:
    start = time.monotonic()
    ttft: float | None = None
    tail = b""
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        if r.status != 200:
            raise SystemExit(f"{url} answered {r.status}: {await r.text()}")
        hit = r.headers.get("x-cache") == "hit"
        async for chunk in r.content.iter_any():
            if ttft is None and has_text(chunk, CHAT.text_key):
                ttft = time.monotonic() - start
            tail = tail[-4096:] + chunk
    usage = usage_tokens(tail)
    result.tokens += usage[1] if usage else 0
    ttft = ttft if ttft is not None else time.monotonic() - start
    result.ttfts.append(ttft)
    if hit:
        result.hits += 1
        result.cached_ttfts.append(ttft)
    else:
        result.engine_ttfts.append(ttft)


async def _coalesced(session: aiohttp.ClientSession, base: str) -> float:
    async with session.get(base + "/metrics") as r:
        page = await r.text()
    found = re.search(r'llmctl_gateway_cache_lookups_total\{result="coalesced"\} (\S+)', page)
    return float(found.group(1)) if found else 0.0


async def _round(base: str, bodies: list[bytes], concurrency: int, cache: bool) -> Round:
    url = base + CHAT.path
    result = Round(cache, 0.0)
    queue = list(reversed(bodies))
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        if cache:
            purge = await session.delete(
                base + "/admin/cache", headers={"Authorization": f"Bearer {ADMIN_KEY}"}
            )
            purge.release()

        async def client() -> None:
            while queue:
                await _one(session, url, queue.pop(), result)

        before = await _coalesced(session, base) if cache else 0.0
        start = time.monotonic()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        result.seconds = time.monotonic() - start
        if cache:
            result.coalesced = await _coalesced(session, base) - before
    return result


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="rtx3090-qwen2.5-14b-awq")
    parser.add_argument("--time-scale", type=float, default=1.0)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-active", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=float, default=0.5, help="Share of repeated requests.")
    parser.add_argument("--rounds", type=int, default=3, help="Rounds per setting.")
    args = parser.parse_args()

    sim_port, off_port, on_port = free_port(), free_port(), free_port()
    engine = f"http://127.0.0.1:{sim_port}"
    bases = {False: f"http://127.0.0.1:{off_port}", True: f"http://127.0.0.1:{on_port}"}
    py = [sys.executable, "-m", "llmctl"]
    sim_args = [*py, "sim", "serve", "--port", str(sim_port), "--model", MODEL,
                "--profile", args.profile, "--time-scale", str(args.time_scale)]  # fmt: skip

    def gateway(port: int, cache: bool) -> list[str]:
        return [*py, "gateway", "serve", "--port", str(port), "--upstream", engine,
                "--max-active", str(args.max_active), "--queue-max", "1000",
                *(["--cache"] if cache else [])]  # fmt: skip

    os.environ["LLMCTL_ADMIN_KEY"] = ADMIN_KEY
    rounds: list[Round] = []
    with ExitStack() as children:
        children.enter_context(started(sim_args, engine + "/health"))
        for cache, base in bases.items():
            children.enter_context(
                started(gateway(on_port if cache else off_port, cache), base + "/health")
            )
        for n in range(args.rounds):
            bodies = workload(args.requests, args.repeat, args.max_tokens, seed=n)
            for cache in (False, True):
                result = aio.run(_round(bases[cache], bodies, args.concurrency, cache))
                rounds.append(result)
                print(
                    f"  round {n + 1} cache {'on ' if cache else 'off'}: "
                    f"{result.requests / result.seconds:6.1f} req/s, "
                    f"TTFT p50 {1000 * statistics.median(result.ttfts):7.1f} ms, "
                    f"{result.hits} hits",
                    file=sys.stderr,
                )

    summary = []
    print(f"\n{args.requests} requests a round, {args.repeat:.0%} repeated, "
          f"concurrency {args.concurrency}, MAX_ACTIVE {args.max_active}, "
          f"{args.max_tokens} tokens each, profile {args.profile}, {args.rounds} rounds each\n")  # fmt: skip
    print(
        "| cache | requests/s | tokens/s delivered | TTFT p50 | TTFT p95 | TTFT p50 of hits "
        "| TTFT p50 of the rest | hits (coalesced) per round |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for cache in (False, True):
        mine = [r for r in rounds if r.cache is cache]
        seconds = sum(r.seconds for r in mine)
        ttfts = [t for r in mine for t in r.ttfts]
        cached = [t for r in mine for t in r.cached_ttfts]
        rest_ttfts = [t for r in mine for t in r.engine_ttfts]
        row = {
            "cache": cache,
            "requests_per_s": sum(r.requests for r in mine) / seconds,
            "tokens_per_s": sum(r.tokens for r in mine) / seconds,
            "ttft_p50_ms": 1000 * statistics.median(ttfts),
            "ttft_p95_ms": 1000 * _pct(ttfts, 0.95),
            "hit_ttft_p50_ms": 1000 * statistics.median(cached) if cached else None,
            "rest_ttft_p50_ms": 1000 * statistics.median(rest_ttfts),
            "hits_per_round": sum(r.hits for r in mine) / len(mine),
            "coalesced_per_round": sum(r.coalesced for r in mine) / len(mine),
        }
        summary.append(row)
        hit_p50 = "–" if not cached else f"{row['hit_ttft_p50_ms']:.0f} ms"
        print(
            f"| {'on' if cache else 'off'} | {row['requests_per_s']:.1f} | "
            f"{row['tokens_per_s']:.0f} | {row['ttft_p50_ms']:.0f} ms | "
            f"{row['ttft_p95_ms']:.0f} ms | {hit_p50} | {row['rest_ttft_p50_ms']:.0f} ms | "
            f"{row['hits_per_round']:.0f} ({row['coalesced_per_round']:.0f}) |"
        )
    print(json.dumps({"benchmark": "cache_repeat", "args": vars(args), "results": summary}))


if __name__ == "__main__":
    main()
