"""Engine readiness: a background probe of the upstream `/v1/models`, read by `GET /health`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import aiohttp

from llmctl.core.openai import MODELS_PATH

log = logging.getLogger(__name__)


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


class EngineProbe:
    """Polls the engine every `interval_s`; `ready` is the last answer's verdict."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        upstream_url: str,
        model_name: str | None,
        interval_s: float,
    ) -> None:
        self._session = session
        self._url = upstream_url + MODELS_PATH
        self._model_name = model_name
        self._interval_s = interval_s
        self.ready = False
        self.detail = "not probed yet"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def probe(self) -> bool:
        timeout = aiohttp.ClientTimeout(total=min(self._interval_s * 2, 5.0))
        try:
            async with self._session.get(self._url, timeout=timeout) as resp:
                body = await resp.read()
                if resp.status != 200:
                    self.ready, self.detail = False, f"engine answered HTTP {resp.status}"
                elif not lists_model(body, self._model_name):
                    wanted = self._model_name or "a model"
                    self.ready, self.detail = False, f"engine does not list {wanted} yet"
                else:
                    self.ready, self.detail = True, "ready"
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.ready, self.detail = False, f"engine unreachable: {type(exc).__name__}"
        return self.ready

    async def _run(self) -> None:
        while True:
            was_ready = self.ready
            try:
                await self.probe()
            except Exception as exc:
                # A bug here must not end the probe for good: /health would be stuck on its last
                # verdict. Report it, call the engine not ready, and probe again.
                log.exception("engine probe failed")
                self.ready, self.detail = False, f"probe failed: {type(exc).__name__}"
            if self.ready != was_ready:
                log.info("engine %s (%s)", "ready" if self.ready else "not ready", self.detail)
            await asyncio.sleep(self._interval_s)
