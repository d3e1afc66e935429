"""The response cache over real sockets, in front of the purpose-built engine (which counts what it
is sent): hits, misses on any other field, both forms from one entry, tenants kept apart, the byte
bound under a flood, coalescing into one engine request, a leader's client leaving, what is never
stored, no-cache, the age bound and the admin purge."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from llmctl.gateway.tenants import key_hash
from tests.gateway.client import Answer, chat, post, post_many, run_post
from tests.gateway.conftest import GatewayHandle, MakeGateway
from tests.gateway.upstream import FakeEngine
from tests.support import eventually

ADMIN = {"Authorization": "Bearer admin-secret"}
COMPLETIONS = "/v1/completions"


def greedy(fake: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return chat(fake, temperature=0, **extra)


def content(answer: Answer) -> str:
    """The answer's text, whichever form it came in."""
    if answer.headers.get("Content-Type", "").startswith("text/event-stream"):
        text = ""
        for event in answer.events:
            data = event.removeprefix(b"data: ")
            if data == b"[DONE]":
                continue
            for choice in json.loads(data)["choices"]:
                text += choice.get("delta", {}).get("content") or choice.get("text") or ""
        return text
    choice = answer.json()["choices"][0]
    return str(choice["message"]["content"] if "message" in choice else choice["text"])


@pytest.fixture
def gw(make_gateway: MakeGateway) -> GatewayHandle:
    return make_gateway(cache=True, admin_key="admin-secret")


def lookups(gw: GatewayHandle, result: str) -> float:
    return gw.metric("llmctl_gateway_cache_lookups_total", result=result)


def test_identical_requests_hit(gw: GatewayHandle, engine: FakeEngine) -> None:
    first = run_post(gw.url, greedy())
    second = run_post(gw.url, greedy())
    assert (first.status, second.status) == (200, 200)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert content(second) == content(first) == "t0 t1 t2 "
    assert second.json()["usage"] == first.json()["usage"]
    assert engine.started == 1
    assert (lookups(gw, "miss"), lookups(gw, "hit")) == (1, 1)
    assert gw.metric("llmctl_gateway_requests_total", reason="ok") == 2


@pytest.mark.parametrize(
    "change",
    [
        {"max_tokens": 5},
        {"seed": 1},
        {"messages": [{"role": "user", "content": "hi!"}]},
        {"model": "other-model"},
        {"stop": ["x"]},
    ],
    ids=["max_tokens", "seed", "messages", "model", "stop"],
)
def test_any_differing_field_misses(
    gw: GatewayHandle, engine: FakeEngine, change: dict[str, Any]
) -> None:
    assert run_post(gw.url, greedy()).headers["x-cache"] == "miss"
    assert run_post(gw.url, {**greedy(), **change}).headers["x-cache"] == "miss"
    assert engine.started == 2


def test_sampled_requests_are_not_cached(gw: GatewayHandle, engine: FakeEngine) -> None:
    for _ in range(2):
        answer = run_post(gw.url, chat(temperature=0.7))
        assert answer.status == 200
        assert "x-cache" not in answer.headers
    assert engine.started == 2


@pytest.mark.parametrize("path", ["/v1/chat/completions", COMPLETIONS])
def test_streamed_and_whole_answers_carry_identical_content(
    gw: GatewayHandle, engine: FakeEngine, path: str
) -> None:
    body = greedy({"tokens": 4}) if path != COMPLETIONS else {"prompt": "hi", "temperature": 0}
    streamed = run_post(gw.url, {**body, "stream": True}, path)
    whole = run_post(gw.url, body, path)  # served from the streamed answer
    streamed_hit = run_post(gw.url, {**body, "stream": True}, path)
    assert [a.headers["x-cache"] for a in (streamed, whole, streamed_hit)] == ["miss", "hit", "hit"]
    assert content(streamed) == content(whole) == content(streamed_hit) != ""
    assert engine.started == 1
    # The gateway asked the engine for usage to keep it; a client that did not ask gets none.
    assert engine.bodies[0]["stream_options"] == {"include_usage": True}
    assert not any(b'"usage"' in e for e in streamed.events + streamed_hit.events)
    assert whole.json()["usage"]["completion_tokens"] == (4 if path != COMPLETIONS else 3)
    assert streamed_hit.events[-1] == b"data: [DONE]"
    asked = run_post(
        gw.url, {**body, "stream": True, "stream_options": {"include_usage": True}}, path
    )
    usage = json.loads(asked.events[-2].removeprefix(b"data: "))
    assert usage["choices"] == []
    assert usage["usage"] == whole.json()["usage"]


def test_tenants_never_see_each_others_entries(
    make_gateway: MakeGateway, engine: FakeEngine, tmp_path: Path
) -> None:
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(
        f'[[tenants]]\nname = "a"\nkeys = ["{key_hash("sk-a")}"]\n'
        f'[[tenants]]\nname = "b"\nkeys = ["{key_hash("sk-b")}"]\n'
    )
    gw = make_gateway(cache=True, tenants_file=tenants)
    for key, expected in (("sk-a", "miss"), ("sk-b", "miss"), ("sk-a", "hit"), ("sk-b", "hit")):
        answer = run_post(gw.url, greedy(), headers={"Authorization": f"Bearer {key}"})
        assert answer.headers["x-cache"] == expected, key
    assert engine.started == 2


def test_the_byte_bound_holds_under_a_flood_of_unique_requests(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(cache=True, cache_max_bytes=4096, max_active=8, queue_max=200)
    seen: list[float] = []
    for batch in range(5):
        bodies = [greedy({"tokens": 20}, seed=batch * 100 + i) for i in range(20)]
        answers = asyncio.run(post_many(gw.url, bodies))
        assert all(a.status == 200 for a in answers)
        seen.append(gw.metric("llmctl_gateway_cache_bytes"))
    assert engine.started == 100
    assert 0 < max(seen) <= 4096
    assert gw.metric("llmctl_gateway_cache_max_bytes") == 4096
    assert gw.metric("llmctl_gateway_cache_evictions_total", reason="size") > 80
    entries = gw.metric("llmctl_gateway_cache_entries")
    assert 0 < entries < 20


def test_identical_concurrent_requests_make_one_engine_request(
    gw: GatewayHandle, engine: FakeEngine
) -> None:
    bodies = [greedy({"delay": 0.3}, stream=i % 2 == 0) for i in range(8)]
    answers = asyncio.run(post_many(gw.url, bodies))
    assert [a.status for a in answers] == [200] * 8
    assert engine.started == 1
    assert {content(a) for a in answers} == {"t0 t1 t2 "}
    assert sorted(a.headers["x-cache"] for a in answers) == ["hit"] * 7 + ["miss"]
    assert (lookups(gw, "miss"), lookups(gw, "coalesced")) == (1, 7)


async def _read_until(url: str, body: dict[str, Any], marker: bytes) -> asyncio.StreamWriter:
    """A client that reads its stream up to `marker`; closing the writer makes it go away."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    data = json.dumps(body).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(data)}\r\n\r\n".encode()
        + data
    )
    await writer.drain()
    await reader.readuntil(marker)
    return writer


def test_a_leader_that_leaves_does_not_break_its_followers(
    gw: GatewayHandle, engine: FakeEngine
) -> None:
    body = greedy({"tokens": 6, "interval": 0.1})

    async def scenario() -> list[Answer]:
        leader = await _read_until(gw.url, {**body, "stream": True}, b"data: ")
        async with aiohttp.ClientSession() as session:
            followers = [asyncio.create_task(post(session, gw.url, body)) for _ in range(3)]

            def waiting() -> bool:
                stats = httpx.get(f"{gw.url}/admin/cache", headers=ADMIN).json()
                return bool(stats["waiting"] == 3)

            await asyncio.to_thread(eventually, waiting, what="three followers waiting")
            leader.close()
            return list(await asyncio.gather(*followers))

    answers = asyncio.run(scenario())
    assert [a.status for a in answers] == [200] * 3
    assert {content(a) for a in answers} == {"t0 t1 t2 t3 t4 t5 "}
    # The leader's engine request was aborted with it; one follower led in its place.
    assert (engine.started, engine.aborted) == (2, 1)
    assert sorted(a.headers["x-cache"] for a in answers) == ["hit", "hit", "miss"]
    assert gw.metric("llmctl_gateway_client_disconnects_total") == 1


def test_a_client_that_leaves_after_its_whole_answer_still_fills_the_cache(
    gw: GatewayHandle, engine: FakeEngine
) -> None:
    """It leaves while the gateway still reads the engine's end of response (after [DONE])."""
    body = greedy({"linger": 0.5}, stream=True)

    async def leave_at_done() -> None:
        writer = await _read_until(gw.url, body, b"data: [DONE]")
        writer.close()

    asyncio.run(leave_at_done())
    eventually(lambda: gw.metric("llmctl_gateway_cache_entries") == 1, what="the answer stored")
    assert run_post(gw.url, greedy({"linger": 0.5})).headers["x-cache"] == "hit"
    assert engine.started == 1


@pytest.mark.parametrize(
    "fake",
    [{"status": 500}, {"status": 400}, {"no_done": True}, {"drop_after": 2}],
    ids=["engine error", "refused", "stream without [DONE]", "stream cut off"],
)
def test_errors_and_truncated_answers_are_never_stored(
    gw: GatewayHandle, engine: FakeEngine, fake: dict[str, Any]
) -> None:
    body = greedy(fake, stream=True)
    first, second = run_post(gw.url, body), run_post(gw.url, body)
    assert first.headers["x-cache"] == second.headers["x-cache"] == "miss"
    assert engine.started == 2
    assert gw.metric("llmctl_gateway_cache_entries") == 0


def test_a_failed_leader_sends_its_followers_to_the_engine_on_their_own(
    gw: GatewayHandle, engine: FakeEngine
) -> None:
    answers = asyncio.run(post_many(gw.url, [greedy({"delay": 0.3, "status": 500})] * 3))
    assert [a.status for a in answers] == [500] * 3
    assert engine.started == 3


def test_no_cache_bypasses_the_lookup_and_refreshes_the_entry(
    gw: GatewayHandle, engine: FakeEngine
) -> None:
    run_post(gw.url, greedy())
    fresh = run_post(gw.url, greedy(), headers={"Cache-Control": "no-cache"})
    assert fresh.headers["x-cache"] == "miss"
    assert engine.started == 2
    assert run_post(gw.url, greedy()).headers["x-cache"] == "hit"
    assert lookups(gw, "bypass") == 1


def test_no_store_bypasses_and_keeps_nothing(gw: GatewayHandle, engine: FakeEngine) -> None:
    fresh = run_post(gw.url, greedy(), headers={"Cache-Control": "no-store"})
    assert fresh.headers["x-cache"] == "miss"
    assert run_post(gw.url, greedy()).headers["x-cache"] == "miss"
    assert engine.started == 2


def test_an_answer_too_big_to_keep_still_reaches_the_followers(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(cache=True, cache_max_bytes=1024)
    body = greedy({"delay": 0.3, "tokens": 400})  # ~2 kB of text: over the bound
    answers = asyncio.run(post_many(gw.url, [body] * 4))
    assert [a.status for a in answers] == [200] * 4
    assert engine.started == 1
    assert len({content(a) for a in answers}) == 1
    assert gw.metric("llmctl_gateway_cache_entries") == 0


def test_answers_are_served_no_longer_than_their_age(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(cache=True, cache_ttl_s=0.3)
    assert run_post(gw.url, greedy()).headers["x-cache"] == "miss"
    assert run_post(gw.url, greedy()).headers["x-cache"] == "hit"
    eventually(
        lambda: run_post(gw.url, greedy()).headers["x-cache"] == "miss",
        timeout=3,
        what="the entry expired",
    )


def test_the_admin_call_purges_the_cache(gw: GatewayHandle, engine: FakeEngine) -> None:
    run_post(gw.url, greedy())
    assert httpx.delete(f"{gw.url}/admin/cache").status_code == 401
    stats = httpx.get(f"{gw.url}/admin/cache", headers=ADMIN).json()
    assert stats["entries"] == 1
    assert stats["bytes"] > 0
    purged = httpx.delete(f"{gw.url}/admin/cache", headers=ADMIN)
    assert purged.status_code == 200
    assert purged.json() == {"purged_entries": 1, "purged_bytes": stats["bytes"]}
    assert run_post(gw.url, greedy()).headers["x-cache"] == "miss"
    assert gw.metric("llmctl_gateway_cache_evictions_total", reason="purge") == 1


def test_the_cache_is_off_unless_asked_for(make_gateway: MakeGateway, engine: FakeEngine) -> None:
    gw = make_gateway(admin_key="admin-secret")
    for _ in range(2):
        assert "x-cache" not in run_post(gw.url, greedy()).headers
    assert engine.started == 2
    assert httpx.get(f"{gw.url}/admin/cache", headers=ADMIN).status_code == 404
