"""A lean closed-loop streaming client for the gateway benchmarks (raw asyncio, HTTP/1.1 keep-alive).

Each of N streams sends streamed completions back to back over its own connection. Per read it
only checks for the end of the chunked body and, before the first token, notes the time, so the
client costs far less than what it measures. Tokens come from each answer's `usage` frame (the
request asks for it); time to first token is request sent to the first body bytes (completions
have no role frame, so those bytes are the first token).
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field

_COMPLETION_TOKENS = re.compile(rb'"completion_tokens":\s*(\d+)')
_END = b"\r\n0\r\n\r\n"  # the end of a chunked body whose last chunk ended in CRLF


@dataclass
class StreamsResult:
    """What one closed-loop run carried."""

    tokens: int = 0
    requests: int = 0
    seconds: float = 0.0
    ttfts: list[float] = field(default_factory=list)
    # Each stream's requests after its first: what is left when the connection burst is over.
    steady_ttfts: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


class _Conn(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.future: asyncio.Future[bytes] | None = None
        self.head_seen = False
        self.first: float | None = None
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_exception(ConnectionError(f"connection lost: {exc}"))

    def send(self, request: bytes) -> asyncio.Future[bytes]:
        self.future = asyncio.get_running_loop().create_future()
        self.head_seen = False
        self.first = None
        self.tail = b""
        assert self.transport is not None
        self.transport.write(request)
        return self.future

    def data_received(self, data: bytes) -> None:
        if not self.head_seen:
            data = self.tail + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.tail = data
                return
            self.head_seen = True
            if not data.startswith(b"HTTP/1.1 200"):
                self._done(data)
                return
            self.tail = b""
            data = data[end + 4 :]
            if not data:
                return
        if self.first is None:
            self.first = time.perf_counter()
        tail = self.tail[-512:] + data
        self.tail = tail
        if tail.endswith(_END):
            self._done(tail)

    def _done(self, tail: bytes) -> None:
        if self.future is not None and not self.future.done():
            self.future.set_result(tail)


def request_bytes(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str] | None = None
) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class KeptConnection:
    """One keep-alive connection that sends the same request again and again."""

    def __init__(
        self, base: str, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> None:
        host, _, port = base.removeprefix("http://").partition(":")
        self.host, self.port = host, int(port)
        self.request = request_bytes(self.host, self.port, path, body, headers)
        self.transport: asyncio.BaseTransport | None = None
        self.conn: _Conn | None = None

    async def ask(self) -> tuple[float, int]:
        """(seconds from sending to the first body bytes, completion tokens) of one request;
        tokens are -1 when the answer carried no usage (the request did not ask for it)."""
        if self.conn is None:
            loop = asyncio.get_running_loop()
            self.transport, self.conn = await loop.create_connection(_Conn, self.host, self.port)
        start = time.perf_counter()
        tail = await self.conn.send(self.request)
        if self.conn.first is None or not tail.endswith(_END):
            raise RuntimeError(f"unexpected answer: {tail[:200]!r}")
        match = _COMPLETION_TOKENS.search(tail[tail.rfind(b'"usage"') :])
        return self.conn.first - start, int(match.group(1)) if match else -1

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _stream(
    base: str,
    path: str,
    body: bytes,
    result: StreamsResult,
    headers: dict[str, str] | None,
    requests: int | None,
    until: float | None,
) -> None:
    conn = KeptConnection(base, path, body, headers)
    try:
        sent = 0
        while (requests is None or sent < requests) and (
            until is None or time.perf_counter() < until
        ):
            sent += 1
            try:
                ttft, tokens = await conn.ask()
                if tokens < 0:
                    raise RuntimeError("no usage frame in the answer")
            except RuntimeError as exc:
                result.errors.append(str(exc))
                continue
            result.tokens += tokens
            result.requests += 1
            result.ttfts.append(ttft)
            if sent > 1:
                result.steady_ttfts.append(ttft)
    finally:
        conn.close()


async def closed_loop(
    base: str,
    path: str,
    body: bytes | list[bytes],
    streams: int,
    headers: dict[str, str] | None = None,
    *,
    requests: int | None = None,
    seconds: float | None = None,
) -> StreamsResult:
    """Run `streams` connections, each sending `requests` requests (or for `seconds`); `body`
    may be one body per stream."""
    result = StreamsResult()
    start = time.perf_counter()
    until = None if seconds is None else start + seconds
    bodies = body if isinstance(body, list) else [body] * streams
    await asyncio.gather(
        *(_stream(base, path, b, result, headers, requests, until) for b in bodies)
    )
    result.seconds = time.perf_counter() - start
    return result
