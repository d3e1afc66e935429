"""The keep-alive pool of engine connections: reused newest first, dropped after a few idle seconds.

Admission bounds how many requests are in flight, so the pool itself does not: every request takes
an idle connection to its engine or opens one. Idle connections are dropped after `idle_s` (4 s),
before uvicorn's 5 s keep-alive would close them under a request. A reused connection that fails
before any byte of an answer (the engine closed it while idle) is replaced by a fresh one, once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from typing import NamedTuple
from urllib.parse import urlsplit

from llmctl.gateway.wire import EngineConnection, ResponseHead, UpstreamError


class ConnectError(Exception):
    """The engine could not be reached (refused, unreachable, no such host, connect timeout)."""


class Target(NamedTuple):
    """Where an engine base URL points: the address to connect to and the path prefix."""

    host: str
    port: int
    prefix: str
    tls: bool
    authority: str  # the Host header


def target_of(url: str) -> Target:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    authority = parts.netloc.rpartition("@")[2]
    return Target(host, port, parts.path.rstrip("/"), tls, authority)


class ConnectionPool:
    """Idle connections per engine base URL."""

    def __init__(
        self, connect_timeout_s: float = 5.0, idle_s: float = 4.0, dns_ttl_s: float = 300.0
    ) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.idle_s = idle_s
        self.dns_ttl_s = dns_ttl_s
        self._idle: dict[str, list[EngineConnection]] = {}
        self._targets: dict[str, Target] = {}
        self._addresses: dict[tuple[str, int], tuple[str, float]] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        self._ssl: ssl.SSLContext | None = None
        self.opened = 0  # connections opened so far (tests and benchmarks read it)

    def target(self, url: str) -> Target:
        found = self._targets.get(url)
        if found is None:
            found = self._targets[url] = target_of(url)
        return found

    async def exchange(self, url: str, request: bytes) -> tuple[EngineConnection, ResponseHead]:
        """Send `request` to the engine at `url` and wait for the head of its answer."""
        idle = self._idle.get(url)
        while idle:
            conn = idle.pop()
            if not conn.reusable:
                continue
            try:
                return conn, await conn.send(request)
            except UpstreamError as exc:
                conn.close()
                if exc.answered:
                    raise
                break  # stale: the engine closed it while idle; try a fresh one
            except BaseException:
                conn.close()
                raise
        conn = await self._connect(url)
        try:
            return conn, await conn.send(request)
        except BaseException:
            conn.close()
            raise

    def release(self, url: str, conn: EngineConnection) -> None:
        """Keep `conn` for the next request to `url` if it can carry one, else drop it."""
        if not conn.reusable:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        self._idle.setdefault(url, []).append(conn)
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.idle_s / 2, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    def _sweep(self) -> None:
        self._sweeper = None
        oldest = time.monotonic() - self.idle_s
        left = False
        for url, idle in list(self._idle.items()):
            keep = [c for c in idle if c.reusable and c.idle_since > oldest]
            for conn in idle:
                if conn not in keep:
                    conn.close()
            if keep:
                self._idle[url] = keep
                left = True
            else:
                del self._idle[url]
        if left:
            loop = asyncio.get_running_loop()
            self._sweeper = loop.call_later(self.idle_s / 2, self._sweep)

    async def _connect(self, url: str) -> EngineConnection:
        target = self.target(url)
        loop = asyncio.get_running_loop()
        context = None
        if target.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                address = await self._resolve(target.host, target.port)
                _, conn = await loop.create_connection(
                    EngineConnection,
                    address,
                    target.port,
                    ssl=context,
                    server_hostname=target.host if context is not None else None,
                )
        except TimeoutError:
            raise ConnectError(f"connect timeout after {self.connect_timeout_s:g} s") from None
        except OSError as exc:
            raise ConnectError(exc.strerror or str(exc)) from None
        self.opened += 1
        return conn

    async def _resolve(self, host: str, port: int) -> str:
        """An address of `host`, cached for `dns_ttl_s` (an IP literal is its own address)."""
        try:
            ipaddress.ip_address(host)
            return host
        except ValueError:
            pass
        now = time.monotonic()
        cached = self._addresses.get((host, port))
        if cached is not None and cached[1] > now:
            return cached[0]
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        if not infos:
            raise OSError(f"{host} has no address")
        address = str(infos[0][4][0])
        self._addresses[(host, port)] = (address, now + self.dns_ttl_s)
        return address
