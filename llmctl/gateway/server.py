"""Running the gateway: one process, one event loop (uvloop when installed), clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from aiohttp import web

from llmctl.core import aio
from llmctl.core.config import GatewayConfig
from llmctl.core.errors import ConfigError
from llmctl.gateway.app import build_app

log = logging.getLogger(__name__)

# Requests still running get this long to finish when the gateway is asked to stop.
SHUTDOWN_GRACE_S = 5.0


def check_single_worker(workers: int, environ: Mapping[str, str]) -> None:
    """Refuse setups that would run several gateway processes, each with its own MAX_ACTIVE.

    The admission limits live in the memory of one process; N workers would let N * MAX_ACTIVE
    requests reach the engine."""
    if workers != 1:
        raise ConfigError(
            f"--workers {workers}: the gateway must run as exactly one process, because each "
            "process holds its own MAX_ACTIVE and queue (N workers would admit N x MAX_ACTIVE)"
        )
    concurrency = environ.get("WEB_CONCURRENCY", "").strip()
    if concurrency not in ("", "1"):
        raise ConfigError(
            f"WEB_CONCURRENCY={concurrency}: the gateway must run as exactly one process "
            "(each process would hold its own MAX_ACTIVE); unset it or set it to 1"
        )


async def start_gateway(
    config: GatewayConfig, *, shutdown_grace_s: float = SHUTDOWN_GRACE_S
) -> web.AppRunner:
    """Start serving `config` on this loop; `runner.addresses` tells the bound port (for port 0)."""
    runner = web.AppRunner(
        build_app(config),
        handle_signals=False,
        access_log=None,
        # Cancel a handler the moment its client goes away, whatever it is waiting on (the queue,
        # the engine's headers, a stalled stream), so the slot and the upstream request are freed.
        handler_cancellation=True,
        shutdown_timeout=shutdown_grace_s,
    )
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=2048, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()  # closes the upstream pool too (no "Unclosed client session")
        raise ConfigError(
            f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
        ) from exc
    log.info(
        "gateway listening on http://%s:%s -> %s", config.host, config.port, config.upstream_url
    )
    return runner


async def serve_until_stopped(config: GatewayConfig) -> None:
    """Serve until SIGINT/SIGTERM, then drain and close."""
    runner = await start_gateway(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()


def run(config: GatewayConfig) -> None:
    """Serve in this process until stopped (the caller has run `check_single_worker`)."""
    aio.run(serve_until_stopped(config))
