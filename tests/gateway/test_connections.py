"""Connection hygiene over raw sockets: idle and slow clients, oversize and abandoned uploads,
half-closed clients, the connection cap (also under a low file-descriptor limit), and one short log
line per malformed request."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from llmctl.gateway.connections import connection_cap
from tests.gateway.client import chat
from tests.gateway.conftest import MakeGateway
from tests.gateway.upstream import FakeEngine
from tests.support import ServerProcess, free_port, wait_http

CHAT = "/v1/chat/completions"


def _connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=5)
    return sock


def _head(url: str, length: int, path: str = CHAT) -> bytes:
    host = urlsplit(url).netloc
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _request(url: str, body: bytes) -> bytes:
    return _head(url, len(body)) + body


def _read_all(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """Everything until the server closes (or `timeout`)."""
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return got


def _read_response(sock: socket.socket, timeout: float = 5.0) -> bytes:
    """One response with a Content-Length (the server may keep the socket open after it)."""
    sock.settimeout(timeout)
    got = b""
    while b"\r\n\r\n" not in got or len(got.split(b"\r\n\r\n", 1)[1]) < _length(got):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _length(response: bytes) -> int:
    for line in response.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (reading and dropping what it sends), or None."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - start


def _json_body(answer: bytes) -> dict[str, object]:
    body: dict[str, object] = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    return body


def test_idle_keep_alive_connections_close_after_the_idle_timeout(
    make_gateway: MakeGateway,
) -> None:
    gw = make_gateway(idle_timeout_s=0.5)
    used = _connect(gw.url)
    used.sendall(_request(gw.url, json.dumps(chat()).encode()))
    used.settimeout(5)
    assert used.recv(65536).startswith(b"HTTP/1.1 200")
    never_used = _connect(gw.url)
    for sock in (used, never_used):
        took = _closed_within(sock, 5.0)
        assert took is not None, "still open"
        assert took < 3.0
        sock.close()


def test_a_request_head_that_trickles_in_is_cut_at_the_header_deadline(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(header_timeout_s=0.5, idle_timeout_s=30)
    sock = _connect(gw.url)
    start = time.monotonic()
    answer = b""
    sock.settimeout(0.1)
    for byte in _head(gw.url, 10):  # one byte every 0.1 s: 10 s for the whole head
        try:
            sock.sendall(bytes([byte]))
            answer += sock.recv(65536)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if answer:
            break
    answer += _read_all(sock, 2.0)
    sock.close()
    assert time.monotonic() - start < 3.0
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert _json_body(answer)["error"]["code"] == "request_timeout"  # type: ignore[index]
    assert engine.started == 0


def test_a_slow_body_gets_408_at_the_body_deadline(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(body_timeout_s=0.5)
    sock = _connect(gw.url)
    sock.sendall(_head(gw.url, 100) + b'{"messages": ')
    start = time.monotonic()
    answer = _read_response(sock)
    sock.close()
    assert time.monotonic() - start < 3.0
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"Connection: close" in answer
    assert engine.started == 0
    assert gw.metric("llmctl_gateway_requests_total", reason="bad_request", status="408") == 1


def test_a_declared_oversize_body_is_refused_before_it_arrives(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_body_bytes=4096)
    sock = _connect(gw.url)
    sock.sendall(_head(gw.url, 10_000_000_000))
    sock.settimeout(2.0)
    answer = sock.recv(65536)  # nothing of the body was sent: the answer cannot wait for it
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer
    assert _json_body(answer)["error"]["code"] == "request_too_large"  # type: ignore[index]
    assert engine.started == 0


def test_a_client_that_leaves_mid_upload_is_a_client_disconnect(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway()
    sock = _connect(gw.url)
    sock.sendall(_head(gw.url, 1000) + b'{"messages": [')
    time.sleep(0.2)
    sock.close()
    deadline = time.monotonic() + 3
    while gw.metric("llmctl_gateway_requests_total", reason="client_disconnect") < 1:
        assert time.monotonic() < deadline, "the abandoned upload was not counted"
        time.sleep(0.05)
    assert gw.metric("llmctl_gateway_requests_total", status="499") == 1
    assert gw.metric("llmctl_gateway_requests_total", reason="internal_error") == 0
    assert gw.metric("llmctl_gateway_client_disconnects_total", stage="upload") == 1
    assert engine.started == 0


@pytest.mark.parametrize("stream", [False, True])
def test_a_half_closed_client_gets_its_answer(make_gateway: MakeGateway, stream: bool) -> None:
    gw = make_gateway()
    sock = _connect(gw.url)
    body = json.dumps(chat({"tokens": 3, "delay": 0.2}, stream=stream)).encode()
    sock.sendall(_request(gw.url, body))
    sock.shutdown(socket.SHUT_WR)  # "that is all I send", as `nc -N` or a proxy would say
    answer = _read_all(sock, 5.0)
    sock.close()
    # An interim 100 (the gateway's check that the client still listens) may come first.
    final = answer.removeprefix(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert final.startswith(b"HTTP/1.1 200"), answer
    assert (b"[DONE]" in final) if stream else (b'"choices"' in final)
    assert gw.metric("llmctl_gateway_requests_total", reason="ok") == 1


def test_the_connection_cap_answers_503_and_frees_up(
    make_gateway: MakeGateway, engine: FakeEngine
) -> None:
    gw = make_gateway(max_connections=3, idle_timeout_s=30)
    held = [_connect(gw.url) for _ in range(3)]
    time.sleep(0.1)
    extra = _connect(gw.url)
    extra.sendall(_request(gw.url, json.dumps(chat()).encode()))
    answer = _read_all(extra, 5.0)
    extra.close()
    assert answer.startswith(b"HTTP/1.1 503"), answer
    assert b"Retry-After: 1" in answer
    assert _json_body(answer)["error"]["code"] == "too_many_connections"  # type: ignore[index]
    held.pop().close()
    time.sleep(0.1)
    resp = httpx.post(gw.url + CHAT, json=chat(), timeout=5)
    assert resp.status_code == 200
    for sock in held:
        sock.close()


@pytest.mark.parametrize(
    ("max_connections", "reserve", "limit", "in_use", "cap"),
    [
        (1024, 128, None, 20, 1024),  # no descriptor limit: the setting alone
        (1024, 128, 65536, 20, 1024),
        (1024, 128, 1024, 20, 876),  # the limit leaves the reserve and what is in use
        (1024, 32, 64, 20, 12),
        (1024, 64, 64, 20, -20),  # nothing fits: the server refuses to start
    ],
)
def test_connection_cap(
    max_connections: int, reserve: int, limit: int | None, in_use: int, cap: int
) -> None:
    assert connection_cap(max_connections, reserve, limit, in_use) == cap


def _gateway_process(
    engine: FakeEngine, tmp_path: Path, nofile: int | None
) -> tuple[ServerProcess, str]:
    """`llmctl gateway serve` in a child, under an open-file limit of `nofile` when given."""
    port = free_port()
    args = ["gateway", "serve", "--port", str(port), "--upstream", engine.url]
    args += ["--model", "fake-model", "--fd-reserve", "16", "--header-timeout", "30"]
    limit = f"resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}));" if nofile else ""
    launcher = (
        f"import os, resource, sys; {limit}"
        "os.execv(sys.executable, [sys.executable, '-m', 'llmctl', *sys.argv[1:]])"
    )
    server = ServerProcess([sys.executable, "-c", launcher, *args], tmp_path / "gateway.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/livez", timeout=20)
    except TimeoutError:
        server.stop()
        raise AssertionError(server.output()) from None
    return server, f"http://127.0.0.1:{port}"


@pytest.mark.slow
def test_with_a_low_descriptor_limit_idle_connections_do_not_lock_clients_out(
    engine: FakeEngine, tmp_path: Path
) -> None:
    server, url = _gateway_process(engine, tmp_path, nofile=64)
    idle: list[socket.socket] = []
    try:
        for _ in range(150):  # far more than 64 descriptors' worth
            idle.append(_connect(url))
        time.sleep(0.3)
        answers = []
        for _ in range(5):
            sock = _connect(url)
            sock.sendall(_request(url, json.dumps(chat()).encode()))
            answers.append(_read_all(sock, 5.0))
            sock.close()
        for answer in answers:
            assert answer.startswith((b"HTTP/1.1 200", b"HTTP/1.1 503")), answer
            if answer.startswith(b"HTTP/1.1 503"):
                assert b"Retry-After" in answer
                assert _json_body(answer)["error"]["code"] == "too_many_connections"  # type: ignore[index]
        for sock in idle:
            sock.close()
        idle.clear()
        time.sleep(0.3)
        resp = httpx.post(url + CHAT, json=chat(), timeout=5)
        assert resp.status_code == 200
    finally:
        for sock in idle:
            sock.close()
        server.stop()
    assert "Traceback" not in server.output()


MALFORMED = [
    b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nX: \x1b[31m\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\n\r\n",
]


def test_each_malformed_request_logs_one_short_line(engine: FakeEngine, tmp_path: Path) -> None:
    server, url = _gateway_process(engine, tmp_path, nofile=None)
    try:
        before = server.output().count("\n")
        for payload in MALFORMED:
            sock = _connect(url)
            sock.sendall(payload)
            assert _read_all(sock, 5.0).startswith(b"HTTP/1.")
            sock.close()
        time.sleep(0.3)
    finally:
        server.stop()
    lines = server.output().splitlines()[before:]
    assert "Traceback" not in server.output()
    assert len(lines) <= len(MALFORMED), lines
    for line in lines:
        assert len(line) < 300, line
        assert "\x1b" not in line
