"""A crash in the engine loop fails requests and /health loudly instead of hanging clients."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from aiohttp import web

from llmctl.sim.config import SimConfig
from llmctl.sim.scheduler import StepPlan
from llmctl.sim.server import ENGINE, READY, build_app


def _boom(now: float) -> StepPlan:
    raise RuntimeError("injected scheduler bug")


async def _scenario() -> tuple[int, str, int, int]:
    runner = web.AppRunner(build_app(SimConfig(port=0)), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            await runner.app[READY].wait()
            setattr(runner.app[ENGINE].scheduler, "schedule", _boom)  # noqa: B010
            body = {"prompt": "x", "max_tokens": 5, "ignore_eos": True}

            async def streamed() -> str:
                async with session.post(
                    url + "/v1/completions", json={**body, "stream": True}
                ) as r:
                    try:
                        await r.read()
                    except aiohttp.ClientPayloadError:
                        return "cut"
                    return "whole"

            async def whole() -> tuple[int, str]:
                async with session.post(url + "/v1/completions", json=body) as r:
                    return r.status, (await r.json())["error"]["code"]

            (status, code), stream_end = await asyncio.gather(whole(), streamed())
            health = (await session.get(url + "/health")).status
            after = (await session.post(url + "/v1/completions", json=body)).status
            assert stream_end == "cut"
            return status, code, health, after
    finally:
        await runner.cleanup()


def test_engine_crash_fails_requests_and_health(caplog: pytest.LogCaptureFixture) -> None:
    status, code, health, after = asyncio.run(_scenario())
    assert (status, code) == (500, "engine_failed")
    assert health == 503
    assert after == 500
    assert "the simulated engine loop died" in caplog.text
