"""A raw-socket engine for relay tests: each completion is answered with scripted bytes, piece by piece.

The tests need what an HTTP server library would not do on request: a chunk cut in the middle,
the terminating chunk long after `[DONE]`, chunk extensions, a body delimited by Content-Length or
by closing the connection, bytes that are not chunked framing at all. `script(body)` returns the
pieces for one request (bytes, or a float: seconds to wait); `close` ends the connection after the
answer; `drop_reused` closes a connection, unanswered, when a second request arrives on it. Each
request's body and connection are recorded; `/v1/models` answers as a ready engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

Piece = bytes | float
Script = Callable[[dict[str, Any]], list[Piece]]

MODELS = b'{"object":"list","data":[{"id":"fake-model","object":"model"}]}'
SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)


def chunk(data: bytes, size_format: bytes = b"%x") -> bytes:
    return size_format % len(data) + b"\r\n" + data + b"\r\n"


def event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def text_event(text: str) -> bytes:
    return event({"id": "s", "object": "text_completion", "choices": [{"index": 0, "text": text}]})


def usage_event(prompt: int, completion: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": completion}
    return event({"id": "s", "choices": [], "usage": usage})


DONE = b"data: [DONE]\n\n"
LAST = b"0\r\n\r\n"


class ScriptedEngine:
    """The engine; `port` once started. Counters are read from the test thread."""

    def __init__(self, script: Script, *, close: bool = False, drop_reused: bool = False) -> None:
        self.script = script
        self.close = close
        self.drop_reused = drop_reused
        self.bodies: list[dict[str, Any]] = []
        self.connections = 0  # connections that carried completions (not the gateway's probes)
        self.transports: list[asyncio.Transport] = []
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for transport in self.transports:
                transport.close()


class _Conn(asyncio.Protocol):
    def __init__(self, engine: ScriptedEngine) -> None:
        self.engine = engine
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.answered = 0
        self.carried = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.engine.transports.append(self.transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or (self.task is not None and not self.task.done()):
            return
        head = self.buf[:end].decode("latin-1")
        length = 0
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(self.buf) < end + 4 + length:
            return
        body = self.buf[end + 4 : end + 4 + length]
        self.buf = self.buf[end + 4 + length :]
        path = head.split(" ")[1]
        if path.endswith("/v1/models"):
            self._write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n")
            self._write(b"Content-Length: %d\r\n\r\n%s" % (len(MODELS), MODELS))
            return
        if not self.carried:
            self.carried = True
            self.engine.connections += 1
        if self.engine.drop_reused and self.answered and self.transport is not None:
            self.transport.close()
            return
        self.answered += 1
        request = json.loads(body)
        self.engine.bodies.append(request)
        self.task = asyncio.get_running_loop().create_task(self._answer(request))

    async def _answer(self, request: dict[str, Any]) -> None:
        for piece in self.engine.script(request):
            if isinstance(piece, float):
                await asyncio.sleep(piece)
            else:
                self._write(piece)
        if self.engine.close and self.transport is not None:
            self.transport.close()

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
