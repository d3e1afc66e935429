"""A cheap fake OpenAI-compatible engine: streams N tokens with exact delays, nothing else.

Used to measure the bench client's own cost (the engine must cost far less than the client) and by
tests that need exact TTFT/ITL. Raw asyncio protocol, timers grouped into 0.5 ms slots, prebuilt
chunk bytes.

    python benchmarks/fake_engine.py --port 9000 --ttft-ms 10 --itl-ms 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import signal
from typing import Any

_TOKEN = json.dumps(
    {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": " tok"}}],
    },
    separators=(",", ":"),
).encode()
_TEXT = json.dumps(
    {"id": "x", "object": "text_completion", "choices": [{"index": 0, "text": " tok"}]},
    separators=(",", ":"),
).encode()
_ROLE = json.dumps(
    {
        "id": "x",
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
    },
    separators=(",", ":"),
).encode()


def _chunk(payload: bytes) -> bytes:
    data = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


TOKEN_CHUNK = _chunk(_TOKEN)
TEXT_CHUNK = _chunk(_TEXT)
ROLE_CHUNK = _chunk(_ROLE)
DONE_CHUNK = _chunk(b"[DONE]") + b"0\r\n\r\n"
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
    b"x-queue-wait-ms: 0\r\n\r\n"
)


def _response(status: int, body: bytes, content_type: bytes = b"application/json") -> bytes:
    reason = {200: b"OK", 404: b"Not Found", 429: b"Too Many Requests", 503: b"Unavailable"}
    return b"HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %d\r\n\r\n%s" % (
        status,
        reason.get(status, b"Error"),
        content_type,
        len(body),
        body,
    )


class Engine:
    def __init__(self, args: argparse.Namespace) -> None:
        self.model = args.model
        self.tokens = args.tokens
        self.ttft = args.ttft_ms / 1000.0
        self.itl = args.itl_ms / 1000.0
        self.statuses = itertools.cycle([int(s) for s in args.status_cycle.split(",")])
        self.running = 0
        self.clock: Clock

    def metrics(self) -> bytes:
        return (
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="{self.model}",engine="0"}} {self.running}\n'
            "# TYPE vllm:num_preemptions_total counter\n"
            f'vllm:num_preemptions_total{{model_name="{self.model}",engine="0"}} 0\n'
        ).encode()


class Conn(asyncio.Protocol):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.streaming = False
        self.count = self.sent = self.prompt = 0
        self.usage = False
        self.start = 0.0
        self.token_chunk = TOKEN_CHUNK

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming:
            self.streaming = False
            self.engine.running -= 1
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._next()

    def _next(self) -> None:
        if self.busy:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
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
        method, path = head.split(" ", 2)[:2]
        self._handle(method, path, body)

    def _handle(self, method: str, path: str, body: bytes) -> None:
        assert self.transport is not None
        engine = self.engine
        if path.endswith("/v1/models"):
            data = {"object": "list", "data": [{"id": engine.model, "object": "model"}]}
            self.transport.write(_response(200, json.dumps(data).encode()))
        elif path == "/health":
            self.transport.write(_response(200, b"{}"))
        elif path == "/metrics":
            self.transport.write(_response(200, engine.metrics(), b"text/plain; version=0.0.4"))
        elif method == "POST" and path.endswith("/completions"):
            status = next(engine.statuses)
            if status != 200:
                error = {
                    "error": {"message": f"fake {status}", "type": "x", "code": f"fake_{status}"}
                }
                self.transport.write(_response(status, json.dumps(error).encode()))
            else:
                request: dict[str, Any] = json.loads(body)
                chat = path.endswith("/chat/completions")
                self._stream(int(request.get("max_tokens") or engine.tokens), request, chat)
                return
        else:
            self.transport.write(_response(404, b'{"error":{"message":"not found"}}'))
        self._next()

    def _stream(self, count: int, request: dict[str, Any], chat: bool) -> None:
        assert self.transport is not None
        self.busy = True
        self.engine.running += 1
        self.transport.write(STREAM_HEAD + ROLE_CHUNK if chat else STREAM_HEAD)
        self.token_chunk = TOKEN_CHUNK if chat else TEXT_CHUNK
        if chat:
            prompt = sum(len(str(m.get("content", "")).split()) for m in request["messages"])
        else:
            prompt = len(str(request.get("prompt", "")).split())
        self.count = count
        self.sent = 0
        self.prompt = prompt
        self.usage = bool((request.get("stream_options") or {}).get("include_usage", False))
        self.start = self.engine.clock.time()
        self.streaming = True
        self.engine.clock.at(self.start + self.engine.ttft, self)

    def tick(self) -> None:
        """Send the next token; scheduled against the start time so delays never drift."""
        if self.transport is None:
            return
        self.transport.write(self.token_chunk)
        self.sent += 1
        engine = self.engine
        if self.sent < self.count:
            engine.clock.at(self.start + engine.ttft + self.sent * engine.itl, self)
            return
        self.streaming = False
        engine.running -= 1
        tail = b""
        if self.usage:
            prompt, count = self.prompt, self.count
            data = {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": count,
                                             "total_tokens": prompt + count}}  # fmt: skip
            tail = _chunk(json.dumps(data, separators=(",", ":")).encode())
        self.transport.write(tail + DONE_CHUNK)
        self.busy = False
        self._next()


class Clock:
    """Timers grouped into 0.5 ms slots: one loop timer per slot, not one per token.

    At 1,024 streams x 100 tokens/s that is at most 2,000 timers a second instead of 102,400,
    which keeps the fake engine cheaper than the client it is there to measure.
    """

    RESOLUTION = 0.0005

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.slots: dict[int, list[Conn]] = {}

    def time(self) -> float:
        return self.loop.time()

    def at(self, when: float, conn: Conn) -> None:
        slot = math.ceil(when / self.RESOLUTION)
        due = self.slots.get(slot)
        if due is None:
            self.slots[slot] = [conn]
            self.loop.call_at(slot * self.RESOLUTION, self._fire, slot)
        else:
            due.append(conn)

    def _fire(self, slot: int) -> None:
        for conn in self.slots.pop(slot):
            conn.tick()


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    engine = Engine(args)
    engine.clock = Clock()
    server = await loop.create_server(lambda: Conn(engine), args.host, args.port, backlog=4096)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"fake engine on http://{args.host}:{args.port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--model", default="fake")
    parser.add_argument("--tokens", type=int, default=64, help="tokens when max_tokens is absent")
    parser.add_argument("--ttft-ms", type=float, default=10.0)
    parser.add_argument("--itl-ms", type=float, default=10.0)
    parser.add_argument(
        "--status-cycle",
        default="200",
        help="statuses for completion requests, cycled (e.g. 200,429,503)",
    )
    parser.add_argument("--no-uvloop", action="store_true")
    args = parser.parse_args()
    factory = None
    if not args.no_uvloop:
        with contextlib.suppress(ImportError):
            import uvloop

            factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(args))


if __name__ == "__main__":
    main()
