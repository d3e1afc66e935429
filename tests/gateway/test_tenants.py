"""Tenants over real sockets: keys from the tenants file, classes, fair sharing of one slot, a
tenant's own concurrency limit, request and token limits with OpenAI's headers, usage asked of the
engine and hidden from the client, and the class passed on as vLLM's priority."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from llmctl.gateway.tenants import add_key, add_tenant, key_hash, load_tenants
from tests.gateway.client import Answer, chat, post, run_post
from tests.gateway.conftest import GatewayHandle, MakeGateway
from tests.gateway.upstream import FakeEngine

KEYS = {"chat": "sk-chat", "batch": "sk-batch", "capped": "sk-capped", "limited": "sk-limited"}


def _tenants_file(tmp_path: Path, extra: str = "", interactive: str = "") -> Path:
    path = tmp_path / "tenants.toml"
    path.write_text(
        f"""
[classes.interactive]
rank = 0
{interactive}
[classes.batch]
rank = 1

[[tenants]]
name = "chat"
class = "interactive"
keys = ["{key_hash(KEYS["chat"])}"]

[[tenants]]
name = "nightly"
class = "batch"
keys = ["{key_hash(KEYS["batch"])}"]

[[tenants]]
name = "capped"
max_concurrent = 1
keys = ["{key_hash(KEYS["capped"])}"]

[[tenants]]
name = "limited"
requests_per_minute = 3
tokens_per_minute = 400
default_max_tokens = 50
keys = ["{key_hash(KEYS["limited"])}"]
{extra}
"""
    )
    return path


def _auth(tenant: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[tenant]}"}


@pytest.fixture
def gateway(make_gateway: MakeGateway, tmp_path: Path) -> GatewayHandle:
    return make_gateway(tenants_file=_tenants_file(tmp_path), api_keys=["sk-legacy"], max_active=1)


def test_keys_come_from_the_tenants_file_and_plain_keys_keep_working(
    gateway: GatewayHandle,
) -> None:
    assert run_post(gateway.url, chat(), headers=_auth("chat")).status == 200
    assert (
        run_post(gateway.url, chat(), headers={"Authorization": "Bearer sk-legacy"}).status == 200
    )
    assert run_post(gateway.url, chat(), headers={"Authorization": "Bearer sk-nope"}).status == 401
    assert run_post(gateway.url, chat()).status == 401
    assert gateway.metric("llmctl_gateway_tenant_requests_total", tenant="chat", reason="ok") == 1
    assert gateway.metric("llmctl_gateway_tenant_requests_total", tenant="default") == 1


@pytest.mark.parametrize(
    ("key", "status"), [(KEYS["chat"], 200), ("sk-legacy", 200), ("sk-nope", 401), (None, 401)]
)
def test_the_models_list_takes_the_same_keys(
    gateway: GatewayHandle, engine: FakeEngine, key: str | None, status: int
) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    assert httpx.get(f"{gateway.url}/v1/models", headers=headers).status_code == status
    assert engine.models_auth[-1:] in ([], [None])  # no tenant's key goes to the engine


def test_a_request_may_lower_its_class_never_raise_it(gateway: GatewayHandle) -> None:
    lowered = run_post(gateway.url, chat(), headers={**_auth("chat"), "X-Llmctl-Class": "batch"})
    assert lowered.headers["X-Llmctl-Class"] == "batch"
    raised = run_post(
        gateway.url, chat(), headers={**_auth("batch"), "X-Llmctl-Class": "interactive"}
    )
    assert raised.headers["X-Llmctl-Class"] == "batch"


async def _posts(
    url: str, bodies: list[tuple[str, dict[str, Any], float]]
) -> list[tuple[str, float, Answer]]:
    """Each body sent by its tenant after its delay; (tenant, seconds to the answer, answer)."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(tenant: str, body: dict[str, Any], delay: float) -> tuple[str, float, Answer]:
            await asyncio.sleep(delay)
            start = time.monotonic()
            answer = await post(session, url, body, headers=_auth(tenant))
            return tenant, time.monotonic() - start, answer

        return list(await asyncio.gather(*(one(*b) for b in bodies)))


def test_a_flood_delays_another_tenant_by_at_most_a_service_time(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    path = _tenants_file(tmp_path)
    gw = make_gateway(tenants_file=path, max_active=1, queue_max=100)
    service = 0.1
    bodies = [("batch", chat({"delay": service}), 0.0) for _ in range(15)]
    bodies.append(("chat", chat({"delay": service}), 0.35))  # arrives behind 15 queued batch
    results = asyncio.run(_posts(gw.url, bodies))
    assert all(a.status == 200 for _, _, a in results)
    waited = next(elapsed for tenant, elapsed, _ in results if tenant == "chat")
    # Its own service plus at most the one request being served when it arrived (and slack).
    assert waited < 2 * service + 0.15, waited


def test_a_reserve_lets_an_interactive_request_start_while_batch_fills_the_rest(
    make_gateway: MakeGateway, tmp_path: Path, engine: FakeEngine
) -> None:
    # Batch requests of one length take and free their slots together: without a reserve, an
    # interactive request arriving just after they took every slot waits their whole service.
    path = _tenants_file(tmp_path, interactive="reserve = 0.5")
    gw = make_gateway(tenants_file=path, max_active=4, queue_max=100)
    service = 0.4
    bodies = [("chat", chat({"delay": 0.05}), 0.0)]  # the class is in use
    bodies += [("batch", chat({"delay": service}), 0.1) for _ in range(8)]
    bodies.append(("chat", chat({"delay": 0.05}), 0.2))  # batch holds what it may
    results = asyncio.run(_posts(gw.url, bodies))
    assert all(a.status == 200 for _, _, a in results)
    late_chat = [elapsed for tenant, elapsed, _ in results if tenant == "chat"][-1]
    assert late_chat < 0.05 + 0.15, late_chat  # it started at once
    batch = sorted(elapsed for tenant, elapsed, _ in results if tenant == "batch")
    # Two of the four slots for batch: four rounds of two, never more than two at a time.
    assert batch[-1] > 4 * service - 0.05, batch
    assert engine.max_in_flight <= 3


def test_a_reserve_lapses_while_its_class_is_idle(
    make_gateway: MakeGateway, tmp_path: Path, engine: FakeEngine
) -> None:
    path = _tenants_file(tmp_path, interactive="reserve = 0.5")
    gw = make_gateway(tenants_file=path, max_active=4, queue_max=100)
    service = 0.3
    bodies = [("batch", chat({"delay": service}), 0.0) for _ in range(8)]
    results = asyncio.run(_posts(gw.url, bodies))
    assert all(a.status == 200 for _, _, a in results)
    # No interactive request ever came: batch has every slot, two rounds of four.
    assert max(elapsed for _, elapsed, _ in results) < 2 * service + 0.2
    assert engine.max_in_flight == 4


def test_a_tenant_at_its_own_concurrency_limit_lets_the_others_pass(
    make_gateway: MakeGateway, tmp_path: Path, engine: FakeEngine
) -> None:
    gw = make_gateway(tenants_file=_tenants_file(tmp_path), max_active=4, queue_max=20)
    bodies = [("capped", chat({"delay": 0.2}), 0.0) for _ in range(4)]
    bodies += [("chat", chat({"delay": 0.2}), 0.05) for _ in range(3)]
    results = asyncio.run(_posts(gw.url, bodies))
    chat_times = [elapsed for tenant, elapsed, _ in results if tenant == "chat"]
    capped_times = sorted(elapsed for tenant, elapsed, _ in results if tenant == "capped")
    assert max(chat_times) < 0.4  # not stuck behind the capped tenant's queue
    assert capped_times[-1] > 0.7  # one at a time: four in a row
    assert engine.max_in_flight <= 4


def test_request_and_token_limits_refuse_only_at_the_limit(gateway: GatewayHandle) -> None:
    # Each estimate: ~2 prompt tokens + max_tokens; usage from the engine: 7 + 3 = 10.
    answers = [
        run_post(gateway.url, chat(max_tokens=100), headers=_auth("limited")) for _ in range(4)
    ]
    assert [a.status for a in answers] == [200, 200, 200, 429]
    first, refused = answers[0], answers[3]
    assert first.headers["x-ratelimit-limit-requests"] == "3"
    assert first.headers["x-ratelimit-remaining-requests"] == "2"
    assert first.headers["x-ratelimit-limit-tokens"] == "400"
    assert refused.error_code == "rate_limited"
    assert 50 <= int(refused.headers["Retry-After"]) <= 61
    exact_ms = int(refused.headers["retry-after-ms"])  # the same wait, to the millisecond
    assert int(refused.headers["Retry-After"]) == max(1, math.floor(exact_ms / 1000 + 0.5))
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    # The token charge was settled to the engine's usage (10 each), not the 100+ estimates.
    limits = gateway.gateway.tenancy
    assert limits is not None
    tokens = limits.by_name["limited"].tokens
    assert tokens is not None
    assert tokens.used(time.monotonic()) == pytest.approx(30)
    assert (
        gateway.metric("llmctl_gateway_rate_limited_total", tenant="limited", limit="requests") == 1
    )


def _age_charges(gateway: GatewayHandle, tenant: str, seconds: float) -> None:
    """Move the tenant's request log `seconds` into the past (a minute is long to wait for)."""
    tenancy = gateway.gateway.tenancy
    assert tenancy is not None
    limit = tenancy.by_name[tenant].requests
    assert limit is not None
    for charge in limit._log:
        charge.at -= seconds


def test_a_limit_that_frees_within_seconds_holds_the_request_instead(
    gateway: GatewayHandle,
) -> None:
    # Retry-After is whole seconds: a 429 for a sub-second wait would say five times too long.
    for _ in range(3):
        assert run_post(gateway.url, chat(max_tokens=5), headers=_auth("limited")).status == 200
    _age_charges(gateway, "limited", 60 - 1.5)  # the oldest leaves the window in 1.5 s
    start = time.monotonic()
    held = run_post(gateway.url, chat(max_tokens=5), headers=_auth("limited"))
    waited = time.monotonic() - start
    assert held.status == 200
    assert 1.4 <= waited <= 2.5, waited
    time.sleep(0.1)  # the other two first charges leave the window too
    for _ in range(2):
        assert run_post(gateway.url, chat(max_tokens=5), headers=_auth("limited")).status == 200
    # Three charges in the window again, the oldest 50 s old: the next frees in about 10 s, so
    # this one is refused and told to come back in the nearest whole second.
    _age_charges(gateway, "limited", 50)
    refused = run_post(gateway.url, chat(max_tokens=5), headers=_auth("limited"))
    assert refused.status == 429
    exact_s = int(refused.headers["retry-after-ms"]) / 1000
    assert int(refused.headers["Retry-After"]) == round(exact_s)
    assert abs(int(refused.headers["Retry-After"]) - exact_s) <= 0.2 * exact_s
    assert (
        gateway.metric("llmctl_gateway_rate_limited_total", tenant="limited", limit="requests") == 1
    )


def test_stream_usage_is_asked_of_the_engine_and_hidden_from_the_client(
    gateway: GatewayHandle, engine: FakeEngine
) -> None:
    ans = run_post(gateway.url, chat(stream=True), headers=_auth("chat"))
    assert ans.status == 200
    assert engine.bodies[-1]["stream_options"] == {"include_usage": True}
    assert b'"usage"' not in ans.body
    assert ans.body.rstrip().endswith(b"data: [DONE]")
    assert (
        gateway.metric("llmctl_gateway_tenant_tokens_total", tenant="chat", kind="completion") == 3
    )
    asked = run_post(
        gateway.url,
        chat(stream=True, stream_options={"include_usage": True}),
        headers=_auth("chat"),
    )
    assert b'"usage"' in asked.body  # asked for: kept


def test_the_class_rides_along_as_vllm_priority(
    make_gateway: MakeGateway, tmp_path: Path, engine: FakeEngine
) -> None:
    gw = make_gateway(tenants_file=_tenants_file(tmp_path), priority_to_engine=True)
    run_post(gw.url, chat(), headers=_auth("batch"))
    assert engine.bodies[-1]["priority"] == 1
    run_post(gw.url, chat(), headers=_auth("chat"))
    assert engine.bodies[-1]["priority"] == 0


def test_the_cli_adds_tenants_and_keys_shown_once(tmp_path: Path) -> None:
    path = tmp_path / "tenants.toml"
    add_tenant(path, "team-a", class_name="interactive", weight=2.0, tokens_per_minute=1000)
    key = add_key(path, "team-a")
    spec = load_tenants(path)
    assert spec.tenants[0].keys == [key_hash(key)]
    assert key not in path.read_text()  # only its hash is stored
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


def test_a_queue_full_of_batch_makes_room_for_an_interactive_request(
    make_gateway: MakeGateway, tmp_path: Path
) -> None:
    gw = make_gateway(tenants_file=_tenants_file(tmp_path), max_active=1, queue_max=4)
    service = 0.3
    # One batch request holds the slot and four fill the queue, in this order (0.02 s apart).
    bodies = [("batch", chat({"delay": service}), i * 0.02) for i in range(5)]
    bodies.append(("chat", chat({"delay": service}), 0.2))
    results = asyncio.run(_posts(gw.url, bodies))
    answered = {
        (tenant, round(delay, 2)): a
        for (tenant, _, delay), (_, _, a) in zip(bodies, results, strict=True)
    }
    chat_elapsed = next(elapsed for tenant, elapsed, _ in results if tenant == "chat")
    assert answered[("chat", 0.2)].status == 200
    assert chat_elapsed < 2 * service + 0.15  # next after the one being served
    refused = [key for key, a in answered.items() if a.status == 429]
    assert refused == [("batch", 0.08)]  # the newest batch waiter, pushed out
    assert answered[("batch", 0.08)].error_code == "queue_full"
    assert (
        gw.metric("llmctl_gateway_tenant_requests_total", tenant="nightly", reason="queue_full")
        == 1
    )
