"""A client that goes away at any stage frees its slot and has its upstream request aborted within 1 s."""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from tests.gateway.client import chat
from tests.gateway.conftest import GatewayHandle, MakeGateway
from tests.gateway.upstream import FakeEngine, LoopThread
from tests.support import eventually


def _open(url: str, body: dict[str, Any]) -> socket.socket:
    """Send a request over a raw socket we can slam shut whenever we like."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    data = json.dumps(body).encode()
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    sock.sendall(head.encode() + data)
    return sock


def _read_until(sock: socket.socket, marker: bytes, count: int = 1) -> bytes:
    got = b""
    while got.count(marker) < count:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _assert_aborted_within_a_second(
    engine: FakeEngine, gw: GatewayHandle, closed_at: float
) -> None:
    eventually(lambda: engine.aborted == 1, timeout=1.0)
    assert engine.abort_times[0] - closed_at < 1.0
    eventually(lambda: gw.gateway.admission.active == 0, timeout=1.0)
    gw.wait_idle(1.0)


def test_disconnect_while_queued_frees_the_queue_entry(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_active=1, queue_max=5)
    holder = _open(gw.url, chat({"delay": 1.5}))
    eventually(lambda: engine.in_flight == 1, timeout=2.0)
    queued = _open(gw.url, chat())
    eventually(lambda: gw.gateway.admission.queued == 1, timeout=2.0)
    queued.close()
    eventually(lambda: gw.gateway.admission.queued == 0, timeout=1.0)
    assert gw.metric("llmctl_gateway_client_disconnects_total", stage="queued") == 1
    assert gw.metric("llmctl_gateway_requests_total", reason="client_disconnect") == 1
    # The holder still finishes normally, and the engine never saw the queued request.
    assert b"200 OK" in _read_until(holder, b"\r\n\r\n")
    holder.close()
    assert engine.started == 1
    gw.wait_idle()


def test_disconnect_while_waiting_for_non_streamed_answer(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_active=1)
    sock = _open(gw.url, chat({"delay": 10}))
    eventually(lambda: engine.in_flight == 1, timeout=2.0)
    closed_at = time.monotonic()
    sock.close()
    _assert_aborted_within_a_second(engine, gw, closed_at)
    assert gw.metric("llmctl_gateway_client_disconnects_total", stage="waiting") == 1


def test_disconnect_mid_stream(make_gateway: MakeGateway, engine: FakeEngine) -> None:
    gw = make_gateway(max_active=1)
    sock = _open(gw.url, chat({"tokens": 200, "interval": 0.05}, stream=True))
    _read_until(sock, b"data:", 2)
    closed_at = time.monotonic()
    sock.close()
    _assert_aborted_within_a_second(engine, gw, closed_at)
    assert gw.metric("llmctl_gateway_client_disconnects_total", stage="streaming") == 1


def test_disconnect_while_stream_is_stalled(make_gateway: MakeGateway, engine: FakeEngine) -> None:
    gw = make_gateway(max_active=1)
    sock = _open(gw.url, chat({"tokens": 5, "stall_after": 1}, stream=True))
    _read_until(sock, b"data:", 1)
    closed_at = time.monotonic()
    sock.close()
    _assert_aborted_within_a_second(engine, gw, closed_at)


def test_slot_freed_by_a_disconnect_goes_to_the_next_waiter(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_active=1, queue_max=5)
    first = _open(gw.url, chat({"delay": 10}))
    eventually(lambda: engine.in_flight == 1, timeout=2.0)
    second = _open(gw.url, chat({"tokens": 1}))
    eventually(lambda: gw.gateway.admission.queued == 1, timeout=2.0)
    first.close()
    answer = _read_until(second, b"\r\n\r\n")
    second.close()
    assert answer.startswith(b"HTTP/1.1 200")
    gw.wait_idle()


def test_shutdown_ends_in_flight_requests_and_releases_their_slots(
    make_gateway: MakeGateway, engine: FakeEngine, loop: LoopThread
) -> None:
    gw = make_gateway(max_active=2, queue_max=5)
    socks = [_open(gw.url, chat({"tokens": 500, "interval": 0.05}, stream=True)) for _ in range(2)]
    socks.append(_open(gw.url, chat()))  # queued behind them
    eventually(lambda: engine.in_flight == 2 and gw.gateway.admission.queued == 1, timeout=2.0)
    admission = gw.gateway.admission
    loop.run(gw.runner.cleanup(), timeout=30)
    assert admission.active == 0
    assert admission.queued == 0
    eventually(lambda: engine.in_flight == 0, timeout=1.0)
    for sock in socks:
        sock.close()
