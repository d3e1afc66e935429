"""Connection hygiene: a cap on open connections, a deadline for request heads, half-closed clients.

Every accepted socket gets a `GuardedConnection` wrapped around aiohttp's own protocol; it sees the
bytes that come in (never those that go out, so streaming costs nothing extra) and decides:

- **cap**: at most `cap` connections are served at once, where the cap leaves `fd_reserve` file
  descriptors of the process limit free (for the engine pool, the log, and these refusals). One more
  gets an immediate `503` with a JSON body and `Retry-After`, then a lingering close (its request is
  read and dropped), so the client reads a clear answer instead of a reset.
- **head deadline**: a request's head (request line and headers) must be complete `header_timeout_s`
  after its first byte, else `408` and close (slowloris). Idle connections, between requests or
  before the first, are aiohttp's keep-alive timeout's (`idle_timeout_s`).
- **half-close**: a client that shuts down its sending side after a complete request head still gets
  its answer; the connection closes after it (asyncio would close it at once).

Every route handler is wrapped (`ConnectionGuard.tracked`) to tell its connection when it starts
and ends, so a request in progress is never cut by the head deadline, whatever its bytes look like.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from llmctl.core.errors import ConfigError
from llmctl.core.openai import error_bytes

log = logging.getLogger(__name__)

HEAD_END = b"\r\n\r\n"
MAX_LINE = 8190  # aiohttp's own limit on a request line
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# After a FIN, how long (and how often) to look for the reset a closed client answers a write with.
PROBE_S = 2.0
PROBE_EVERY_S = 0.02
TCP_CLOSE = 7  # Linux's TCP_CLOSE state, after a reset
# A refused client's request is read and dropped for this long before the socket closes, so the
# kernel does not answer its unread bytes with a reset that would hide the 503.
LINGER_S = 2.0


@dataclass(frozen=True)
class ConnectionLimits:
    """What the guard enforces (from GatewaySettings)."""

    cap: int
    header_timeout_s: float
    fd_reserve: int


def connection_cap(max_connections: int, fd_reserve: int, fd_limit: int | None, in_use: int) -> int:
    """How many connections may be open at once: `max_connections`, lowered so that the descriptors
    already in use plus the reserve fit under the process limit (None: unlimited)."""
    if fd_limit is None:
        return max_connections
    return min(max_connections, fd_limit - in_use - fd_reserve)


def fd_limit(wanted: int) -> int | None:
    """The process's open-file limit, first raised towards `wanted` as far as the hard limit allows
    (None: unlimited)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            soft = new
        except (ValueError, OSError):
            pass  # keep the soft limit we have
    return None if soft == resource.RLIM_INFINITY else int(soft)


def open_fds() -> int:
    """Descriptors this process holds now (0 where /proc is missing: the cap is then looser)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def limits_for(max_connections: int, fd_reserve: int, header_timeout_s: float) -> ConnectionLimits:
    """The limits for this process: the cap from the descriptor limit, or a ConfigError when even
    one connection does not fit."""
    in_use = open_fds()
    limit = fd_limit(max_connections + fd_reserve + in_use)
    cap = connection_cap(max_connections, fd_reserve, limit, in_use)
    if cap < 1:
        raise ConfigError(
            f"the open-file limit ({limit}) leaves no room for connections: {in_use} descriptors "
            f"are in use and fd_reserve keeps {fd_reserve} free; raise the limit (ulimit -n) "
            "or lower fd_reserve"
        )
    return ConnectionLimits(cap, header_timeout_s, fd_reserve)


def _canned(status: int, reason: str, message: str, code: str, retry_after: int | None) -> bytes:
    body = error_bytes(
        message, type="server_error" if status >= 500 else "invalid_request_error", code=code
    )
    head = [
        f"HTTP/1.1 {status} {reason}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


TOO_MANY = _canned(
    503,
    "Service Unavailable",
    "the gateway has too many open connections; retry later",
    "too_many_connections",
    1,
)
HEAD_TIMEOUT = _canned(
    408, "Request Timeout", "the request head did not arrive in time", "request_timeout", None
)


class ConnectionGuard:
    """The open connections of one gateway and the limits they live under."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.open: dict[asyncio.BaseTransport, GuardedConnection] = {}
        self.lingering = 0
        self.refused = 0

    def wrap(self, factory: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """A protocol factory for `loop.create_server` that guards what `factory` makes."""
        return lambda: GuardedConnection(self, factory())

    def tracked(self, handler: Handler) -> Handler:
        """`handler`, telling its request's connection when it starts and ends. (A wrapper per
        route, not a middleware: aiohttp rebuilds the middleware chain on every request.)"""

        async def run(request: web.Request) -> web.StreamResponse:
            transport = request.transport
            conn = self.open.get(transport) if transport is not None else None
            if conn is None:
                return await handler(request)
            conn.request_started(request)
            try:
                return await handler(request)
            finally:
                conn.request_done()

        return run


class GuardedConnection(asyncio.Protocol):
    """One client socket: forwards everything to aiohttp's protocol, watching what comes in."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.refused = False
        self.in_request = False  # a handler runs (told by the middleware)
        self.head_done = False  # the current request's head is complete
        self.request: web.BaseRequest | None = None  # the one whose handler runs
        self._line = b""  # the request line so far (its version decides the half-close probe)
        self._tail = b""  # the last bytes of a head still coming in (to find HEAD_END across reads)
        self._timer: asyncio.TimerHandle | None = None

    # --- the wrapped protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        guard = self.guard
        if len(guard.open) >= guard.limits.cap:
            self._refuse()
            return
        guard.open[transport] = self
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if not self.head_done:
            self._watch_head(data)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        """A FIN from the client: a client that left, or one that half-closed after its request and
        waits for the answer. Only a write can tell them apart (a closed socket answers it with a
        reset), so a request whose answer has not begun gets an interim `100 Continue`, which every
        HTTP/1.1 client skips, and a reset to it within PROBE_S cancels the request as a
        disconnect; otherwise the request is answered and the connection closed after it."""
        if self.refused:
            self._close()
            return None
        if not self.head_done or self._answering():
            return self.inner.eof_received()  # nothing to answer, or a stream's reader left
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()  # aiohttp's: no further requests, close once this one is answered
        if self._line.endswith(b" HTTP/1.1") and self.transport is not None:
            self.transport.write(CONTINUE)
            self._probe(0)
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        if self.refused:
            self.guard.lingering -= 1
            return
        self.guard.open.pop(self.transport, None)  # type: ignore[arg-type]
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if not self.refused:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if not self.refused:
            self.inner.resume_writing()

    # --- requests (told by the route handlers' wrapper) --------------------------------------------------------------

    def request_started(self, request: web.BaseRequest) -> None:
        self.in_request = self.head_done = True
        self.request = request
        self._cancel_timer()

    def request_done(self) -> None:
        self.in_request = self.head_done = False
        self.request = None
        self._line = self._tail = b""

    def _answering(self) -> bool:
        """Whether any byte of the answer has reached the socket (a plain Response is written
        after its handler returns, in the same step: no FIN can be read in between)."""
        return self.request is not None and self.request.writer.output_size > 0

    # --- the rules -------------------------------------------------------------------------------

    def _watch_head(self, data: bytes) -> None:
        if not self._line.endswith(b"\r\n") and len(self._line) < MAX_LINE:
            self._line += data[: MAX_LINE - len(self._line)]
            if b"\r\n" in self._line:
                self._line = self._line[: self._line.index(b"\r\n")]
        seen = self._tail + data
        if HEAD_END in seen:
            self.head_done = True
            self._cancel_timer()
            return
        self._tail = seen[-(len(HEAD_END) - 1) :]
        if self._timer is None and data:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.guard.limits.header_timeout_s, self._head_late)

    def _head_late(self) -> None:
        self._timer = None
        if self.head_done or self.transport is None:
            return
        log.info(
            "closed a connection from %s: request head incomplete after %gs",
            _peer(self.transport),
            self.guard.limits.header_timeout_s,
        )
        self.transport.write(HEAD_TIMEOUT)
        self.transport.close()

    def _probe(self, done: int) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if _was_reset(transport):
            transport.abort()  # aiohttp then cancels the handler: a client disconnect
            return
        if done * PROBE_EVERY_S < PROBE_S:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(PROBE_EVERY_S, self._probe, done + 1)

    def _refuse(self) -> None:
        guard = self.guard
        transport = self.transport
        if transport is None:
            return
        self.refused = True
        guard.refused += 1
        guard.lingering += 1
        if guard.refused == 1 or guard.refused % 1000 == 0:
            log.warning(
                "connection cap of %d reached: answering 503 (%d refused so far)",
                guard.limits.cap,
                guard.refused,
            )
        transport.write(TOO_MANY)
        # Refusals in flight hold descriptors from the reserve: linger on only half of it.
        if guard.lingering > max(1, guard.limits.fd_reserve // 2) or not transport.can_write_eof():
            transport.close()
            return
        transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(LINGER_S, self._close)

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _was_reset(transport: asyncio.BaseTransport) -> bool:
    """Whether the peer answered with a reset (its socket is closed, not half-closed)."""
    sock: Any = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return True
        if hasattr(socket, "TCP_INFO"):  # Linux: the first byte of tcp_info is the state
            return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE)
    except OSError:
        return True
    return False


def _peer(transport: asyncio.BaseTransport) -> str:
    peer: Any = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


class GuardedSite(web.TCPSite):
    """aiohttp's TCP site, with every accepted connection under `guard`."""

    def __init__(self, runner: web.BaseRunner, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(runner, **kwargs)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        if server is None:
            raise RuntimeError("the runner is not set up")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self.guard.wrap(server),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


__all__ = [
    "ConnectionGuard",
    "ConnectionLimits",
    "GuardedSite",
    "connection_cap",
    "limits_for",
]
