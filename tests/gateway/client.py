"""Small async client helpers for gateway tests (many requests at once from the test thread)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import httpx
from multidict import CIMultiDict

from tests.support import eventually


@dataclass
class Answer:
    status: int
    headers: CIMultiDict[str]
    body: bytes
    events: list[bytes] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def error_code(self) -> str | None:
        try:
            return str(self.json()["error"]["code"])
        except (ValueError, KeyError, TypeError):
            return None


def chat(fake: dict[str, Any] | None = None, stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "stream": stream}
    if fake is not None:
        body["fake"] = fake
    body.update(extra)
    return body


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: Any,
    path: str = "/v1/chat/completions",
    headers: dict[str, str] | None = None,
) -> Answer:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(
        url + path, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    ) as resp:
        raw = await resp.read()
        events = [e for e in raw.split(b"\n\n") if e.startswith(b"data:")]
        return Answer(resp.status, CIMultiDict(resp.headers), raw, events)


async def post_many(
    url: str, bodies: list[Any], path: str = "/v1/chat/completions"
) -> list[Answer]:
    """Send all bodies at once over separate connections."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        return list(await asyncio.gather(*(post(session, url, b, path) for b in bodies)))


def run_post(url: str, body: Any, path: str = "/v1/chat/completions", **kw: Any) -> Answer:
    async def once() -> Answer:
        async with aiohttp.ClientSession() as session:
            return await post(session, url, body, path, **kw)

    return asyncio.run(once())


def health_saying(url: str, verdict: str, timeout: float = 3.0) -> httpx.Response:
    """The gateway's /health once it gives the engine probe's `verdict` (a probe has answered: it
    is not the "not probed yet" 503 that a gateway gives from its start)."""

    def probed() -> httpx.Response:
        resp = httpx.get(f"{url}/health")
        assert verdict in resp.json()["engine"], resp.json()
        return resp

    return eventually(probed, timeout=timeout, what=f"/health saying {verdict!r}")
