"""The streaming relay over real sockets: the engine's framing, cut and joined in every way the
network allows, reaches the client as whole chunks; usage is counted and stripped; a slow client
holds the engine back."""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.gateway.client import run_post
from tests.gateway.conftest import GatewayHandle, MakeGateway
from tests.gateway.scripted import (
    DONE,
    LAST,
    SSE_HEAD,
    Piece,
    ScriptedEngine,
    chunk,
    text_event,
    usage_event,
)
from tests.gateway.upstream import LoopThread
from tests.support import eventually

COMPLETIONS = "/v1/completions"
MakeScripted = Callable[..., ScriptedEngine]


@pytest.fixture
def scripted(loop: LoopThread) -> Iterator[MakeScripted]:
    engines: list[ScriptedEngine] = []

    def make(script: Callable[[dict[str, Any]], list[Piece]], **kw: Any) -> ScriptedEngine:
        engine = ScriptedEngine(script, **kw)
        loop.run(engine.start())
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        loop.run(engine.stop())


def _body(**extra: Any) -> dict[str, Any]:
    return {"prompt": "hi", "stream": True, **extra}


def _texts(events: list[bytes]) -> list[str]:
    out = []
    for e in events:
        obj = json.loads(e[len(b"data: ") :]) if e != b"data: [DONE]" else None
        if obj and obj.get("choices"):
            out.append(obj["choices"][0]["text"])
    return out


def _gateway(make_gateway: MakeGateway, engine: ScriptedEngine, **kw: Any) -> GatewayHandle:
    return make_gateway(upstream_url=engine.url, **kw)


def _two_engines(
    make_gateway: MakeGateway, first: ScriptedEngine, second: ScriptedEngine
) -> GatewayHandle:
    gw = make_gateway(upstreams=[first.url, second.url], routing="round_robin")
    names = [e.url.removeprefix("http://") for e in (first, second)]
    eventually(lambda: all(gw.metric("llmctl_gateway_engine_up", engine=n) == 1 for n in names))
    return gw


def _usage_tail(request: dict[str, Any], tokens: int) -> bytes:
    asked = (request.get("stream_options") or {}).get("include_usage")
    return chunk(usage_event(5, tokens)) if asked else b""


def test_chunks_cut_anywhere_by_the_network_reach_the_client_whole(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    first, second = chunk(text_event("a")), chunk(text_event("b"))

    def script(request: dict[str, Any]) -> list[Piece]:
        # A chunk cut inside its size line, inside its data and inside its CRLF; then two
        # chunks and [DONE] in one read; the terminator 0.3 s after [DONE].
        body = first + second + second + _usage_tail(request, 3) + chunk(DONE)
        cuts = [0, 1, 20, len(first) - 1, len(body)]
        pieces: list[Piece] = [SSE_HEAD]
        for start, end in itertools.pairwise(cuts):
            pieces += [body[start:end], 0.02]
        return [*pieces, 0.3, LAST]

    engine = scripted(script)
    gw = _gateway(make_gateway, engine)
    start = time.monotonic()
    ans = run_post(gw.url, _body(), COMPLETIONS)
    assert time.monotonic() - start < 0.3  # the client's answer ends at [DONE]
    assert ans.status == 200
    assert _texts(ans.events) == ["a", "b", "b"]
    assert ans.events[-1] == b"data: [DONE]"
    assert b'"usage"' not in ans.body  # asked for by the gateway, not by the client
    assert gw.metric("llmctl_gateway_completion_tokens_total") == 3
    assert gw.metric("llmctl_gateway_time_to_first_token_seconds_count") == 1
    # The engine's connection went back to the pool once its answer ended (0.3 s after [DONE]).
    time.sleep(0.45)
    assert run_post(gw.url, _body(), COMPLETIONS).status == 200
    assert engine.connections == 1
    assert gw.metric("llmctl_gateway_completion_tokens_total") == 6


@pytest.mark.parametrize("framing", ["length", "close"])
def test_a_stream_not_framed_in_chunks_is_relayed(
    make_gateway: MakeGateway, scripted: MakeScripted, framing: str
) -> None:
    def script(request: dict[str, Any]) -> list[Piece]:
        body = text_event("x") + text_event("y") + DONE
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
        if framing == "length":
            head += b"Content-Length: %d\r\n" % len(body)
        else:
            head += b"Connection: close\r\n"
        return [head + b"\r\n", body[:30], 0.02, body[30:]]

    engine = scripted(script, close=framing == "close")
    gw = _gateway(make_gateway, engine)
    ans = run_post(gw.url, _body(), COMPLETIONS)
    assert ans.status == 200
    assert _texts(ans.events) == ["x", "y"]
    assert ans.events[-1] == b"data: [DONE]"
    # No usage from this engine: its stream was scanned, so the count is still exact.
    assert gw.metric("llmctl_gateway_completion_tokens_total") == 2


def test_usage_in_the_finish_chunk_is_counted_and_stripped(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    """The simulator's framing: finish frame, usage and [DONE] in one chunk."""

    def script(request: dict[str, Any]) -> list[Piece]:
        finish = text_event("")
        tail = finish + usage_event(5, 2) + DONE
        if not (request.get("stream_options") or {}).get("include_usage"):
            tail = finish + DONE
        return [SSE_HEAD, chunk(text_event("p") + text_event("q")) + chunk(tail) + LAST]

    engine = scripted(script)
    gw = _gateway(make_gateway, engine)
    plain = run_post(gw.url, _body(), COMPLETIONS)
    assert b'"usage"' not in plain.body
    assert _texts(plain.events) == ["p", "q", ""]
    asked = run_post(gw.url, _body(stream_options={"include_usage": True}), COMPLETIONS)
    assert b'"usage"' in asked.body
    assert gw.metric("llmctl_gateway_completion_tokens_total") == 4
    assert gw.metric("llmctl_gateway_prompt_tokens_total") == 10


def test_an_engine_that_ignores_stream_options_is_counted_by_scanning(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    texts = [chunk(text_event(t)) for t in ("a", "b", "", "c")]
    engine = scripted(lambda request: [SSE_HEAD, *texts, chunk(DONE), LAST])
    gw = _gateway(make_gateway, engine)
    for _ in range(3):
        assert run_post(gw.url, _body(), COMPLETIONS).status == 200
    assert gw.metric("llmctl_gateway_completion_tokens_total") == 9
    assert not gw.gateway.pool.engines[0].sends_usage


def test_an_engine_seen_to_send_usage_is_counted_from_it(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    def script(request: dict[str, Any]) -> list[Piece]:
        pieces: list[Piece] = [SSE_HEAD]
        for t in "abcd":
            pieces += [chunk(text_event(t)), 0.01]
        return [*pieces, _usage_tail(request, 4), chunk(DONE), LAST]

    engine = scripted(script)
    gw = _gateway(make_gateway, engine)
    for _ in range(3):
        assert run_post(gw.url, _body(), COMPLETIONS).status == 200
    assert gw.gateway.pool.engines[0].sends_usage
    assert gw.metric("llmctl_gateway_completion_tokens_total") == 12
    assert gw.metric("llmctl_gateway_time_per_output_token_seconds_count") == 3


def test_chunk_extensions_and_upper_case_sizes_are_understood(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    def script(request: dict[str, Any]) -> list[Piece]:
        pieces = [chunk(text_event("z" * 20), b"%X;ext=1"), chunk(text_event("w"), b"%04x")]
        return [SSE_HEAD, *pieces, chunk(DONE), b"0\r\nX-Trailer: 1\r\n\r\n"]

    gw = _gateway(make_gateway, scripted(script))
    ans = run_post(gw.url, _body(), COMPLETIONS)
    assert _texts(ans.events) == ["z" * 20, "w"]
    assert ans.events[-1] == b"data: [DONE]"


def test_broken_framing_mid_stream_ends_with_an_error_event(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    def script(request: dict[str, Any]) -> list[Piece]:
        return [SSE_HEAD, chunk(text_event("a")), 0.05, b"zz-not-a-size\r\n\r\n"]

    gw = _gateway(make_gateway, scripted(script))
    ans = run_post(gw.url, _body(), COMPLETIONS)
    assert ans.status == 200
    assert _texts(ans.events) == ["a"]
    assert json.loads(ans.events[-2][6:])["error"]["code"] == "upstream_error"
    assert ans.events[-1] == b"data: [DONE]"
    assert gw.metric("llmctl_gateway_upstream_errors_total", kind="stream") == 1
    gw.wait_idle()


def test_a_deadline_while_a_chunk_is_half_read_keeps_the_framing_whole(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    half = chunk(text_event("b"))

    def script(request: dict[str, Any]) -> list[Piece]:
        return [SSE_HEAD, chunk(text_event("a")), 0.05, half[:12], 30.0]

    gw = _gateway(make_gateway, scripted(script), request_timeout_s=0.5)
    ans = run_post(gw.url, _body(), COMPLETIONS)
    assert _texts(ans.events) == ["a"]
    assert json.loads(ans.events[-2][6:])["error"]["code"] == "deadline"
    assert ans.events[-1] == b"data: [DONE]"
    gw.wait_idle()


def test_an_http_1_0_client_gets_the_stream_without_chunks(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    texts = [chunk(text_event(t)) for t in ("a", "b")]
    gw = _gateway(make_gateway, scripted(lambda r: [SSE_HEAD, *texts, chunk(DONE), LAST]))
    port = int(gw.url.rsplit(":", 1)[1])
    body = json.dumps(_body()).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/completions HTTP/1.0\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        raw = b""
        while data := sock.recv(65536):  # the gateway closes the connection at the end
            raw += data
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert b"Transfer-Encoding" not in head
    assert payload == text_event("a") + text_event("b") + DONE


def test_a_client_that_does_not_read_holds_the_engine_back(
    make_gateway: MakeGateway, scripted: MakeScripted, loop: LoopThread
) -> None:
    """The gateway pauses reading from the engine instead of buffering the whole answer."""
    big = chunk(text_event("x" * 60_000))
    count = 400  # 24 MB: far more than the socket buffers on the way hold

    def script(request: dict[str, Any]) -> list[Piece]:
        return [SSE_HEAD, *[big] * count, chunk(DONE), LAST]

    engine = scripted(script)
    gw = _gateway(make_gateway, engine, request_timeout_s=60)
    port = int(gw.url.rsplit(":", 1)[1])
    body = json.dumps(_body()).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(
            b"POST /v1/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )

        def engine_blocked() -> bool:
            buffered = loop.run(_buffered(engine))
            assert buffered > 4_000_000, buffered
            return True

        eventually(engine_blocked, timeout=10, what="the engine's writes backing up")
        received = 0
        raw = b""
        while not raw.endswith(b"0\r\n\r\n"):
            data = sock.recv(1 << 20)
            assert data, "connection closed early"
            received += len(data)
            raw = raw[-16:] + data
    assert received > count * 60_000
    gw.wait_idle()


async def _buffered(engine: ScriptedEngine) -> int:
    return sum(t.get_write_buffer_size() for t in engine.transports if not t.is_closing())


@pytest.mark.parametrize("race", [False, True])
def test_a_kept_alive_connection_the_engine_closed_is_replaced(
    make_gateway: MakeGateway, scripted: MakeScripted, race: bool
) -> None:
    """The engine closes a connection after its answer while still saying keep-alive: at once
    (the pool sees it go), or only when the next request arrives on it (the race with a
    keep-alive timeout: the request is sent again on a fresh connection)."""
    texts = [chunk(text_event("a"))]
    engine = scripted(
        lambda r: [SSE_HEAD, *texts, chunk(DONE), LAST], close=not race, drop_reused=race
    )
    gw = _gateway(make_gateway, engine)
    for _ in range(3):
        ans = run_post(gw.url, _body(), COMPLETIONS)
        assert ans.status == 200, ans.body
        time.sleep(0.1)
    assert engine.connections == 3
    assert len(engine.bodies) == 3
    assert gw.metric("llmctl_gateway_upstream_errors_total") == 0


def test_an_empty_event_stream_is_a_stream_that_ended_at_once(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n"
    gw = _gateway(make_gateway, scripted(lambda r: [head]))
    ans = run_post(gw.url, _body(), COMPLETIONS)
    assert ans.status == 200
    assert json.loads(ans.events[0][6:])["error"]["code"] == "upstream_error"
    assert ans.events[-1] == b"data: [DONE]"
    assert gw.metric("llmctl_gateway_requests_total", reason="upstream_error") == 1


def test_every_engine_of_the_router_is_relayed_and_counted_on_its_own(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    def pieces(request: dict[str, Any], usage: bool) -> list[Piece]:
        out: list[Piece] = [SSE_HEAD]
        for t in "abcde":  # one read per token: the relay's fast path once the first text is out
            out += [chunk(text_event(t)), 0.005]
        tail = _usage_tail(request, 5) if usage else b""
        return [*out, tail + chunk(DONE), LAST]

    counts = scripted(lambda r: pieces(r, usage=True))
    ignores = scripted(lambda r: pieces(r, usage=False))  # an engine that ignores stream_options
    gw = _two_engines(make_gateway, counts, ignores)
    for _ in range(6):
        ans = run_post(gw.url, _body(), COMPLETIONS)
        assert ans.status == 200, ans.body
        assert _texts(ans.events) == list("abcde")
        assert ans.events[-1] == b"data: [DONE]"
        assert b'"usage"' not in ans.body
    by_url = {e.url: e for e in gw.gateway.pool.engines}
    assert by_url[counts.url].sends_usage
    assert not by_url[ignores.url].sends_usage
    assert len(counts.bodies) == len(ignores.bodies) == 3
    assert gw.metric("llmctl_gateway_completion_tokens_total") == 30
    assert gw.metric("llmctl_gateway_time_per_output_token_seconds_count") == 6


def test_a_stream_that_ends_before_its_first_chunk_is_retried_on_another_engine(
    make_gateway: MakeGateway, scripted: MakeScripted
) -> None:
    empty = scripted(lambda r: [SSE_HEAD, LAST])
    good = scripted(
        lambda r: [SSE_HEAD, chunk(text_event("x")), _usage_tail(r, 1), chunk(DONE), LAST]
    )
    gw = _two_engines(make_gateway, empty, good)
    for _ in range(4):
        ans = run_post(gw.url, _body(), COMPLETIONS)
        assert ans.status == 200, ans.body
        assert _texts(ans.events) == ["x"]
    assert len(empty.bodies) >= 1
    assert len(good.bodies) == 4
    assert gw.metric("llmctl_gateway_retries_total", kind="stream") == len(empty.bodies)
    assert gw.metric("llmctl_gateway_requests_total", reason="ok") == 4
