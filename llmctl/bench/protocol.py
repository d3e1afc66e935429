"""HTTP/1.1 + SSE parsing on a raw asyncio protocol, timing every token as it arrives.

Why not httpx or aiohttp: at 1,024 streams x 100 tokens/s the per-chunk cost of a general client
(stream readers, one coroutine step per line, JSON per chunk) makes the client the bottleneck. Here a
chunk costs one `data_received` call and a few `bytes.find`s; JSON is parsed only for the rare events
that carry `usage` or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any, cast

from llmctl.bench.record import RequestRecord, failure_class
from llmctl.core.openai import CHAT, DONE, ENGINE_HEADER, has_text

_ENGINE_HEADER = ENGINE_HEADER.lower()
_HEAD, _CHUNK_SIZE, _CHUNK_DATA, _LENGTH, _UNTIL_CLOSE, _DONE = range(6)


class Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.buf = b""
        self.state = _DONE
        self.remaining = 0
        self.record: RequestRecord | None = None
        self.future: asyncio.Future[bool] | None = None
        self.sse = False
        self.sse_buf = b""
        self.body = b""
        self.keep_alive = True
        self.token_key = CHAT.text_key
        self.got_head = False
        self.lost: asyncio.Future[None] | None = None  # done once the socket is gone

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.lost = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)
        if self.state == _UNTIL_CLOSE:
            self._finish_body()
        elif self.record is not None:
            self._fail("stream_error", f"connection closed by server: {exc or 'EOF'}")

    def data_received(self, data: bytes) -> None:
        if self.record is None:
            return
        now = time.perf_counter()
        if (
            self.state == _CHUNK_SIZE
            and not self.buf
            and not self.sse_buf
            and self._one_event(data, now)
        ):
            return
        buf = self.buf + data if self.buf else data
        self.buf = b""
        try:
            self._parse(buf, now)
        except Exception as exc:  # a malformed response must fail the request, not the loop
            self._fail("stream_error", f"malformed response: {exc}")

    # -- request lifecycle -----------------------------------------------------------------------
    def start(
        self, request: bytes, record: RequestRecord, token_key: bytes
    ) -> asyncio.Future[bool]:
        """Send `request`; the future resolves when the response ended (True: the conn is reusable)."""
        loop = asyncio.get_running_loop()
        self.future = loop.create_future()
        self.record = record
        self.state = _HEAD
        self.buf = self.sse_buf = self.body = b""
        self.got_head = False
        self.token_key = token_key
        record.sent = time.perf_counter()
        assert self.transport is not None
        self.transport.write(request)
        return self.future

    def abort(self, failure: str, message: str) -> None:
        self._fail(failure, message)

    def _resolve(self, reusable: bool) -> None:
        self.record = None
        self.state = _DONE
        if self.future is not None and not self.future.done():
            self.future.set_result(reusable)

    def _fail(self, failure: str, message: str) -> None:
        record = self.record
        if record is None:
            return
        record.end = time.perf_counter()
        record.failure = failure
        record.error = message[:300]
        if self.transport is not None:
            self.transport.close()
        self.closed = True
        self._resolve(False)

    # -- HTTP/1.1 parsing -------------------------------------------------------------------------
    def _parse(self, buf: bytes, now: float) -> None:
        pos = 0
        n = len(buf)
        while pos < n and self.record is not None:
            state = self.state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    self.buf = buf[pos:]
                    return
                self._head(buf[pos:end].decode("latin-1"))
                pos = end + 4
                if self.state == _DONE:  # a response without a body
                    self._finish_body()
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    self.buf = buf[pos:]
                    return
                size = int(buf[pos:end].split(b";", 1)[0], 16)
                pos = end + 2
                if size == 0:
                    # The last chunk; trailers are not used by OpenAI-style servers.
                    self._finish_body()
                    return
                if n - pos >= size + 2:  # the whole chunk is here (the usual case)
                    self._payload(buf[pos : pos + size], now)
                    pos += size + 2
                    continue
                self.remaining = size + 2  # the data and its CRLF
                self.state = _CHUNK_DATA
            elif state == _CHUNK_DATA:
                take = min(self.remaining, n - pos)
                self.remaining -= take
                # The chunk's trailing CRLF may be (partly) in this piece: keep only the data.
                crlf = min(take, max(0, 2 - self.remaining))
                piece = buf[pos : pos + take - crlf]
                pos += take
                if piece:
                    self._payload(piece, now)
                if self.remaining == 0:
                    self.state = _CHUNK_SIZE
            elif state == _LENGTH:
                take = min(self.remaining, n - pos)
                self._payload(buf[pos : pos + take], now)
                pos += take
                self.remaining -= take
                if self.remaining == 0:
                    self._finish_body()
            elif state == _UNTIL_CLOSE:
                self._payload(buf[pos:], now)
                return
            else:
                return

    def _head(self, head: str) -> None:
        record = self.record
        assert record is not None
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        record.status = status
        self.got_head = True
        chunked = False
        length: int | None = None
        content_type = ""
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip()
            if name == "transfer-encoding":
                chunked = "chunked" in value.lower()
            elif name == "content-length":
                length = int(value)
            elif name == "connection":
                self.keep_alive = value.lower() != "close"
            elif name == "content-type":
                content_type = value.lower()
            elif name == "x-queue-wait-ms":
                with contextlib.suppress(ValueError):
                    record.queue_wait_ms = float(value)
            elif name == _ENGINE_HEADER:
                record.engine = value
        self.sse = status == 200 and "event-stream" in content_type
        if chunked:
            self.state = _CHUNK_SIZE
        elif length is not None:
            self.remaining = length
            self.state = _LENGTH if length > 0 else _DONE
        else:
            self.keep_alive = False
            self.state = _UNTIL_CLOSE

    def _payload(self, data: bytes, now: float) -> None:
        if not self.sse:
            if len(self.body) < 65536:
                self.body += data
            return
        if not self.sse_buf and data.endswith(b"\n\n") and data.find(b"\n\n") == len(data) - 2:
            # Exactly one whole event (the usual case).
            self._event(data[:-2], now)
            return
        buf = self.sse_buf + data if self.sse_buf else data
        if b"\r" in buf:  # after joining: a CRLF may straddle two reads
            buf = buf.replace(b"\r\n", b"\n")
        start = 0
        while True:
            end = buf.find(b"\n\n", start)
            if end < 0:
                break
            self._event(buf[start:end], now)
            start = end + 2
            if self.record is None:
                return
        self.sse_buf = buf[start:]

    def _one_event(self, data: bytes, now: float) -> bool:
        """The common case in one step: exactly one chunk holding one `data:` event.

        False (nothing consumed) for anything else; the general parser then takes the bytes.
        """
        end = data.find(b"\r\n")
        if end < 0 or not data.endswith(b"\n\n\r\n") or not data.startswith(b"data:", end + 2):
            return False
        try:
            size = int(data[:end], 16)
        except ValueError:
            return False
        if len(data) != end + size + 4 or data.find(b"\n\n", end + 2) != len(data) - 4:
            return False
        self._event(data[end + 2 : len(data) - 4], now)
        return True

    def _event(self, event: bytes, now: float) -> None:
        record = self.record
        assert record is not None
        for line in event.split(b"\n") if b"\n" in event else (event,):
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == DONE:
                continue
            if has_text(payload, self.token_key):
                record.token_times.append(now)
                if record.first_token is None:
                    record.first_token = now
            if b'"usage"' in payload or b'"error"' in payload:
                self._rare(payload)

    def _rare(self, payload: bytes) -> None:
        record = self.record
        assert record is not None
        obj = json.loads(payload)
        if not isinstance(obj, dict):
            return
        if obj.get("error"):
            error = obj["error"]
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            self._fail("stream_error", f"error event: {message}")
            return
        _take_usage(record, obj.get("usage"))

    def _finish_body(self) -> None:
        record = self.record
        if record is None:
            return
        record.end = time.perf_counter()
        if record.status != 200:
            record.failure = failure_class(record.status)
            record.error = _error_message(self.body) or f"HTTP {record.status}"
        elif not self.sse:
            _take_json_answer(record, self.body, self.token_key)
        reusable = self.keep_alive and not self.closed and self.state != _UNTIL_CLOSE
        self._resolve(reusable)


def _take_usage(record: RequestRecord, usage: Any) -> None:
    if isinstance(usage, dict):
        if isinstance(usage.get("completion_tokens"), int):
            record.completion_tokens = usage["completion_tokens"]
        if isinstance(usage.get("prompt_tokens"), int):
            record.prompt_tokens = usage["prompt_tokens"]


def _take_json_answer(record: RequestRecord, body: bytes, key: bytes) -> None:
    """A 200 that is not an event stream: one answer, its first token is its end."""
    try:
        obj = json.loads(body)
    except ValueError:
        record.failure, record.error = (
            "stream_error",
            "200 with a body that is neither SSE nor JSON",
        )
        return
    if isinstance(obj, dict):
        _take_usage(record, obj.get("usage"))
    if has_text(body, key):
        record.first_token = record.end
        record.token_times.append(record.end)


def _error_message(body: bytes) -> str:
    try:
        obj = json.loads(body)
        error = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(error, dict):
            code = error.get("code")
            message = str(error.get("message", ""))
            return f"{code}: {message}" if code else message
    except ValueError:
        pass
    return body[:200].decode("utf-8", "replace")
