"""The gateway in front of the real simulator (`llmctl sim serve` as a child process)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
import pytest

from tests.exposition import Exposition
from tests.gateway.client import health_saying
from tests.gateway.conftest import MakeGateway
from tests.support import eventually, sim_server

MODEL = "llmctl-sim"


@contextmanager
def simulator(tmp_path: Path, *flags: str, ready: tuple[int, ...] = (200,)) -> Iterator[str]:
    """`llmctl sim serve --port 0` serving MODEL; yields the URL its banner names."""
    with sim_server(tmp_path / "sim.log", "--model", MODEL, *flags, ready_status=ready) as sim:
        yield sim.url


def test_openai_client_through_gateway_to_simulator(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    from openai import OpenAI

    with simulator(tmp_path, "--startup-delay", "1.5", ready=(200, 503)) as sim_url:
        gw = make_gateway(upstream_url=sim_url, model_name=MODEL, health_interval_s=0.1)
        # A probe found the engine loading (not the 503 from before the gateway's first probe).
        assert health_saying(gw.url, "engine answered HTTP 503").status_code == 503
        eventually(lambda: httpx.get(gw.url + "/health").status_code == 200, timeout=10.0)
        client = OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
        try:
            full = client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": "hello"}],
                max_tokens=12,
                extra_body={"ignore_eos": True},
            )
            assert full.usage is not None
            assert full.usage.completion_tokens == 12
            parts = list(
                client.completions.create(
                    model=MODEL,
                    prompt="once upon a time",
                    max_tokens=9,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_body={"ignore_eos": True},
                )
            )
            assert parts[-1].usage is not None
            assert parts[-1].usage.completion_tokens == 9
        finally:
            client.close()
        assert gw.metric("llmctl_gateway_completion_tokens_total") == 21
        assert gw.metric("llmctl_gateway_requests_total", reason="ok") == 2


async def _chaos_client(
    session: aiohttp.ClientSession, url: str, rng: random.Random
) -> tuple[str, int | None]:
    """One request whose client may leave while queued, mid-stream or waiting for a full answer."""
    plan = rng.choices(
        ["leave-early", "leave-mid-stream", "leave-waiting", "stay"], weights=[15, 15, 15, 55]
    )[0]
    stream = plan == "leave-mid-stream" or (plan != "leave-waiting" and rng.random() < 0.6)
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "chaos " * rng.randint(1, 40)}],
        "max_tokens": rng.randint(20, 80) if stream else rng.randint(150, 400),
        "ignore_eos": True,
        "stream": stream,
    }
    early_s = rng.uniform(0.001, 0.05)
    waiting_s = rng.uniform(0.3, 1.5)
    await asyncio.sleep(rng.uniform(0, 2.0))  # arrivals spread over two seconds

    async def go() -> int:
        async with session.post(url + "/v1/chat/completions", json=body) as resp:
            if plan == "leave-mid-stream":
                await resp.content.readany()
                raise asyncio.CancelledError
            await resp.read()
            return resp.status

    try:
        if plan == "leave-early":
            return plan, await asyncio.wait_for(go(), early_s)
        if plan == "leave-waiting":
            return plan, await asyncio.wait_for(go(), waiting_s)
        return plan, await go()
    except (TimeoutError, asyncio.CancelledError):
        return plan, None


@pytest.mark.slow
def test_chaos_leaves_no_trace(make_gateway: MakeGateway, tmp_path: Path) -> None:
    faults = ["--error-rate", "0.1", "--drop-rate", "0.15", "--stall-rate", "0.05", "--seed", "7"]
    with simulator(tmp_path, "--profile", "tiny", *faults) as sim_url:
        gw = make_gateway(
            upstream_url=sim_url,
            model_name=MODEL,
            max_active=8,
            queue_max=200,
            queue_timeout_s=20,
            request_timeout_s=1.5,  # stalled requests end at the deadline
            admin_key="admin",
        )
        rng = random.Random(1234)

        async def storm() -> list[tuple[str, int | None]]:
            connector = aiohttp.TCPConnector(limit=0, force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                return list(
                    await asyncio.gather(*(_chaos_client(session, gw.url, rng) for _ in range(80)))
                )

        outcomes = asyncio.run(storm())
        idle_after = gw.wait_idle(timeout=2.0)
        plans = Counter(plan for plan, _ in outcomes)
        statuses = Counter(status for _, status in outcomes)
        summary = f"plans={plans} statuses={statuses} idle_after={idle_after:.2f}s"
        stages = {
            stage: gw.metric("llmctl_gateway_client_disconnects_total", stage=stage)
            for stage in ("queued", "waiting", "streaming")
        }
        summary += f" disconnects={stages}"
        assert all(count >= 1 for count in stages.values()), summary
        assert min(plans.values()) >= 1, summary
        assert statuses[200] > 20, summary
        assert statuses[500] >= 1, summary  # injected engine errors passed through
        assert gw.metric("llmctl_gateway_client_disconnects_total") >= 10, summary
        assert gw.metric("llmctl_gateway_upstream_errors_total", kind="stream") >= 1, summary
        assert gw.gateway.admission.active == 0
        assert gw.gateway.admission.queued == 0
        # One outcome per request: none counted twice, none that got an answer left out.
        answered = sum(1 for _, status in outcomes if status is not None)
        counted = gw.metric("llmctl_gateway_requests_total")
        assert answered <= counted <= len(outcomes), summary + f" counted={counted}"
        # The engine saw every abandoned request closed: nothing left running or waiting there.
        _wait_engine_idle(sim_url)

        # Full capacity at once: with no queue, MAX_ACTIVE simultaneous requests all get in.
        httpx.put(
            gw.url + "/admin/limits",
            json={"queue_max": 0},
            headers={"Authorization": "Bearer admin"},
        ).raise_for_status()

        async def capacity() -> list[tuple[int, str]]:
            body = {
                "model": MODEL,
                "messages": [{"role": "user", "content": "x"}],
                "max_tokens": 50,
            }
            async with aiohttp.ClientSession() as session:

                async def one() -> tuple[int, str]:
                    async with session.post(gw.url + "/v1/chat/completions", json=body) as resp:
                        await resp.read()
                        return resp.status, resp.headers.get("X-Queue-Wait-Ms", "")

                return list(await asyncio.gather(*(one() for _ in range(8))))

        answers = asyncio.run(capacity())
        assert all(status != 429 for status, _ in answers), answers
        assert all(wait == "0.0" for _, wait in answers), answers
        gw.wait_idle()


def _wait_engine_idle(sim_url: str, timeout: float = 2.0) -> None:
    def idle() -> bool:
        page = Exposition.scrape(f"{sim_url}/metrics")
        busy = page.total("vllm:num_requests_running") + page.total("vllm:num_requests_waiting")
        assert busy == 0, f"the engine is busy with {busy} requests"
        return True

    eventually(idle, timeout=timeout, interval=0.05)
