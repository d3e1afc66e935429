"""The streaming relay: an engine's streamed answer forwarded to the client as the engine framed it.

Once the client's headers are out, the relay is the protocol of the engine's socket, so every read
arrives in `data_received` and no coroutine is woken per chunk. The common read, whole chunks of
token events, is written to the client's socket as it came (the engine's chunked framing is the
client's), after two byte searches and a walk over the chunk-size lines. Everything else (an
incomplete chunk, the usage frame, `[DONE]`, the end of the answer, a client on HTTP/1.0, an engine
that does not frame in chunks) goes through `_general`, which splits the read into chunk payloads.

Invariants:
- the client only ever gets whole chunks, so an error event can be appended at any moment;
- `[DONE]`'s chunk is held back: the proxy sends it with the end of the client's response (one
  write), or an error event instead when the stream ends without it;
- tokens come from the engine's usage frame (the gateway always asks for it and strips it when the
  client did not), so the text scan runs only until the first text (time to first token), unless
  `scan` (an engine not yet seen to send usage): then every read is scanned and counted;
- a stream the cache keeps (`collect`) takes the general path throughout: its payloads, usage
  included, are appended to `collect` before anything is stripped;
- a client whose socket buffer passes its transport's high-water mark (64 KiB) pauses reading from
  the engine until it drains.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from llmctl.core.openai import DONE_EVENT, drop_usage_events, text_frames, usage_tokens
from llmctl.gateway import framing

# The relay's states; every one but OPEN ends the stream for the client.
OPEN = "open"
DONE = "done"  # [DONE] arrived: the client's response can be ended
NO_DONE = "no_done"  # the engine ended its answer without [DONE]
BROKEN = "broken"  # the engine's connection broke or its framing was wrong
CLIENT_GONE = "client_gone"  # the client's socket closed
STOPPED = "stopped"  # the proxy stopped it (deadline, cancellation)
CONGESTED = "congested"  # not a state: what `wait` returns when the client must drain first

_MAX_SIZE_DIGITS = 18
_monotonic = time.monotonic


class StreamRelay(asyncio.Protocol):
    """Relays one streamed answer; `wait` tells the proxy when the stream ended for the client."""

    def __init__(
        self,
        key: bytes,
        *,
        chunked: bool,
        length: int | None,
        strip_usage: bool,
        scan: bool,
        collect: bytearray | None = None,
        on_first_text: Callable[[float], None],
        on_end: Callable[[StreamRelay], None],
    ) -> None:
        self.key = key
        self.chunked = chunked  # the engine frames its body in chunks
        self.remaining = length  # Content-Length still to come (None: chunked or until close)
        self.strip = strip_usage
        self.scan = scan
        self.collect = collect  # the cache keeps the engine's payloads (usage included)
        self.state = OPEN
        self.usage: tuple[int, int] | None = None
        self.tokens = 0  # text frames counted (every read when scanning, else the general path's)
        self.chunks = 0  # chunks forwarded by the fast path without a look (usage mode)
        self.first_text = 0.0  # when the first text was handed to the client's socket
        self.last_text = 0.0
        self.tail = b""  # [DONE]'s chunk (usage events stripped): sent with the end of the response
        self.complete = False  # the engine's answer was read to its end
        self.reusable = False  # ...and its connection may carry another request
        self.engine: asyncio.Transport | None = None
        self.client: asyncio.Transport | None = None
        self.client_chunked = True
        self.congested = False
        self._high_water = 65536  # the client transport's own mark, once known
        self._plain = False  # the fast path may take the next read
        self._pending = b""  # an incomplete chunk (or event, without chunks)
        self._held: list[bytes] = []  # payloads read before the client's headers went out
        self._text_held = False
        self._waiter: asyncio.Future[None] | None = None
        self._on_first_text = on_first_text
        self._on_end = on_end

    # -- the proxy's side ------------------------------------------------------------------------
    def attach(self, engine: asyncio.Transport | None, leftover: bytes, eof: bool) -> None:
        """Take over the engine's socket (already handed over) and what was read after the head."""
        self.engine = engine
        if leftover:
            self._general(leftover)
        if eof:
            self.connection_lost(None)

    async def ready(self) -> bool:
        """Wait for the first whole chunk; False when the answer ended or broke before any."""
        while not self._held and not self.tail and self.state == OPEN:
            await self._wait()
        return bool(self._held or self.tail or self.state == DONE)

    def take_held(self) -> bytes:
        """The payloads read before the client's headers went out, joined (the caller sends them
        with the headers, in one write); the relay forgets them."""
        held, self._held = self._held, []
        return b"".join(held)

    def start(self, client: asyncio.Transport, chunked: bool) -> None:
        """The client's headers are out: forward what was read, and from now on every read."""
        self.client = client
        self.client_chunked = chunked
        self._high_water = client.get_write_buffer_limits()[1]
        held, self._held = self._held, []
        if held:
            self._write(held)
        if self._text_held and self.client is not None:
            self._first_text(_monotonic())
        self._update_plain()

    async def wait(self) -> str:
        """The state once the stream ended for the client, or CONGESTED when the client's socket
        must drain first (then `resume`)."""
        while self.state == OPEN and not self.congested:
            await self._wait()
        return self.state if self.state != OPEN else CONGESTED

    def resume(self) -> None:
        if self.congested:
            self.congested = False
            if self.engine is not None:
                self.engine.resume_reading()

    def stop(self) -> None:
        """Forward nothing more; drop the engine's connection unless its answer was complete."""
        if self.state == OPEN:
            self.state = STOPPED
        self.client = None
        self._plain = False
        if not self.complete:
            self._close_engine()

    def expect_end(self, within_s: float) -> None:
        """The client has everything: give the engine `within_s` to end its answer (so the
        connection can be reused), then drop it."""
        if not self.complete:
            asyncio.get_running_loop().call_later(within_s, self._give_up)

    # -- asyncio.Protocol (the engine's socket) --------------------------------------------------
    def data_received(self, data: bytes) -> None:
        client = self.client
        if self._plain and client is not None and b'"usage"' not in data and b"[DONE]" not in data:
            # The common read: whole chunks of token events, forwarded as they are.
            pos = 0
            n = len(data)
            count = 0
            try:
                while pos < n:
                    eol = data.find(b"\r\n", pos, pos + _MAX_SIZE_DIGITS)
                    if eol < 0:
                        break
                    size = int(data[pos:eol], 16)
                    if size <= 0:
                        break
                    pos = eol + size + 4
                    count += 1
            except ValueError:
                pos = -1
            if pos == n and data.endswith(b"\r\n") and not client.is_closing():
                now = _monotonic()
                if self.scan:
                    found = text_frames(data, self.key)
                    if found:
                        self.tokens += found
                        self.last_text = now
                else:
                    self.chunks += count
                    self.last_text = now
                client.write(data)
                if client.get_write_buffer_size() > self._high_water:
                    self._congest()
                return
        self._general(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.engine = None
        if not self.complete and not self.chunked and self.remaining is None:
            self._general(b"", until_close=True)  # a body delimited by the connection's end
        if not self.complete:
            if self.state == OPEN:
                self.state = BROKEN
            self._end(reusable=False)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    # -- the general path ------------------------------------------------------------------------
    def _general(self, data: bytes, *, until_close: bool = False) -> None:
        if self.state not in (OPEN, DONE) or self.complete:
            return
        buf = self._pending + data if self._pending else data
        self._pending = b""
        extra = False
        if self.chunked:
            try:
                found = framing.split(buf)
            except framing.FramingError:
                self.state = BROKEN
                self._close_engine()
                return
            payloads = [buf[c.data : c.end - 2] for c in found.chunks]
            ended = found.ended
            extra = ended and found.consumed < len(buf)
            if not ended:
                self._pending = buf[found.consumed :]
        else:
            ended = until_close
            if self.remaining is not None:
                self.remaining -= len(data)
                ended = self.remaining <= 0
                extra = self.remaining < 0
            # Whole events only, so that an error event never lands inside one.
            cut = len(buf) if ended else buf.rfind(b"\n\n") + 2
            if cut < 2:  # no event ends in it yet
                cut = len(buf) if ended else 0
            payloads = [buf[:cut]] if cut else []
            self._pending = buf[cut:]
        if self.state == OPEN:
            self._payloads(payloads)
        if ended:
            if self.state == OPEN:
                self.state = NO_DONE
            self._end(reusable=not extra and not until_close)
        else:
            self._update_plain()
            self._wake()

    def _payloads(self, payloads: list[bytes]) -> None:
        now = _monotonic()
        out: list[bytes] = []
        text = False
        for payload in payloads:
            if self.collect is not None:
                self.collect += payload
            if b'"usage"' in payload:
                found = usage_tokens(payload)
                if found is not None:
                    self.usage = found
                if self.strip:
                    payload = drop_usage_events(payload)
            texts = text_frames(payload, self.key)
            if texts:
                self.tokens += texts
                self.last_text = now
                text = True
            if payload.endswith(DONE_EVENT):
                self.tail = payload
                self.state = DONE
                break  # nothing after [DONE] is forwarded
            if payload:
                out.append(payload)
        if out:
            if self.client is None:
                self._held.extend(out)
            else:
                self._write(out)
        if text and not self.first_text:
            if self.client is None:
                self._text_held = True
            else:  # (text that came with [DONE] reaches the client with the response's end)
                self._first_text(now)

    def _write(self, payloads: list[bytes]) -> None:
        client = self.client
        if client is None:
            return
        if client.is_closing():
            self.state = CLIENT_GONE
            self.client = None
            self._close_engine()
            return
        if self.client_chunked:
            client.write(b"".join([framing.frame(p) for p in payloads]))
        else:
            client.write(b"".join(payloads))
        if client.get_write_buffer_size() > self._high_water:
            self._congest()

    def _first_text(self, now: float) -> None:
        self.first_text = now
        self._text_held = False
        self._on_first_text(now)

    def _update_plain(self) -> None:
        self._plain = (
            self.state == OPEN
            and self.client is not None
            and self.client_chunked
            and self.chunked
            and bool(self.first_text)
            and not self._pending
            and self.collect is None
        )

    # -- ends ------------------------------------------------------------------------------------
    def _end(self, *, reusable: bool) -> None:
        if self.complete:
            return
        self.complete = True
        self.reusable = reusable and self.engine is not None
        self._plain = False
        self._on_end(self)
        self.engine = None  # the connection went back to the pool, or was dropped
        self._wake()

    def _give_up(self) -> None:
        if not self.complete:
            self._close_engine()

    def _close_engine(self) -> None:
        engine = self.engine
        if engine is not None:
            self.engine = None
            engine.close()
        if not self.complete:
            self._end(reusable=False)

    def _congest(self) -> None:
        if self.engine is not None and not self.congested:
            self.congested = True
            self.engine.pause_reading()
            self._wake()

    async def _wait(self) -> None:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
