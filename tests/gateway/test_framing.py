"""Chunked framing and response heads, as pure functions: tables of cases."""

from __future__ import annotations

import pytest

from llmctl.gateway.framing import Chunk, FramingError, chunk_size, frame, split
from llmctl.gateway.wire import parse_head


@pytest.mark.parametrize(
    ("buf", "chunks", "consumed", "ended"),
    [
        (b"", [], 0, False),
        (b"3\r\nabc\r\n", [Chunk(0, 3, 8)], 8, False),
        (b"3\r\nabc\r\n2\r\nxy\r\n", [Chunk(0, 3, 8), Chunk(8, 11, 15)], 15, False),
        (b"3\r\nab", [], 0, False),  # data cut short
        (b"3\r\nabc\r", [], 0, False),  # its CRLF cut short
        (b"3", [], 0, False),  # the size line cut short
        (b"3\r\nabc\r\n0\r\n\r\n", [Chunk(0, 3, 8)], 13, True),
        (b"3\r\nabc\r\n0\r\n", [Chunk(0, 3, 8)], 8, False),  # the end, without its empty line
        (b"0\r\nX-T: 1\r\n\r\n", [], 13, True),  # trailers
        (b"0\r\n\r\nnext", [], 5, True),  # what follows the end is the caller's business
        (b"A;ext=1\r\n0123456789\r\n", [Chunk(0, 9, 21)], 21, False),
    ],
)
def test_split_finds_whole_chunks_and_the_end(
    buf: bytes, chunks: list[Chunk], consumed: int, ended: bool
) -> None:
    assert split(buf) == (chunks, consumed, ended)


@pytest.mark.parametrize("bad", [b"zz\r\n", b"-1\r\nx\r\n", b"3\r\nabcXY", b"\r\n", b"1" * 2000])
def test_split_refuses_what_is_not_chunked_framing(bad: bytes) -> None:
    with pytest.raises(FramingError):
        split(bad)


def test_chunk_size_reads_hex_and_ignores_extensions() -> None:
    assert chunk_size(b"1f") == 31
    assert chunk_size(b"1F ; name=value") == 31
    with pytest.raises(FramingError):
        chunk_size(b"0x1f")


def test_frame_is_what_split_reads_back() -> None:
    data = b"data: x\n\n"
    framed = frame(data)
    (found,), consumed, ended = split(framed)
    assert framed[found.data : found.end - 2] == data
    assert (consumed, ended) == (len(framed), False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Transfer-Encoding: chunked",
            (200, "text/event-stream; charset=utf-8", "text/event-stream", None, True, None, True),
        ),
        (
            b"HTTP/1.1 429 Too Many\r\ncontent-length: 12\r\nRetry-After: 7\r\nConnection: close",
            (429, "", "", "7", False, 12, False),
        ),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 3", (200, "", "", None, False, 3, False)),
        (
            b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3",
            (200, "", "", None, False, 3, True),
        ),
        (b"HTTP/1.1 204 No Content", (204, "", "", None, False, None, True)),
    ],
)
def test_parse_head_reads_what_the_gateway_uses(raw: bytes, expected: tuple[object, ...]) -> None:
    assert tuple(parse_head(raw)) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"SSH-2.0-OpenSSH",
        b"HTTP/1.1 OK",
        b"HTTP/1.1 200 OK\r\nno colon",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1",
    ],
)
def test_parse_head_refuses_what_is_not_http(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"status line|header line|Content-Length"):
        parse_head(raw)
