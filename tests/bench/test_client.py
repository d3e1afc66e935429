"""The HTTP/1.1 + SSE parser, fed the same response in every split the network could produce."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmctl.bench.client import Target
from llmctl.bench.protocol import Connection
from llmctl.bench.record import RequestRecord
from llmctl.core.errors import UsageError

KEY = b'"content":'


def _event(obj: object, crlf: bool = False) -> bytes:
    sep = b"\r\n\r\n" if crlf else b"\n\n"
    return b"data: " + json.dumps(obj).encode() + sep


def _chunked(*events: bytes) -> bytes:
    body = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    return head + b"X-Queue-Wait-Ms: 12.5\r\n\r\n" + body + b"0\r\n\r\n"


def _stream(crlf: bool = False) -> bytes:
    role = _event({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, crlf)
    tokens = [_event({"choices": [{"delta": {"content": f" t{i}"}}]}, crlf) for i in range(5)]
    usage = _event({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 6}}, crlf)
    done = b"data: [DONE]" + (b"\r\n\r\n" if crlf else b"\n\n")
    # Two events in one chunk, as servers that buffer do.
    return _chunked(role, tokens[0] + tokens[1], *tokens[2:], usage, done)


class _Transport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _feed(response: bytes, step: int) -> tuple[RequestRecord, bool]:
    async def go() -> tuple[RequestRecord, bool]:
        conn = Connection()
        conn.transport = _Transport()  # type: ignore[assignment]
        record = RequestRecord(planned=0.0)
        future = conn.start(b"POST / HTTP/1.1\r\n\r\n", record, KEY)
        for i in range(0, len(response), step):
            conn.data_received(response[i : i + step])
        if not future.done():
            conn.connection_lost(None)
        return record, await future

    return asyncio.run(go())


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
@pytest.mark.parametrize("crlf", [False, True])
def test_stream_parses_in_any_split(step: int, crlf: bool) -> None:
    record, reusable = _feed(_stream(crlf), step)
    assert record.failure is None, record.error
    assert len(record.token_times) == 5  # the role chunk with empty content is no token
    assert record.completion_tokens == 6  # usage wins over counted chunks
    assert record.output_tokens == 6
    assert record.prompt_tokens == 7
    assert record.queue_wait_ms == 12.5
    assert reusable


def test_error_status_with_json_body() -> None:
    body = json.dumps({"error": {"message": "queue is full", "code": "queue_full"}}).encode()
    response = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    record, reusable = _feed(response, 5)
    assert record.failure == "http_429"
    assert record.error == "queue_full: queue is full"
    assert record.token_times == []
    assert reusable


def test_error_event_and_cut_stream_are_stream_errors() -> None:
    token = _event({"choices": [{"delta": {"content": "x"}}]})
    error = _event({"error": {"message": "engine died", "type": "server_error"}})
    record, _ = _feed(_chunked(token, error), 10_000)
    assert record.failure == "stream_error"
    assert record.error is not None
    assert "engine died" in record.error
    cut = _stream()[:-40]
    record, reusable = _feed(cut, 10_000)
    assert record.failure == "stream_error"
    assert not reusable


def test_target_urls() -> None:
    target = Target("http://127.0.0.1:8080/v1/")
    assert target.prefix == ""
    assert target.api_url("/v1/models") == "http://127.0.0.1:8080/v1/models"
    assert (
        Target("https://example.test/api").api_url("/metrics") == "https://example.test/api/metrics"
    )
    with pytest.raises(UsageError):
        Target("ftp://x")
