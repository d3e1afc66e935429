"""The response cache in front of the engines: hits, coalescing of identical requests, storing.

For a cacheable request (cache.py says which):

- a stored answer is served at once, as JSON or SSE to match the request, without a slot;
- else, when an identical request is already in flight, this one waits for it (a *follower*) and
  is served its answer; only the first (the *leader*) goes to an engine;
- else this request leads: it is admitted and forwarded as any other, the engine's bytes are kept
  as they pass, and a complete, plain, successful answer is stored.

A leader whose client goes away hands over: its followers wake, the first one to run leads in its
place (and is forwarded itself), the others follow it. A leader that fails, or whose answer is
not one the cache may keep (answers.py), sends its followers to the engine one by one, so a refusal
is never shared; an answer too big to store still goes to the followers. Every
response of a cacheable request says `x-cache: hit` or `miss`; `Cache-Control: no-cache` skips the
lookup and the coalescing and stores the fresh answer; `no-store` stores nothing either.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from llmctl.core.openai import Route
from llmctl.gateway.answers import Answer, read_answer
from llmctl.gateway.cache import ResponseCache
from llmctl.gateway.metrics import GatewayMetrics, Outcome
from llmctl.gateway.proxy import SSE_HEADERS

CACHE_HEADER = "x-cache"
# Forward one request: the engine's bytes are appended to the bytearray as they pass.
Forward = Callable[[bytearray], Awaitable[web.StreamResponse]]


def directives(header: str | None) -> set[str]:
    """The directives of a request's Cache-Control header, lower-cased, without values."""
    if not header:
        return set()
    return {part.strip().split("=", 1)[0].lower() for part in header.split(",")}


class Flight:
    """An engine request that identical requests wait for."""

    __slots__ = ("answer", "done", "followers", "handover")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.answer: Answer | None = None
        self.handover = False  # the leader's client left: the next follower leads
        self.followers = 0


class CacheFront:
    """Serves cacheable requests from the cache, or through one leader per identical request."""

    def __init__(self, cache: ResponseCache, metrics: GatewayMetrics) -> None:
        self.cache = cache
        self.metrics = metrics
        self.flights: dict[str, Flight] = {}

    async def serve(
        self,
        request: web.Request,
        route: Route,
        data: dict[str, Any],
        key: str,
        outcome: Outcome,
        headers: dict[str, str],
        arrived: float,
        forward: Forward,
    ) -> web.StreamResponse:
        lookups = self.metrics.cache_lookups
        asked = directives(request.headers.get("Cache-Control"))
        if asked & {"no-cache", "no-store"}:
            lookups.labels("bypass").inc()
            store = "no-store" not in asked
            return await self._forward(key, route, outcome, headers, forward, store=store)
        while True:
            answer = self.cache.get(key)
            if answer is not None:
                lookups.labels("hit").inc()
                return self._respond(answer, data, outcome, headers, arrived)
            flight = self.flights.get(key)
            if flight is None:
                lookups.labels("miss").inc()
                return await self._lead(key, route, outcome, headers, forward)
            flight.followers += 1
            try:
                await flight.done.wait()
            except asyncio.CancelledError:
                self.metrics.disconnects.labels("waiting").inc()
                outcome.set(499, "client_disconnect")
                raise
            finally:
                flight.followers -= 1
            if flight.answer is not None:
                lookups.labels("coalesced").inc()
                return self._respond(flight.answer, data, outcome, headers, arrived)
            if not flight.handover:
                lookups.labels("miss").inc()
                return await self._forward(key, route, outcome, headers, forward)
            # Handed over: the first follower back finds no flight and leads.

    async def _lead(
        self,
        key: str,
        route: Route,
        outcome: Outcome,
        headers: dict[str, str],
        forward: Forward,
    ) -> web.StreamResponse:
        flight = self.flights[key] = Flight()
        cancelled = False
        try:
            return await self._forward(key, route, outcome, headers, forward, flight)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            if flight.answer is None and (cancelled or outcome.reason == "client_disconnect"):
                flight.handover = True
            if self.flights.get(key) is flight:
                del self.flights[key]
            flight.done.set()

    async def _forward(
        self,
        key: str,
        route: Route,
        outcome: Outcome,
        headers: dict[str, str],
        forward: Forward,
        flight: Flight | None = None,
        *,
        store: bool = True,
    ) -> web.StreamResponse:
        headers[CACHE_HEADER] = "miss"
        collected = bytearray()
        try:
            return await forward(collected)
        finally:
            # Also when the handler is cancelled after the whole answer went out: a client that
            # leaves while the engine's end of response is read still had a complete answer.
            if outcome.reason == "ok" and outcome.status == 200:
                answer = read_answer(route.kind, bytes(collected))
                if answer is not None and store:
                    self.cache.put(key, answer)
                if flight is not None:
                    flight.answer = answer  # its followers get it even when it is too big to keep

    def _respond(
        self,
        answer: Answer,
        data: dict[str, Any],
        outcome: Outcome,
        headers: dict[str, str],
        arrived: float,
    ) -> web.Response:
        """An answer from the cache, in the form the request asked for."""
        out = {**headers, CACHE_HEADER: "hit"}
        if data.get("stream") is True:
            options = data.get("stream_options")
            usage = isinstance(options, dict) and options.get("include_usage") is True
            response = web.Response(body=answer.stream(usage), headers={**out, **SSE_HEADERS})
        else:
            response = web.Response(
                body=answer.whole(), headers=out, content_type="application/json"
            )
        outcome.set(200, "ok")
        outcome.usage = (0, 0)  # the engine spent nothing on it (a tenant's tokens are not charged)
        elapsed = time.monotonic() - arrived
        self.metrics.ttft.observe(elapsed)
        self.metrics.e2e.observe(elapsed)
        return response

    def stats(self) -> dict[str, object]:
        cache = self.cache
        return {
            "entries": len(cache),
            "bytes": cache.bytes,
            "max_bytes": cache.max_bytes,
            "ttl_s": cache.ttl_s,
            "in_flight": len(self.flights),
            "waiting": sum(f.followers for f in self.flights.values()),
        }
