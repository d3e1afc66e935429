"""HTTP/1.1 chunked framing: where the complete chunks of a buffer begin and end.

The streaming relay forwards the engine's chunks to the client as they are, so it must know chunk
boundaries (an error event may only ever be inserted between two chunks) and the last chunk (the
end of the answer); the engine connection uses the same split to read a whole chunked body. Pure
functions over bytes, no state: the caller keeps what was not consumed and prepends it next time.
"""

from __future__ import annotations

from typing import NamedTuple

# A chunk-size line longer than this (hex digits plus extensions) is not an engine speaking HTTP.
_MAX_SIZE_LINE = 1024
_MAX_TRAILERS = 8192
_HEX = frozenset(b"0123456789abcdefABCDEF")


class FramingError(ValueError):
    """The bytes are not valid chunked framing."""


class Chunk(NamedTuple):
    """One complete chunk: `buf[start:end]` is it framed, `buf[data:end - 2]` its data."""

    start: int
    data: int
    end: int


class Split(NamedTuple):
    """The complete chunks found, the offset just past what was consumed (the rest is an incomplete
    chunk to keep for later), and whether the last chunk and its trailers were consumed."""

    chunks: list[Chunk]
    consumed: int
    ended: bool


def chunk_size(line: bytes) -> int:
    """The size in a chunk-size line (without its CRLF); extensions after `;` are ignored."""
    digits = line.split(b";", 1)[0].strip(b" \t")
    if not digits or len(digits) > 16 or not _HEX.issuperset(digits):
        raise FramingError(f"bad chunk size line {line[:40]!r}")
    return int(digits, 16)


def split(buf: bytes, pos: int = 0) -> Split:
    """The complete chunks of `buf` from `pos` on; stops at the first incomplete one."""
    chunks: list[Chunk] = []
    n = len(buf)
    while pos < n:
        eol = buf.find(b"\r\n", pos, pos + _MAX_SIZE_LINE)
        if eol < 0:
            if n - pos >= _MAX_SIZE_LINE:
                raise FramingError("chunk size line too long")
            break
        size = chunk_size(buf[pos:eol])
        if size == 0:
            end = _trailers_end(buf, eol + 2)
            if end < 0:
                break
            return Split(chunks, end, True)
        data = eol + 2
        end = data + size + 2
        if end > n:
            break
        if buf[end - 2 : end] != b"\r\n":
            raise FramingError("chunk data not followed by CRLF")
        chunks.append(Chunk(pos, data, end))
        pos = end
    return Split(chunks, pos, False)


def _trailers_end(buf: bytes, pos: int) -> int:
    """The offset past the trailer section that starts at `pos` (an empty line ends it); -1 when
    it is not complete yet."""
    if buf.startswith(b"\r\n", pos):
        return pos + 2
    end = buf.find(b"\r\n\r\n", pos)
    if end < 0:
        if len(buf) - pos > _MAX_TRAILERS:
            raise FramingError("trailers too long")
        return -1
    return end + 4


def frame(data: bytes) -> bytes:
    """`data` as one chunk."""
    return b"%x\r\n%b\r\n" % (len(data), data)


LAST_CHUNK = b"0\r\n\r\n"
