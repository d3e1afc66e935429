"""The streaming client: a target URL and a keep-alive pool of protocol connections."""

from __future__ import annotations

import asyncio
import ssl
import time
from urllib.parse import urlsplit

from llmctl.bench.protocol import Connection
from llmctl.bench.record import RequestRecord
from llmctl.core.errors import UsageError


class Target:
    """Where requests go: scheme, host, port and the path prefix of an OpenAI-compatible base URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"not an http(s) URL: {url!r}")
        self.url = url
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        base = parts.path.rstrip("/")
        # Accept both http://host:port and http://host:port/v1 as the target.
        self.prefix = base[: -len("/v1")] if base.endswith("/v1") else base
        default_port = self.port == (443 if self.tls else 80)
        self.host_header = self.host if default_port else f"{self.host}:{self.port}"

    def api_url(self, path: str) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host_header}{self.prefix}{path}"


class StreamingClient:
    """Sends POST requests to one target over a pool of keep-alive connections."""

    def __init__(
        self,
        target: Target,
        *,
        api_key: str | None,
        timeout_s: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self._idle: list[Connection] = []
        # Connections carrying a request; one whose sender was cancelled stays here for `aclose`.
        self._busy: set[Connection] = set()
        self._ssl: ssl.SSLContext | None = ssl.create_default_context() if target.tls else None
        auth = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
        # Extra headers (a mix stream's class) are built into every request's bytes once, here.
        extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        self._head_tail = (
            f"Host: {target.host_header}\r\nContent-Type: application/json\r\n"
            f"Accept: text/event-stream\r\nUser-Agent: llmctl-bench\r\n{auth}{extra}"
        ).encode()

    def build(self, path: str, body: bytes) -> bytes:
        """The request bytes for POST `path` with a JSON `body` (built once per request)."""
        line = f"POST {self.target.prefix}{path} HTTP/1.1\r\n".encode()
        return b"%s%sContent-Length: %d\r\n\r\n%s" % (line, self._head_tail, len(body), body)

    async def send(self, request: bytes, record: RequestRecord, token_key: bytes) -> None:
        """Send one request and fill `record`; never raises for server or network failures."""
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            conn, reused = await self._acquire(loop, record)
            if conn is None:
                return
            self._busy.add(conn)
            future = conn.start(request, record, token_key)
            timer = loop.call_later(
                self.timeout_s, conn.abort, "client_timeout", f"no answer in {self.timeout_s:g}s"
            )
            try:
                reusable = await future
            finally:
                timer.cancel()
            self._busy.discard(conn)
            # A kept-alive connection the server had already closed: retry once on a fresh one.
            if reused and record.failure == "stream_error" and not conn.got_head and attempt == 0:
                record.failure = record.error = None
                record.status = 0
                continue
            if reusable:
                self._idle.append(conn)
            elif conn.transport is not None and not conn.transport.is_closing():
                conn.transport.close()  # `Connection: close` or a body read to EOF: free the socket
            return

    async def _acquire(
        self, loop: asyncio.AbstractEventLoop, record: RequestRecord
    ) -> tuple[Connection | None, bool]:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn, True
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    Connection, self.target.host, self.target.port, ssl=self._ssl
                ),
                timeout=min(self.timeout_s, 30.0),
            )
        except (OSError, TimeoutError) as exc:
            record.sent = record.end = time.perf_counter()
            record.failure, record.error = "connect_error", str(exc) or type(exc).__name__
            return None, False
        return conn, False

    async def aclose(self, timeout_s: float = 1.0) -> None:
        """Close every connection, idle or mid-response, and wait until their sockets are gone.

        Mid-response ones are left by senders that were cancelled (Ctrl-C or a failing progress
        hook): they are aborted, since their streams cannot be reused. Waiting for
        `connection_lost` matters because a loop closed before it leaves transports unclosed.
        """
        conns = [*self._idle, *self._busy]
        self._idle.clear()
        self._busy.clear()
        for conn in conns:
            if conn.transport is not None and not conn.transport.is_closing():
                if conn.record is None:
                    conn.transport.close()
                else:
                    conn.transport.abort()
        lost = [conn.lost for conn in conns if conn.lost is not None and not conn.lost.done()]
        if lost:
            await asyncio.wait(lost, timeout=timeout_s)
