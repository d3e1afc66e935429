"""Which upstream HTTP client the gateway should use: latency added by bare proxies, side by side.

    python benchmarks/gateway_client_choice.py [--samples 1500] [--streams 64]
        [--profile tiny] [--time-scale 50] [--gap-ms 0]

Starts `llmctl sim serve --profile tiny --time-scale 50` (fast, so the proxies' own cost shows),
`llmctl gateway serve`, and two bare aiohttp-server proxies in child processes: one whose upstream
client is aiohttp, one whose upstream client is httpx. Then, one request at a time and rotating
over the targets, measures time to the first streamed chunk (`--gap-ms` apart: with a real-GPU
profile use 70, so the simulator is idle at each arrival); then `--streams` concurrent streams per
target for token throughput. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack

import aiohttp

# Run as `python benchmarks/gateway_client_choice.py`, so this folder is on sys.path.
from _common import free_port, started

from llmctl.core import aio

MODEL = "bench-model"

_PROXY = """
import asyncio, sys
from aiohttp import web
UP, PORT, KIND = sys.argv[1], int(sys.argv[2]), sys.argv[3]

async def main():
    if KIND == "aiohttp":
        import aiohttp
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async def handle(request):
            body = await request.read()
            headers = {"Content-Type": "application/json"}
            async with session.post(UP + request.path, data=body, headers=headers) as up:
                out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await out.prepare(request)
                async for chunk in up.content.iter_any():
                    await out.write(chunk)
                return out
    else:
        import httpx
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=1000)
        client = httpx.AsyncClient(limits=limits, timeout=None)
        async def handle(request):
            body = await request.read()
            req = client.build_request("POST", UP + request.path, content=body,
                                       headers={"Content-Type": "application/json"})
            up = await client.send(req, stream=True)
            try:
                out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
                await out.prepare(request)
                async for chunk in up.aiter_raw():
                    await out.write(chunk)
                return out
            finally:
                await up.aclose()
    app = web.Application()
    app.router.add_post("/v1/completions", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", PORT).start()
    await asyncio.Event().wait()

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""


async def _latency(targets: dict[str, str], samples: int, gap_s: float) -> dict[str, list[float]]:
    body = json.dumps({"model": MODEL, "prompt": "Hello", "max_tokens": 2, "stream": True}).encode()
    out: dict[str, list[float]] = {name: [] for name in targets}
    names = list(targets)
    async with aiohttp.ClientSession() as session:
        for i in range((samples + 10) * len(names)):
            name = names[i % len(names)]
            start = time.perf_counter()
            async with session.post(
                targets[name] + "/v1/completions",
                data=body,
                headers={"Content-Type": "application/json"},
            ) as resp:
                await resp.content.readany()
                elapsed = time.perf_counter() - start
                await resp.read()
            if i >= 10 * len(names):
                out[name].append(elapsed)
            if gap_s:
                await asyncio.sleep(gap_s)
    return out


async def _throughput(url: str, streams: int, max_tokens: int) -> float:
    body = json.dumps(
        {"model": MODEL, "prompt": "Hello", "max_tokens": max_tokens, "ignore_eos": True,
         "stream": True}
    ).encode()  # fmt: skip
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one() -> int:
            async with session.post(
                url + "/v1/completions", data=body, headers={"Content-Type": "application/json"}
            ) as resp:
                n = 0
                async for chunk in resp.content.iter_any():
                    n += chunk.count(b'"finish_reason":null')
                return n

        start = time.perf_counter()
        tokens = sum(await asyncio.gather(*(one() for _ in range(streams))))
        return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=1500)
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--time-scale", default="50")
    parser.add_argument("--gap-ms", type=float, default=0.0, help="Pause between latency samples.")
    args = parser.parse_args()
    ports = {name: free_port() for name in ("direct", "gateway", "aiohttp", "httpx")}
    direct = f"http://127.0.0.1:{ports['direct']}"
    py = [sys.executable, "-m", "llmctl"]
    commands = {
        "direct": [*py, "sim", "serve", "--port", str(ports["direct"]), "--model", MODEL,
                   "--profile", args.profile, "--time-scale", args.time_scale],
        "gateway": [*py, "gateway", "serve", "--port", str(ports["gateway"]), "--upstream", direct,
                    "--max-active", "1024", "--queue-max", "0"],
        **{kind: [sys.executable, "-c", _PROXY, direct, str(ports[kind]), kind]
           for kind in ("aiohttp", "httpx")},
    }  # fmt: skip
    targets = {
        "direct": direct,
        "llmctl gateway (aiohttp client)": f"http://127.0.0.1:{ports['gateway']}",
        "bare proxy, aiohttp client": f"http://127.0.0.1:{ports['aiohttp']}",
        "bare proxy, httpx client": f"http://127.0.0.1:{ports['httpx']}",
    }
    # The bare proxies route only completions, so readiness is one tiny completion through each.
    probe = {"model": MODEL, "prompt": "x", "max_tokens": 1}
    with ExitStack() as children:
        for name, argv in commands.items():
            url = f"http://127.0.0.1:{ports[name]}/v1/completions"
            children.enter_context(started(argv, url, post_json=probe, stderr=subprocess.DEVNULL))
        lat = aio.run(_latency(targets, args.samples, args.gap_ms / 1000))
        tput = {
            name: aio.run(_throughput(url, args.streams, args.max_tokens))
            for name, url in targets.items()
        }
    base = statistics.median(lat["direct"]) * 1000
    print(f"| target | first chunk p50 | added p50 | tok/s at {args.streams} streams |")
    print("|---|---:|---:|---:|")
    for name, samples in lat.items():
        p50 = statistics.median(samples) * 1000
        print(f"| {name} | {p50:.3f} ms | {p50 - base:+.3f} ms | {tput[name]:.0f} |")


if __name__ == "__main__":
    main()
