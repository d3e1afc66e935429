"""Running the gateway: one process, one event loop (uvloop when installed), clean shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from llmctl.core import aio
from llmctl.core.config import GatewayConfig
from llmctl.core.errors import ConfigError
from llmctl.gateway.app import build_app
from llmctl.gateway.connections import ConnectionGuard, GuardedSite, limits_for

log = logging.getLogger(__name__)

# Requests still running get this long to finish when the gateway is asked to stop.
SHUTDOWN_GRACE_S = 5.0


class OneLineParseErrors(logging.Filter):
    """aiohttp logs each malformed request with a full traceback; one short line says as much."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            # Client bytes: whitespace folded, anything unprintable dropped, a short prefix kept.
            what = "".join(c for c in " ".join(str(exc.message).split()) if c.isprintable())[:120]
            record.msg, record.args = "malformed request from %s: %s", (peer, what)
            record.exc_info, record.exc_text, record.levelno = None, None, logging.INFO
            record.levelname = "INFO"
        return True


def quiet_malformed_requests() -> None:
    """Install OneLineParseErrors on aiohttp's server logger (once)."""
    logger = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, OneLineParseErrors) for f in logger.filters):
        logger.addFilter(OneLineParseErrors())


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
    guard = ConnectionGuard(
        limits_for(config.max_connections, config.fd_reserve, config.header_timeout_s)
    )
    quiet_malformed_requests()
    runner = web.AppRunner(
        build_app(config, guard),
        handle_signals=False,
        access_log=None,
        # Cancel a handler the moment its client goes away, whatever it is waiting on (the queue,
        # the engine's headers, a stalled stream), so the slot and the upstream request are freed.
        handler_cancellation=True,
        shutdown_timeout=shutdown_grace_s,
        # aiohttp's keep-alive timer also runs from accept until the first request.
        keepalive_timeout=config.idle_timeout_s,
    )
    await runner.setup()
    site = GuardedSite(
        runner, guard, host=config.host, port=config.port, backlog=2048, reuse_address=True
    )
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
