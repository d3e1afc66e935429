"""Reading a request body under the gateway's limits: size, deadline, and a client that leaves.

A body declared larger than `max_body_bytes` is refused from its Content-Length alone, before any
of it arrives; one that turns out larger (chunked) is refused when the limit is passed. The whole
body must arrive within `body_timeout_s` of its head (slow uploads hold a connection and a handler,
not an engine slot, but they must not hold them for ever). Both answers close the connection, so
the rest of such a body is not read.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from llmctl.gateway.errors import error_response


class BodyError(Exception):
    """The body cannot be taken: answered with `status` (413 too large, 408 too slow)."""

    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code

    def response(self, headers: dict[str, str] | None = None) -> web.Response:
        resp = error_response(self.status, str(self), self.code, headers)
        resp.force_close()
        return resp


class ClientGoneError(Exception):
    """The client closed its connection before its body was complete."""


async def read_body(request: web.Request, *, max_bytes: int, timeout_s: float) -> bytes:
    """The whole body of `request`, or BodyError / ClientGoneError (cancellation passes through:
    aiohttp cancels the handler of a client that left)."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    try:
        if request.content.is_eof():  # the whole body came with the head: nothing to wait for
            return await request.read()
        async with asyncio.timeout(timeout_s):
            return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(max_bytes) from None
    except TimeoutError:
        raise BodyError(
            408, f"the request body did not arrive within {timeout_s:g} s", "request_timeout"
        ) from None
    except ConnectionError as exc:  # aiohttp's "Connection lost", or a reset read
        raise ClientGoneError(str(exc)) from exc


def _too_large(limit: int) -> BodyError:
    return BodyError(413, f"request body is larger than {limit} bytes", "request_too_large")
