"""A progress hook that raises mid-level: bench re-raises it at once and closes every connection."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from collections.abc import Iterator

import pytest

from llmctl.bench.config import BenchConfig, PromptSpec
from llmctl.bench.progress import LevelProgress, NullProgress
from llmctl.bench.runner import run_bench
from llmctl.bench.strategies import ConcurrentStrategy, RateStrategy
from tests.support import eventually

_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
_DATA = b'data: {"choices":[{"index":0,"delta":{"content":" tok"}}]}\n\n'
_TOKEN = b"%x\r\n%s\r\n" % (len(_DATA), _DATA)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _EndlessStreams(asyncio.Protocol):
    """Answers a POST with a stream that sends a token every 20 ms and never ends."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.open.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.open.discard(self)
        if self.timer is not None:
            self.timer.cancel()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if not data.startswith(b"POST"):
            self.transport.write(_NOT_FOUND)  # /metrics: the sampler notes the error and goes on
            self.transport.close()
        elif self.timer is None:
            self.server.streams += 1
            self.transport.write(_HEAD)
            self._token()

    def _token(self) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(_TOKEN)
            self.timer = asyncio.get_running_loop().call_later(0.02, self._token)


class _Server:
    """An endless-stream server on 127.0.0.1 in its own thread and loop; counts open connections."""

    def __init__(self) -> None:
        self.open: set[_EndlessStreams] = set()
        self.streams = 0
        self.loop = asyncio.new_event_loop()
        self.port = 0
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(5)

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(
            self.loop.create_server(lambda: _EndlessStreams(self), "127.0.0.1", 0)
        )
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()
        server.close()
        for conn in list(self.open):
            if conn.transport is not None:
                conn.transport.abort()
        self.loop.run_until_complete(server.wait_closed())
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def open_count(self) -> int:
        return len(self.open)  # a set's len is atomic enough to read from another thread

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def endless() -> Iterator[_Server]:
    server = _Server()
    try:
        yield server
    finally:
        server.stop()


class _RaiseWhenBusy(NullProgress):
    """Raises `error` from `on_update` once `streams` requests are in flight (mid-level)."""

    def __init__(self, error: BaseException, streams: int) -> None:
        self.error, self.streams = error, streams
        self.raised_at: float | None = None

    def on_update(self, progress: LevelProgress) -> None:
        if progress.in_flight >= self.streams:
            self.raised_at = time.monotonic()
            raise self.error


@pytest.mark.parametrize(
    "error", [KeyboardInterrupt(), RuntimeError("hook failed")], ids=["ctrl-c", "error"]
)
@pytest.mark.parametrize(
    "strategy",
    [ConcurrentStrategy(concurrency=6), RateStrategy(rate=40, max_concurrency=6)],
    ids=["closed-loop", "open-loop"],
)
def test_a_hook_raising_mid_level_propagates_and_closes_every_connection(
    endless: _Server, error: BaseException, strategy: ConcurrentStrategy | RateStrategy
) -> None:
    # The streams never end and the level would run for a minute: only the hook can stop it.
    config = BenchConfig(
        target=f"http://127.0.0.1:{endless.port}",
        model="m",
        levels=[strategy],
        duration_s=60.0,
        warmup_s=0.0,
        prompts=PromptSpec(input_len=8, output_len=16),
        sample_interval_s=0.1,
    )
    hooks = _RaiseWhenBusy(error, streams=6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(type(error)) as raised:
            run_bench(config, hooks)
        returned_at = time.monotonic()
        gc.collect()  # an unclosed transport warns when it is collected
    assert raised.value is error
    assert hooks.raised_at is not None
    assert returned_at - hooks.raised_at < 1.0
    assert endless.streams >= 6
    # The server sees every stream closed by the client (it never closes one itself).
    eventually(lambda: endless.open_count() == 0, timeout=1.0, what="every connection closed")
    leaks = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaks
