"""The server sampler sends the target's API key only to /metrics URLs of the target's origin."""

from __future__ import annotations

import asyncio

from aiohttp import web

from llmctl.bench.sampler import ServerSampler, origin


async def _metrics_server(seen: list[str | None]) -> tuple[web.AppRunner, str]:
    async def metrics(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.Response(text="llmctl_gateway_queue_depth 2\n")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


def test_the_api_key_goes_only_to_the_targets_origin() -> None:
    target_seen: list[str | None] = []
    other_seen: list[str | None] = []

    async def scenario() -> float | None:
        target_runner, target = await _metrics_server(target_seen)
        other_runner, other = await _metrics_server(other_seen)
        sampler = ServerSampler(
            [f"{target}/metrics", f"{other}/metrics"],
            60.0,
            {"Authorization": "Bearer secret"},
            trusted=f"{target}/",
        )
        sampler.open()
        try:
            await sampler.start()
            report = await sampler.stop()
        finally:
            await sampler.close()
            await target_runner.cleanup()
            await other_runner.cleanup()
        return report.peak_gateway_queue_depth

    assert asyncio.run(scenario()) == 2.0
    assert target_seen == ["Bearer secret", "Bearer secret"]
    assert other_seen == [None, None]


def test_origins_compare_scheme_host_and_port() -> None:
    assert origin("http://127.0.0.1:8080/metrics") == origin("http://127.0.0.1:8080")
    assert origin("http://h/metrics") == origin("http://h:80/x")
    assert origin("http://h:8080") != origin("http://h:8000")
    assert origin("http://h:8080") != origin("https://h:8080")
    assert origin("http://127.0.0.1:8080") != origin("http://localhost:8080")
