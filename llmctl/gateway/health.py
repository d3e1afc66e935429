"""Watching the engines: readiness probes, load polls and DNS re-resolution, in the background.

- Every `probe_interval_s` each engine's `/v1/models` is asked whether it lists the model: the
  verdict puts the engine in rotation or takes it out (`GET /health` reports the pool); the context
  window it lists for each model (`max_model_len`) is kept for the gateway's length checks.
- Every `poll_interval_s` (sub-second) each engine's `/metrics` is read for the two load signals
  routing uses, `vllm:num_requests_waiting` and `vllm:kv_cache_usage_perc`, by a line scan rather
  than a full parse (vLLM's page is ~50 KB).
- With a DNS upstream (what a Kubernetes headless Service gives), the name is re-resolved every
  `dns_interval_s`, and the pool's members become exactly its addresses.

Nothing here runs per request. A probe that raises (a bug) marks the engine not ready and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from llmctl.core import metrics as m
from llmctl.core.openai import MODELS_PATH
from llmctl.gateway.engines import Engine, EnginePool

log = logging.getLogger(__name__)

_WAITING = f"\n{m.VLLM_WAITING.series}{{".encode()
_KV = f"\n{m.VLLM_KV_USAGE.series}{{".encode()
_PREEMPTIONS = f"\n{m.VLLM_PREEMPTIONS.series}{{".encode()


def lists_model(body: bytes, model_name: str | None) -> bool:
    """Whether a `/v1/models` answer lists a model (the configured one, when there is one)."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError, RecursionError):
        return False
    if not isinstance(data, list) or not data:
        return False
    if model_name is None:
        return True
    return any(isinstance(item, dict) and item.get("id") == model_name for item in data)


def model_windows(body: bytes) -> dict[str, int]:
    """Each listed model's context window (vLLM lists `max_model_len`); models without one are
    left out."""
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError, RecursionError):
        return {}
    if not isinstance(data, list):
        return {}
    return {
        item["id"]: item["max_model_len"]
        for item in data
        if isinstance(item, dict)
        and isinstance(item.get("id"), str)
        and isinstance(item.get("max_model_len"), int)
        and not isinstance(item.get("max_model_len"), bool)
    }


def gauge_sum(page: bytes, prefix: bytes) -> float | None:
    """The sum of every sample whose line starts with `prefix` (`\\nname{`); None if none does."""
    total, found, at = 0.0, False, page.find(prefix)
    while at >= 0:
        end = page.find(b"\n", at + 1)
        line = page[at + 1 : end if end >= 0 else len(page)]
        try:
            total += float(line.rsplit(b" ", 1)[1])
            found = True
        except (IndexError, ValueError):
            pass
        at = page.find(prefix, at + 1)
    return total if found else None


def dns_urls(scheme: str, infos: list[tuple[Any, ...]], port: int) -> list[str]:
    """Engine URLs for the addresses of a getaddrinfo answer, in a stable order."""
    hosts = sorted({str(info[4][0]) for info in infos})
    return [f"{scheme}://[{h}]:{port}" if ":" in h else f"{scheme}://{h}:{port}" for h in hosts]


class PoolMonitor:
    """Probes, polls and re-resolves the pool's engines until stopped."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        pool: EnginePool,
        *,
        model_name: str | None,
        probe_interval_s: float,
        poll_interval_s: float,
        dns: str | None = None,
        dns_interval_s: float = 5.0,
        on_change: Callable[[], None] = lambda: None,
        polling: Callable[[], bool] = lambda: True,
    ) -> None:
        self._session = session
        self.pool = pool
        self._model_name = model_name
        self._probe_interval_s = probe_interval_s
        self._poll_interval_s = poll_interval_s
        self._dns = dns
        self._dns_interval_s = dns_interval_s
        self._on_change = on_change
        self.polling = polling  # whether load signals are wanted now (routing, adaptive mode)
        self._tasks: list[asyncio.Task[None]] = []
        self.dns_detail = ""

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._probe_loop())]
        if self._poll_interval_s > 0:
            self._tasks.append(loop.create_task(self._poll_loop()))
        if self._dns is not None:
            self._tasks.append(loop.create_task(self._dns_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- readiness ---------------------------------------------------------------------------------

    async def probe(self, engine: Engine) -> bool:
        """Ask one engine whether it lists the model; record and return the verdict."""
        # Two intervals, but never under 2 s: a busy engine (or machine) is not a dead one.
        timeout = aiohttp.ClientTimeout(total=min(max(self._probe_interval_s * 2, 2.0), 5.0))
        try:
            async with self._session.get(engine.url + MODELS_PATH, timeout=timeout) as resp:
                body = await resp.read()
                if resp.status != 200:
                    ready, detail = False, f"engine answered HTTP {resp.status}"
                elif not lists_model(body, self._model_name):
                    ready, detail = (
                        False,
                        f"engine does not list {self._model_name or 'a model'} yet",
                    )
                else:
                    ready, detail = True, "ready"
                    engine.windows = model_windows(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            ready, detail = False, f"engine unreachable: {type(exc).__name__}"
        self._set(engine, ready, detail)
        return ready

    def mark_down(self, engine: Engine, why: str) -> None:
        """Take `engine` out of rotation now (a refused connection); the probe brings it back."""
        self._set(engine, False, why)

    def _set(self, engine: Engine, ready: bool, detail: str) -> None:
        if engine.set_ready(ready, detail):
            state = "ready" if ready else "not ready"
            log.info("engine %s %s (%s)", engine.name, state, detail)
            self._on_change()

    async def probe_all(self) -> None:
        engines = list(self.pool)
        results = await asyncio.gather(*(self.probe(e) for e in engines), return_exceptions=True)
        for engine, result in zip(engines, results, strict=True):
            if isinstance(result, Exception):
                # A bug here must not end probing for good: report it and call the engine down.
                log.error("engine probe failed: %r", result)
                self._set(engine, False, f"probe failed: {type(result).__name__}")

    async def _probe_loop(self) -> None:
        while True:
            await self.probe_all()
            await asyncio.sleep(self._probe_interval_s)

    # --- load signals ------------------------------------------------------------------------------

    async def poll(self, engine: Engine) -> None:
        timeout = aiohttp.ClientTimeout(total=max(self._poll_interval_s * 2, 1.0))
        try:
            async with self._session.get(engine.url + "/metrics", timeout=timeout) as resp:
                if resp.status != 200:
                    engine.polled = False
                    return
                page = b"\n" + await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            engine.polled = False
            return
        waiting, kv = gauge_sum(page, _WAITING), gauge_sum(page, _KV)
        # Nonsense (a page without them, negative or impossible values) counts as no signal.
        sane = waiting is not None and kv is not None and waiting >= 0 and 0 <= kv <= 1
        engine.polled = sane
        engine.waiting = waiting if sane and waiting is not None else 0.0
        engine.kv_usage = kv if sane and kv is not None else 0.0
        preemptions = gauge_sum(page, _PREEMPTIONS)
        engine.preemptions = preemptions if preemptions is not None and preemptions >= 0 else None

    async def _poll_loop(self) -> None:
        while True:
            if self.polling():
                engines = [e for e in self.pool if e.in_rotation()]
                await asyncio.gather(*(self.poll(e) for e in engines), return_exceptions=True)
            await asyncio.sleep(self._poll_interval_s)

    # --- membership --------------------------------------------------------------------------------

    async def resolve(self) -> None:
        """Re-resolve the DNS upstream and make the pool's members its addresses."""
        if self._dns is None:
            return
        parts = urlsplit(self._dns)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                parts.hostname, port, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            # Keep the last known members: a DNS hiccup must not empty the pool.
            self.dns_detail = f"{parts.hostname}: {exc.strerror or exc}"
            log.warning("cannot resolve %s: %s", parts.hostname, exc)
            return
        self.dns_detail = ""
        joined, left = self.pool.reconcile(dns_urls(parts.scheme, list(infos), port))
        for engine in joined:
            log.info("engine %s joined (DNS %s)", engine.name, parts.hostname)
        for engine in left:
            log.info("engine %s left (DNS %s); it drains", engine.name, parts.hostname)
        if joined:
            await asyncio.gather(*(self.probe(e) for e in joined), return_exceptions=True)
        if joined or left:
            self._on_change()

    async def _dns_loop(self) -> None:
        while True:
            await asyncio.sleep(self._dns_interval_s)
            await self.resolve()
