"""The streaming proxy: one shared upstream pool, bytes forwarded as they arrive, exact error mapping.

Before the first byte reaches the client an error keeps its real HTTP status (upstream 4xx/5xx
passed through, 503 engine_unavailable, 504 deadline). After it, the stream is ended with an
OpenAI-style SSE error event and `[DONE]`. Leaving `forward` by any path (including cancellation when
the client goes away) closes an unfinished upstream response, which drops that connection so the
engine aborts the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web

from llmctl.core.openai import (
    DONE,
    DONE_EVENT,
    Route,
    drop_usage_events,
    sse_error_event,
    text_frames,
    usage_tokens,
)
from llmctl.gateway.admission import Slot
from llmctl.gateway.errors import error_response
from llmctl.gateway.metrics import GatewayMetrics, Outcome

SSE_HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
# How long to wait for the engine to end its response after [DONE] before dropping the connection.
_DRAIN_S = 1.0
# Upstream statuses that tell the client to come back later: they always carry Retry-After.
_RETRY_STATUSES = (429, 503)


def make_session(connect_timeout_s: float = 5.0) -> aiohttp.ClientSession:
    """The one upstream connection pool. Admission bounds concurrency, so the pool itself does not;
    idle connections are dropped before uvicorn's 5 s keep-alive would close them under us."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, raise_for_status=False
    )


class EngineFailedError(Exception):
    """The engine failed before the client got a byte: the request may go to another engine.

    `kind` is the upstream-error kind (`connect`, `protocol`, `status`, `stream`); `refused` is
    True when the engine could not be reached at all (it leaves rotation until its next probe)."""

    def __init__(self, kind: str, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.refused = refused


class Proxy:
    """Forwards admitted requests to their engine and records how each one ended."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        request_timeout_s: float,
        metrics: GatewayMetrics,
        retry_after_unavailable: int,
        retry_after: Callable[[], int],
    ) -> None:
        self._session = session
        self.request_timeout_s = request_timeout_s
        self._metrics = metrics
        self._retry_unavailable = retry_after_unavailable
        self._retry_after = retry_after

    async def forward(
        self,
        request: web.Request,
        route: Route,
        body: bytes,
        stream: bool,
        upstream_headers: dict[str, str],
        headers: dict[str, str],
        slot: Slot,
        outcome: Outcome,
        arrived: float,
        *,
        can_retry: bool = False,
        strip_usage: bool = False,
        collect: bytearray | None = None,
    ) -> web.StreamResponse:
        """Forward one admitted request to its slot's engine; it arrived at `arrived` (monotonic
        clock). How it ended goes into `outcome` (set exactly once). With `can_retry`, a failure
        of the engine before the client got a byte raises EngineFailedError instead of answering,
        so the caller can send the request to another engine. `strip_usage`: the gateway asked the
        engine for usage the client did not ask for; it is counted, then dropped from the stream.
        `collect`: the engine's response bytes are appended to it as they pass (the cache)."""
        metrics = self._metrics
        remaining = self.request_timeout_s - (time.monotonic() - slot.admitted_at)
        upstream: aiohttp.ClientResponse | None = None
        out: web.StreamResponse | None = None
        # "open": bytes may still come; "done": the engine ended cleanly; "drain": the client has
        # its whole answer but the engine's end-of-response is still to be read; "failed".
        state = "open"
        stage = "waiting"
        try:
            async with asyncio.timeout(remaining):
                try:
                    upstream = await self._session.post(
                        slot.engine.url + route.path, data=body, headers=upstream_headers
                    )
                    whole = (
                        upstream.status >= 400
                        or not stream
                        or upstream.content_type != "text/event-stream"
                    )
                    if whole:
                        payload = await upstream.read()
                        state = "done"
                        if collect is not None:
                            collect += payload
                except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
                    metrics.upstream_errors.labels("connect").inc()
                    if can_retry:
                        raise EngineFailedError("connect", "unreachable", refused=True) from None
                    outcome.set(503, "engine_unavailable")
                    return error_response(
                        503,
                        "the engine is unavailable",
                        "engine_unavailable",
                        headers,
                        retry_after=self._retry_unavailable,
                    )
                except aiohttp.ClientError as exc:
                    metrics.upstream_errors.labels("protocol").inc()
                    if can_retry:
                        raise EngineFailedError("protocol", type(exc).__name__) from None
                    outcome.set(502, "upstream_error")
                    return error_response(
                        502, f"the engine failed: {type(exc).__name__}", "upstream_error", headers
                    )
                if whole:
                    status = upstream.status
                    if status == 503 and can_retry:
                        metrics.upstream_errors.labels("status").inc()
                        raise EngineFailedError("status", "the engine answered 503")
                    if status >= 500:
                        metrics.upstream_errors.labels("status").inc()
                        outcome.set(status, "upstream_error")
                    elif status >= 400:
                        # The client's mistake (unknown model, prompt too long), not the engine's.
                        outcome.set(status, "bad_request")
                    else:
                        self._count_usage(usage_tokens(payload), 0, outcome)
                        # A whole answer's first token is its end (as bench and vLLM count it).
                        now = time.monotonic()
                        metrics.ttft.observe(now - arrived)
                        metrics.admitted_first_token(now - slot.admitted_at, slot.admitted_at)
                        outcome.set(status, "ok")
                    if status in _RETRY_STATUSES:
                        given = upstream.headers.get("Retry-After")
                        headers = {**headers, "Retry-After": given or str(self._retry_after())}
                    return web.Response(
                        body=payload,
                        status=status,
                        content_type=upstream.content_type,
                        headers=headers,
                    )
                # The client's headers go out with the first chunk, not before: until then an
                # engine that fails can still be replaced by another one.
                try:
                    first = await upstream.content.readany()
                except aiohttp.ClientError:
                    first = b""
                if not first and can_retry:
                    metrics.upstream_errors.labels("stream").inc()
                    raise EngineFailedError("stream", "the engine ended the stream at once")
                out = web.StreamResponse(status=upstream.status, headers={**headers, **SSE_HEADERS})
                await out.prepare(request)
                stage = "streaming"
                state = await self._pump(
                    route, upstream, out, slot, outcome, arrived, first, strip_usage, collect
                )
        except TimeoutError:
            metrics.upstream_errors.labels("timeout").inc()
            if out is None:
                outcome.set(504, "deadline")
                return error_response(
                    504,
                    f"the request passed its {self.request_timeout_s:g} s deadline",
                    "deadline",
                    headers,
                    retry_after=1,
                )
            outcome.set(out.status, "deadline")
            await self._end_stream(out, "the request passed its deadline", "deadline")
            return out
        except asyncio.CancelledError:
            # The client went away and aiohttp cancelled the handler (unless the request had
            # already failed, and the client left while hearing about it).
            if outcome.reason is None:
                metrics.disconnects.labels(stage).inc()
                outcome.set(499, "client_disconnect")
            raise
        except ConnectionResetError:
            # The client went away and a write found its socket shut. Returning (not raising) keeps
            # aiohttp from logging this expected event as a 500 with a traceback.
            if outcome.reason is None:
                metrics.disconnects.labels(stage).inc()
                outcome.set(499, "client_disconnect")
            return out if out is not None else web.Response(status=499)
        finally:
            if upstream is not None and state != "drain":
                if state == "done":
                    upstream.release()
                else:
                    upstream.close()
        # Only streams get here. Reading the engine's end of response after [DONE] happens outside
        # the deadline and the disconnect accounting: the client already has everything.
        if upstream is None or out is None:
            raise RuntimeError("stream ended without a response")
        if state != "drain":
            return out
        clean = False
        try:
            clean = await self._drain(upstream.content)
        finally:
            if clean:
                upstream.release()
            else:
                upstream.close()
        return out

    async def _pump(
        self,
        route: Route,
        upstream: aiohttp.ClientResponse,
        out: web.StreamResponse,
        slot: Slot,
        outcome: Outcome,
        arrived: float,
        first: bytes,
        strip_usage: bool = False,
        collect: bytearray | None = None,
    ) -> str:
        """Copy SSE bytes as they arrive, `first` (already read) first; returns the stream's state
        (see `forward`)."""
        metrics = self._metrics
        content = upstream.content
        key = route.text_key
        tokens = 0
        first_text = last_text = 0.0
        prev = last = b""
        state = "done"
        chunk = first
        while True:
            if not chunk:
                break
            prev, last = last, chunk
            if collect is not None:
                collect += chunk
            final = chunk.endswith(DONE_EVENT)
            sent = drop_usage_events(chunk) if strip_usage else chunk
            if final:
                # The last event: send it with the chunked-encoding terminator in one write (one
                # syscall less per request); the engine's own terminator is read afterwards.
                await out.write_eof(sent)
                state = "drain"
            elif sent:
                await out.write(sent)
            # Frames with text only: chat's role frame and the finish frame are not tokens, and
            # time to first token is when the first text is handed to the client's socket (what
            # the client feels, this process's own delay included), not the first byte.
            found = text_frames(chunk, key)
            if found:
                last_text = time.monotonic()
                if not tokens:
                    first_text = last_text
                    metrics.ttft.observe(last_text - arrived)
                    metrics.admitted_first_token(last_text - slot.admitted_at, slot.admitted_at)
                tokens += found
            if final:
                break
            try:
                chunk = await content.readany()
            except aiohttp.ClientError:
                metrics.upstream_errors.labels("stream").inc()
                outcome.set(out.status, "upstream_error")
                await self._end_stream(out, "the engine stream broke off", "upstream_error")
                return "failed"
        tail = prev[-64:] + last
        if DONE not in tail[-32:]:
            metrics.upstream_errors.labels("stream").inc()
            outcome.set(out.status, "upstream_error")
            await self._end_stream(out, "the engine stream ended early", "upstream_error")
            return "failed"
        # Usage, when asked for, is the last event before [DONE]; a short tail holds it.
        usage = usage_tokens(prev[-4096:] + last)
        self._count_usage(usage, tokens, outcome)
        generated = usage[1] if usage is not None else tokens
        if generated >= 2 and last_text > first_text:
            metrics.per_token((last_text - first_text) / (generated - 1), slot.admitted_at)
        outcome.set(out.status, "ok")
        return state

    @staticmethod
    async def _drain(content: aiohttp.StreamReader) -> bool:
        """Read the engine's end of response so the connection can be reused; False if it never
        came (or more bytes did), in which case the caller drops the connection."""
        if content.at_eof():
            return True
        try:
            async with asyncio.timeout(_DRAIN_S):
                return not await content.readany() and content.at_eof()
        except (aiohttp.ClientError, TimeoutError):
            return False

    def _count_usage(
        self, usage: tuple[int, int] | None, counted_chunks: int, outcome: Outcome
    ) -> None:
        if usage is not None:
            self._metrics.prompt_tokens.inc(usage[0])
            self._metrics.completion_tokens.inc(usage[1])
            outcome.usage = usage
        elif counted_chunks:
            self._metrics.completion_tokens.inc(counted_chunks)

    @staticmethod
    async def _end_stream(out: web.StreamResponse, message: str, code: str) -> None:
        # The client may be gone too; that is not a second outcome to report.
        with contextlib.suppress(ConnectionResetError):
            await out.write(sse_error_event(message, code=code))
