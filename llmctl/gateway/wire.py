"""The engine side of the wire: one keep-alive HTTP/1.1 connection as a raw asyncio protocol.

aiohttp's client spends a stream reader, a parser callback and a coroutine step on every chunk of
an answer and about a hundred microseconds of Python on every request; here a request is one
`write`, the response head is one `find` and a few splits, and a streamed body is handed, with
the socket itself, to the relay (`transport.set_protocol`), which forwards chunks from the
`data_received` callback without waking any coroutine. A connection carries one request at a time.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple, cast

from llmctl.gateway import framing

_MAX_HEAD = 65536


class UpstreamError(Exception):
    """The engine's connection failed or spoke something other than HTTP/1.1; `answered` is True
    once any byte of a response had arrived (a reused connection that failed before that may be
    retried on a fresh one)."""

    def __init__(self, message: str, *, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered


class ResponseHead(NamedTuple):
    status: int
    content_type: str  # as sent (for passing through)
    media_type: str  # lowercased, without parameters
    retry_after: str | None
    chunked: bool
    length: int | None  # Content-Length, when not chunked
    keep_alive: bool


def parse_head(raw: bytes) -> ResponseHead:
    """The status line and the headers the gateway uses; ValueError when it is not HTTP/1.x."""
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(rest[:3])
    content_type = ""
    retry_after = None
    chunked = False
    length = None
    keep_alive = version == "HTTP/1.1"
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise ValueError(f"malformed header line {line[:80]!r}")
        name = name.strip().lower()
        value = value.strip()
        if name == "content-type":
            content_type = value
        elif name == "transfer-encoding":
            chunked = value.lower().endswith("chunked")
        elif name == "content-length":
            if not value.isdigit():
                raise ValueError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
        elif name == "connection":
            token = value.lower()
            keep_alive = "close" not in token and (keep_alive or "keep-alive" in token)
        elif name == "retry-after":
            retry_after = value
    media_type = content_type.split(";", 1)[0].strip().lower()
    return ResponseHead(
        status,
        content_type,
        media_type,
        retry_after,
        chunked,
        None if chunked else length,
        keep_alive,
    )


# IDLE: ready for a request; HEAD: waiting for the response head; HEADED: head read, the caller has
# not said yet whether it reads the whole body or hands the socket over (raw bytes accumulate);
# BODY: reading a whole body; HANDED: a relay owns the socket; CLOSED.
_IDLE, _HEAD, _HEADED, _BODY, _HANDED, _CLOSED = range(6)


class EngineConnection(asyncio.Protocol):
    """One connection to an engine: `send` a request and get its head, then either `read_body`
    or `hand_over` the socket to a relay for a stream; `reusable` says whether it may carry the
    next request."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.responses = 0  # answers read completely: 0 means a fresh connection
        self.idle_since = 0.0
        self._state = _IDLE
        self._buf = b""
        self._eof = False
        self._waiter: asyncio.Future[None] | None = None
        self._head: ResponseHead | None = None
        self._body: list[bytes] = []
        self._remaining = 0
        self._complete = False
        self._error: UpstreamError | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        state, self._state = self._state, _CLOSED
        self.transport = None
        self._eof = True
        if state == _HEADED:
            return  # the caller reads what arrived; a body cut short fails there
        if state == _BODY and self._until_close():
            self._finish()
            return
        answered = state == _BODY or bool(self._buf)
        self._fail(UpstreamError(f"connection closed: {exc or 'EOF'}", answered=answered))

    def data_received(self, data: bytes) -> None:
        state = self._state
        if state == _HEADED:
            self._buf += data
        elif state == _BODY:
            self._read_body(data)
        elif state == _HEAD:
            self._buf += data
            self._read_head()
        elif state == _IDLE:  # bytes nobody asked for: not to be trusted with another request
            self._drop()

    # -- one exchange ----------------------------------------------------------------------------
    @property
    def reusable(self) -> bool:
        return self._state == _IDLE and self.transport is not None

    async def send(self, request: bytes) -> ResponseHead:
        """Write a whole request and wait for the head of its response."""
        if not self.reusable or self.transport is None:
            raise UpstreamError("connection is not idle")
        self._state = _HEAD
        self._buf = b""
        self._head = None
        self._error = None
        self._complete = False
        self.transport.write(request)
        await self._wait()
        if self._head is None:
            raise UpstreamError("no response head")
        return self._head

    async def read_body(self) -> bytes:
        """The whole body of the response whose head `send` returned."""
        if self._head is None:
            raise UpstreamError("no response to read")
        if self._state == _HEADED or (self._state == _CLOSED and not self._complete):
            buf, self._buf = self._buf, b""
            self._state = _BODY
            if buf:
                self._read_body(buf)
            if self._eof and not self._complete:
                if not self._until_close():
                    raise UpstreamError("connection closed mid-body", answered=True)
                self._finish()
        if not self._complete:
            await self._wait()
        return b"".join(self._body)

    def hand_over(self, protocol: asyncio.Protocol) -> tuple[bytes, bool]:
        """Give the socket to `protocol` (a relay): returns the body bytes already read and
        whether the engine has already closed the connection."""
        if self._state not in (_HEADED, _CLOSED) or self._head is None:
            raise UpstreamError("no body to hand over")
        leftover, self._buf = self._buf, b""
        if self.transport is None:
            return leftover, True
        self._state = _HANDED
        self.transport.set_protocol(protocol)
        return leftover, False

    def take_back(self) -> None:
        """The relay read the whole body and the engine keeps the connection open: idle again."""
        if self.transport is not None and self._state == _HANDED:
            self.transport.set_protocol(self)
            self._state = _IDLE
            self.responses += 1

    def close(self) -> None:
        """Drop the connection (an unfinished answer makes the engine abort the request)."""
        self._drop()
        self._fail(UpstreamError("connection closed by the gateway", answered=True))

    # -- parsing ---------------------------------------------------------------------------------
    def _read_head(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD:
                self._protocol_error("response head too long")
            return
        try:
            head = parse_head(buf[:end])
        except ValueError as exc:
            self._protocol_error(str(exc))
            return
        self._buf = buf[end + 4 :]
        if 100 <= head.status < 200:  # an interim answer: the real head follows
            self._read_head()
            return
        self._head = head
        self._body = []
        self._remaining = head.length or 0
        self._state = _HEADED
        if head.length == 0 or head.status in (204, 304):
            self._state = _BODY
            self._finish()
        self._wake()

    def _until_close(self) -> bool:
        head = self._head
        return head is not None and not head.chunked and head.length is None

    def _read_body(self, data: bytes) -> None:
        """Collect a whole body (only after `read_body`; a stream is handed over)."""
        head = self._head
        if head is None or self._complete:
            return
        if not head.chunked:
            self._body.append(data)
            if head.length is not None:
                self._remaining -= len(data)
                if self._remaining <= 0:
                    if self._remaining < 0:
                        self._protocol_error("more bytes than Content-Length")
                        return
                    self._finish()
            return
        buf = self._buf + data if self._buf else data
        try:
            found = framing.split(buf)
        except framing.FramingError as exc:
            self._protocol_error(str(exc))
            return
        self._body.extend(buf[c.data : c.end - 2] for c in found.chunks)
        self._buf = buf[found.consumed :]
        if found.ended:
            self._finish()

    def _finish(self) -> None:
        head = self._head
        leftover = bool(self._buf)
        self._buf = b""
        self._complete = True
        self.responses += 1
        if self._state != _CLOSED:
            self._state = _IDLE
            if head is None or not head.keep_alive or leftover:
                self._drop()
        self._wake()

    def _drop(self) -> None:
        self._state = _CLOSED
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    def _protocol_error(self, message: str) -> None:
        self._drop()
        self._fail(UpstreamError(f"the engine's answer is not HTTP/1.1: {message}", answered=True))

    # -- waiting ---------------------------------------------------------------------------------
    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
