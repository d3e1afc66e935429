"""What one request costs the gateway, in microseconds: time to the first streamed chunk via the
gateway minus direct, against an instant in-process engine.

    python benchmarks/gateway_request_cost.py [--requests 3000] [--repeat 3] [--with-tenants]
        [--log FILE] [--no-access-log]

One process, one event loop: a bare aiohttp engine that answers each chat completion with one
text frame and `[DONE]` at once, and `llmctl gateway serve`'s server (`start_gateway`) in front of
it. Requests go one at a time over one keep-alive connection, alternating direct and via, so the
difference of the two medians is the gateway's own per-request work (parsing, admission, the
upstream hop, metrics, the connection guard) with no engine time in it; the same for the whole
request (to its last byte), which also holds what the gateway does after the answer (counting it,
its access-log line). The gateway logs as `llmctl gateway serve` does, INFO and up, into `--log`
(default: the null device; stderr is sent there too). Compare two checkouts by running it with
each on PYTHONPATH, alternately; a change of 10 us shows over a few repeats.

`--with-tenants` adds a second gateway with a tenants file (two classes, a tenant with every limit
set and none binding) to the rotation; its requests carry the tenant's key and a class header.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

# Run as `python benchmarks/gateway_request_cost.py`, so this folder is on sys.path.
from _common import TENANT_KEY, tenants_file
from aiohttp import web

from llmctl.core import aio
from llmctl.core.config import load_gateway_config
from llmctl.gateway.server import start_gateway
from llmctl.gateway.tenants import CLASS_HEADER

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


async def _measure(
    requests: int, tenants: Path | None, extra: dict[str, object]
) -> tuple[dict[str, float], dict[str, float]]:
    """The median time to the first chunk and to the last byte of each target, in seconds."""
    engine, engine_port = await _engine()
    settings = {
        "upstream_url": f"http://127.0.0.1:{engine_port}",
        "model_name": "m",
        "port": 0,
        **extra,
    }
    gateways = [await start_gateway(load_gateway_config({}, settings))]
    plain = {"Content-Type": "application/json"}
    targets = {"direct": (engine_port, plain), "via": (int(gateways[0].addresses[0][1]), plain)}
    if tenants is not None:
        config = load_gateway_config({}, {**settings, "tenants_file": tenants})
        gateways.append(await start_gateway(config))
        auth = {**plain, "Authorization": f"Bearer {TENANT_KEY}", CLASS_HEADER: "interactive"}
        targets["tenants"] = (int(gateways[1].addresses[0][1]), auth)
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "stream": True}).encode()
    first: dict[str, list[float]] = {name: [] for name in targets}
    whole: dict[str, list[float]] = {name: [] for name in targets}
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(requests):
                for name, (port, headers) in targets.items():
                    url = f"http://127.0.0.1:{port}/v1/chat/completions"
                    start = time.perf_counter()
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.content.readany()
                        first[name].append(time.perf_counter() - start)
                        await resp.read()
                    whole[name].append(time.perf_counter() - start)
    finally:
        for gateway in gateways:
            await gateway.cleanup()
        await engine.cleanup()
    return (
        {name: statistics.median(samples) for name, samples in first.items()},
        {name: statistics.median(samples) for name, samples in whole.items()},
    )


def _added(p50: dict[str, float]) -> str:
    direct = p50["direct"]
    return ", ".join(
        f"{name} {(value - direct) * 1e6:.0f} us" for name, value in p50.items() if name != "direct"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="Requests per target.")
    parser.add_argument("--repeat", type=int, default=3, help="Runs (each a fresh gateway).")
    parser.add_argument(
        "--with-tenants", action="store_true", help="Also a gateway with a tenants file."
    )
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
    extra: dict[str, object] = {"access_log": False} if args.no_access_log else {}
    with tempfile.TemporaryDirectory() as folder:
        tenants = tenants_file(Path(folder)) if args.with_tenants else None
        for _ in range(args.repeat):
            first, whole = aio.run(_measure(args.requests, tenants, extra))
            print(
                "first chunk p50: "
                + ", ".join(f"{name} {value * 1e6:.0f} us" for name, value in first.items())
                + f"; added: {_added(first)}; whole request p50 added: {_added(whole)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
