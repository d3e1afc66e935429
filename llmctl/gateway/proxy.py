"""The streaming proxy: requests forwarded to their engine, answers passed back, exact error mapping.

Requests go over the gateway's own keep-alive connections (pool.py, wire.py); a streamed
answer is relayed from the engine's socket to the client's as the engine framed it (relay.py).
Before the first byte reaches the client an error keeps its real HTTP status (upstream 4xx/5xx
passed through, 503 engine_unavailable, 504 deadline). After it, the stream is ended with an
OpenAI-style SSE error event and `[DONE]`. Leaving `forward` by any path (including cancellation
when the client goes away) drops an unfinished upstream answer's connection, so the engine aborts
the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable

import aiohttp
from aiohttp import web
from aiohttp.http import HttpVersion11

from llmctl.core.openai import Route, sse_error_event, usage_tokens
from llmctl.gateway.admission import Slot
from llmctl.gateway.errors import error_response
from llmctl.gateway.metrics import GatewayMetrics, Outcome
from llmctl.gateway.pool import ConnectError, ConnectionPool
from llmctl.gateway.relay import BROKEN, CLIENT_GONE, CONGESTED, DONE, StreamRelay
from llmctl.gateway.wire import EngineConnection, ResponseHead, UpstreamError

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
    """The aiohttp pool for what is not on the request path (probes, load polls, /v1/models)."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4.0, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s)
    return aiohttp.ClientSession(
        connector=connector, timeout=timeout, auto_decompress=False, raise_for_status=False
    )


class _EventStream(web.StreamResponse):
    """A streamed response whose headers wait for its first bytes (aiohttp >= 3.12 buffers them;
    older versions send them at `prepare`), so the first event costs one write, not two."""

    _send_headers_immediately = False


class EngineFailedError(Exception):
    """The engine failed before the client got a byte: the request may go to another engine.

    `kind` is the upstream-error kind (`connect`, `protocol`, `status`, `stream`); `refused` is
    True when the engine could not be reached at all (it leaves rotation until its next probe)."""

    def __init__(self, kind: str, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.refused = refused


def request_bytes(
    connections: ConnectionPool, url: str, route: Route, body: bytes, headers: dict[str, str]
) -> bytes:
    """One HTTP/1.1 request to the engine at `url`, head and body in one buffer (one write)."""
    target = connections.target(url)
    lines = [
        f"POST {target.prefix}{route.path} HTTP/1.1",
        f"Host: {target.authority}",
        f"Content-Length: {len(body)}",
    ]
    for name, value in headers.items():
        if "\r" not in value and "\n" not in value:
            lines.append(f"{name}: {value}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape") + body


class Proxy:
    """Forwards admitted requests to their engine and records how each one ended."""

    def __init__(
        self,
        connections: ConnectionPool,
        request_timeout_s: float,
        metrics: GatewayMetrics,
        retry_after_unavailable: int,
        retry_after: Callable[[], int],
    ) -> None:
        self._connections = connections
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
        url = slot.engine.url
        remaining = self.request_timeout_s - (time.monotonic() - slot.admitted_at)
        conn: EngineConnection | None = None
        relay: StreamRelay | None = None
        out: web.StreamResponse | None = None
        stage = "waiting"
        try:
            async with asyncio.timeout(remaining):
                try:
                    conn, head = await self._connections.exchange(
                        url, request_bytes(self._connections, url, route, body, upstream_headers)
                    )
                    whole = (
                        head.status >= 400
                        or not stream
                        or head.media_type != "text/event-stream"
                        or head.length == 0  # nothing to relay
                    )
                    if whole:
                        payload = await conn.read_body()
                        if collect is not None:
                            collect += payload
                        self._connections.release(url, conn)
                        conn = None
                except ConnectError:
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
                except UpstreamError as exc:
                    metrics.upstream_errors.labels("protocol").inc()
                    if can_retry:
                        raise EngineFailedError("protocol", str(exc)) from None
                    outcome.set(502, "upstream_error")
                    return error_response(
                        502, f"the engine failed: {exc}", "upstream_error", headers
                    )
                sse = head.media_type == "text/event-stream"
                if whole and stream and sse and head.status < 400 and head.length == 0:
                    # An event stream with an empty body: as a stream that ended at once.
                    metrics.upstream_errors.labels("stream").inc()
                    if can_retry:
                        raise EngineFailedError("stream", "the engine ended the stream at once")
                    outcome.set(head.status, "upstream_error")
                    return web.Response(
                        body=sse_error_event(
                            "the engine stream ended early", code="upstream_error"
                        ),
                        status=head.status,
                        headers={**headers, **SSE_HEADERS},
                    )
                if whole:
                    return self._whole(head, payload, headers, slot, outcome, arrived, can_retry)
                if conn is None:
                    raise RuntimeError("a stream without a connection")
                relay = self._relay(url, conn, head, route, slot, arrived, strip_usage, collect)
                # The client's headers go out with the first chunk, not before: until then an
                # engine that fails can still be replaced by another one.
                if not await relay.ready() and can_retry:
                    metrics.upstream_errors.labels("stream").inc()
                    raise EngineFailedError("stream", "the engine ended the stream at once")
                out = _EventStream(status=head.status, headers={**headers, **SSE_HEADERS})
                writer = await out.prepare(request)
                stage = "streaming"
                client = request.transport
                if client is None or writer is None:
                    raise ConnectionResetError("the client is gone")
                first = relay.take_held()
                if first:
                    # The headers and the first events in one write. With none held the stream
                    # has ended already, and the headers go out with its end.
                    await out.write(first)
                relay.start(client, chunked=request.version >= HttpVersion11)
                while (state := await relay.wait()) == CONGESTED:
                    await writer.drain()
                    relay.resume()
                if state == DONE:
                    await out.write_eof(relay.tail)
                    self._count_stream(relay, slot, outcome)
                    outcome.set(out.status, "ok")
                    return out
                if state == CLIENT_GONE:
                    raise ConnectionResetError("the client is gone")
                metrics.upstream_errors.labels("stream").inc()
                outcome.set(out.status, "upstream_error")
                message = "broke off" if state == BROKEN else "ended early"
                await self._end_stream(out, f"the engine stream {message}", "upstream_error")
                return out
        except TimeoutError:
            if relay is not None:
                relay.stop()
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
            if relay is not None:
                if relay.state == DONE:
                    # The client has everything; the engine's end of answer is read outside the
                    # deadline and the accounting, so its connection can be reused.
                    relay.expect_end(_DRAIN_S)
                else:
                    relay.stop()
            elif conn is not None:
                conn.close()

    def _relay(
        self,
        url: str,
        conn: EngineConnection,
        head: ResponseHead,
        route: Route,
        slot: Slot,
        arrived: float,
        strip_usage: bool,
        collect: bytearray | None,
    ) -> StreamRelay:
        """Hand the engine's socket to a relay for this stream."""
        metrics = self._metrics
        admitted = slot.admitted_at
        connections = self._connections

        def observe(now: float) -> None:
            # Time to first token is when the first text is handed to the client's socket (what
            # the client feels, this process's own delay included), not the first byte.
            metrics.ttft.observe(now - arrived)
            metrics.admitted_first_token(now - admitted, admitted)

        # The relay's reads run in the context the engine connection was opened in (another
        # request's, once it is reused); the histogram's taps (the access log) need this one's.
        context = contextvars.copy_context()

        def first_text(now: float) -> None:
            context.run(observe, now)

        def ended(relay: StreamRelay) -> None:
            if relay.reusable and head.keep_alive:
                conn.take_back()
                connections.release(url, conn)
            else:
                conn.close()

        relay = StreamRelay(
            route.text_key,
            chunked=head.chunked,
            length=head.length,
            strip_usage=strip_usage,
            scan=not slot.engine.sends_usage,
            collect=collect,
            on_first_text=first_text,
            on_end=ended,
        )
        leftover, eof = conn.hand_over(relay)
        relay.attach(conn.transport, leftover, eof)
        return relay

    def _whole(
        self,
        head: ResponseHead,
        payload: bytes,
        headers: dict[str, str],
        slot: Slot,
        outcome: Outcome,
        arrived: float,
        can_retry: bool,
    ) -> web.Response:
        """The answer to pass on in one piece: an error status, a non-streamed completion, or a
        stream request the engine answered with JSON."""
        metrics = self._metrics
        status = head.status
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
        headers = {**headers, "Content-Type": head.content_type or "application/octet-stream"}
        if status in _RETRY_STATUSES:
            headers["Retry-After"] = head.retry_after or str(self._retry_after())
        return web.Response(body=payload, status=status, headers=headers)

    def _count_stream(self, relay: StreamRelay, slot: Slot, outcome: Outcome) -> None:
        """Tokens and time per output token of a stream that ended with [DONE]."""
        engine, admitted_at = slot.engine, slot.admitted_at
        usage = relay.usage
        if usage is not None:
            engine.sends_usage = True
        elif not relay.scan:
            engine.sends_usage = False  # it ignored stream_options: scan its streams from now on
        # Without usage and without a scan, each chunk after the first text counts as a token.
        tokens = relay.tokens if relay.scan else relay.tokens + relay.chunks
        self._count_usage(usage, tokens, outcome)
        generated = usage[1] if usage is not None else tokens
        if generated >= 2 and relay.first_text and relay.last_text > relay.first_text:
            per_token = (relay.last_text - relay.first_text) / (generated - 1)
            self._metrics.per_token(per_token, admitted_at)

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
