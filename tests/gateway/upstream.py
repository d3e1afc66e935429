"""A purpose-built engine for gateway tests: exact control per request, counters of what it saw.

Each request may carry a `fake` object that the gateway forwards untouched:
`delay` (seconds before headers), `status` (answer with this error), `tokens`, `interval` (seconds
between tokens), `drop_after` (cut the connection after N tokens), `stall_after` (stop sending after
N tokens), `no_done` (end without `[DONE]`), `json_for_stream` (answer a stream request with JSON),
`retry_after` (a Retry-After header on an error answer), `early_role` (send chat's role frame at
once, then wait this many seconds before the first token), `linger` (seconds between `[DONE]` and
the end of the response).

Streams are framed as vLLM frames them: chat's role frame goes out with the first token, then one
frame per token, then a finish frame with an empty delta (empty text for completions).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from aiohttp import web
from multidict import CIMultiDict

T = TypeVar("T")
MODEL = "fake-model"


class LoopThread:
    """An event loop in a daemon thread, for servers that tests talk to over real sockets."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class FakeEngine:
    """The engine double; its counters are read from the test thread."""

    def __init__(self) -> None:
        self.ready = True
        self.in_flight = 0
        self.max_in_flight = 0
        self.started = 0
        self.completed = 0
        self.aborted = 0
        self.abort_times: list[float] = []
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[CIMultiDict[str]] = []
        # The gateway's connections that carried completions (the transports themselves: a port
        # number could be reused by a later connection).
        self.connections: set[asyncio.BaseTransport] = set()
        self.models_body: bytes | None = None  # replaces the /v1/models answer when set
        self.metrics_body: bytes | None = None  # the /metrics page (None: 404)
        self.models_auth: list[str | None] = []  # Authorization of each /v1/models request
        self.runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_post("/v1/chat/completions", self._completion)
        app.router.add_post("/v1/completions", self._completion)
        return app

    async def start(self, port: int = 0) -> None:
        self.runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        """The engine's /metrics: `metrics_body` when a test set one, else 404 (none at all)."""
        if self.metrics_body is None:
            return web.Response(status=404)
        return web.Response(body=self.metrics_body, content_type="text/plain")

    async def _models(self, request: web.Request) -> web.Response:
        self.models_auth.append(request.headers.get("Authorization"))
        if self.models_body is not None:
            return web.Response(body=self.models_body, content_type="application/json")
        if not self.ready:
            return web.json_response({"object": "list", "data": []})
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def _completion(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.bodies.append(body)
        self.headers.append(CIMultiDict(request.headers))
        if request.transport is not None:
            self.connections.add(request.transport)
        spec: dict[str, Any] = body.get("fake", {})
        self.started += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        done = False
        try:
            await asyncio.sleep(spec.get("delay", 0))
            status = spec.get("status")
            if status:
                done = True
                err = {"error": {"message": "fake failure", "type": "x", "code": status}}
                extra = {"Retry-After": str(spec["retry_after"])} if "retry_after" in spec else None
                return web.json_response(err, status=status, headers=extra)
            chat = request.path.endswith("chat/completions")
            tokens = int(spec.get("tokens", 3))
            if not body.get("stream") or spec.get("json_for_stream"):
                await asyncio.sleep(spec.get("interval", 0) * tokens)
                done = True
                return web.json_response(_full(chat, tokens))
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            early = chat and "early_role" in spec
            if early:
                await out.write(_event(_role_chunk()))
                await asyncio.sleep(spec["early_role"])
            for i in range(tokens):
                if spec.get("drop_after") == i:
                    done = True
                    assert request.transport is not None
                    request.transport.close()
                    return out
                if spec.get("stall_after") == i:
                    await asyncio.sleep(3600)
                frame = _event(_chunk(chat, i))
                if i == 0 and chat and not early:
                    frame = _event(_role_chunk()) + frame
                await out.write(frame)
                if spec.get("interval"):
                    await asyncio.sleep(spec["interval"])
            await out.write(_event(_finish_chunk(chat)))
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "prompt_tokens": 7,
                    "completion_tokens": tokens,
                    "total_tokens": 7 + tokens,
                }
                await out.write(_event({**_chunk(chat, 0), "choices": [], "usage": usage}))
            if not spec.get("no_done"):
                await out.write(b"data: [DONE]\n\n")
            await asyncio.sleep(spec.get("linger", 0))
            done = True
            return out
        except (asyncio.CancelledError, ConnectionResetError):
            self.aborted += 1
            self.abort_times.append(time.monotonic())
            raise
        finally:
            self.in_flight -= 1
            if done:
                self.completed += 1


def _event(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def _chunk(chat: bool, i: int) -> dict[str, Any]:
    if chat:
        choice = {"index": 0, "delta": {"content": f"t{i} "}, "finish_reason": None}
        obj = "chat.completion.chunk"
    else:
        choice = {"index": 0, "text": f"t{i} ", "finish_reason": None}
        obj = "text_completion"
    return {"id": "fake-1", "object": obj, "created": 1, "model": MODEL, "choices": [choice]}


def _role_chunk() -> dict[str, Any]:
    obj = _chunk(True, 0)
    obj["choices"][0]["delta"] = {"role": "assistant", "content": ""}
    return obj


def _finish_chunk(chat: bool) -> dict[str, Any]:
    obj = _chunk(chat, 0)
    choice = obj["choices"][0]
    if chat:
        choice["delta"] = {}
    else:
        choice["text"] = ""
    choice["finish_reason"] = "length"
    return obj


def _full(chat: bool, tokens: int) -> dict[str, Any]:
    text = "".join(f"t{i} " for i in range(tokens))
    if chat:
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": "length",
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "finish_reason": "length"}
        obj = "text_completion"
    usage = {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens}
    return {
        "id": "fake-1",
        "object": obj,
        "created": 1,
        "model": MODEL,
        "choices": [choice],
        "usage": usage,
    }
