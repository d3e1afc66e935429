"""What one request costs the gateway, in microseconds: time to the first streamed chunk via the
gateway minus direct, against an instant in-process engine.

    python benchmarks/gateway_request_cost.py [--requests 3000] [--repeat 3] [--log FILE]

One process, one event loop: a bare aiohttp engine that answers each chat completion with one
text frame and `[DONE]` at once, and `llmctl gateway serve`'s server (`start_gateway`) in front of
it. Requests go one at a time over one keep-alive connection, alternating direct and via, so the
difference of the two medians is the gateway's own per-request work (parsing, admission, the
upstream hop, metrics, the connection guard) with no engine time in it; the same for the whole
request (to its last byte), which also holds what the gateway does after the answer (counting it,
its access-log line). The gateway logs as `llmctl gateway serve` does, INFO and up, into `--log`
(default: the null device; stderr is sent there too). Compare two checkouts by running it with
each on PYTHONPATH, alternately; a change of 10 us shows over a few repeats.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time

import aiohttp
from aiohttp import web

from llmctl.core import aio
from llmctl.core.config import load_gateway_config
from llmctl.gateway.server import start_gateway

FRAME = b'data: {"choices":[{"delta":{"content":"x"}}]}\n\n'


async def _engine() -> tuple[web.AppRunner, int]:
    async def models(_: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": "m"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(FRAME)
        await resp.write(b"data: [DONE]\n\n")
        return resp

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])


async def _measure(requests: int, settings: dict[str, object]) -> tuple[float, float, float, float]:
    engine, engine_port = await _engine()
    config = load_gateway_config(
        {},
        {
            "upstream_url": f"http://127.0.0.1:{engine_port}",
            "model_name": "m",
            "port": 0,
            **settings,
        },
    )
    gateway = await start_gateway(config)
    gateway_port = int(gateway.addresses[0][1])
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    headers = {"Content-Type": "application/json"}
    seconds: dict[int, list[float]] = {engine_port: [], gateway_port: []}
    whole: dict[int, list[float]] = {engine_port: [], gateway_port: []}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(requests):
                for port, samples in seconds.items():
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    start = time.perf_counter()
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.content.readany()
                        samples.append(time.perf_counter() - start)
                        await resp.read()
                    whole[port].append(time.perf_counter() - start)
    finally:
        await gateway.cleanup()
        await engine.cleanup()
    return (
        statistics.median(seconds[engine_port]),
        statistics.median(seconds[gateway_port]),
        statistics.median(whole[engine_port]),
        statistics.median(whole[gateway_port]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="Requests per target.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs (each a fresh gateway).")
    parser.add_argument("--log", default=os.devnull, help="Where the gateway's log goes.")
    parser.add_argument(
        "--no-access-log", action="store_true", help="Without the access log (where it exists)."
    )
    args = parser.parse_args()
    # As `gateway serve` logs (the access log writes to stderr, other lines through logging).
    log = open(args.log, "a")  # noqa: SIM115 - open for the whole run
    sys.stderr = log
    logging.basicConfig(
        level=logging.INFO, stream=log, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for _ in range(args.repeat):
        settings = {"access_log": False} if args.no_access_log else {}
        direct, via, direct_all, via_all = aio.run(_measure(args.requests, settings))
        print(
            f"first chunk p50: direct {direct * 1e6:.0f} us, via {via * 1e6:.0f} us, "
            f"added {(via - direct) * 1e6:.0f} us; whole request p50 added "
            f"{(via_all - direct_all) * 1e6:.0f} us",
            flush=True,
        )


if __name__ == "__main__":
    main()
