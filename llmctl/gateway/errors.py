"""OpenAI-style JSON error responses with the gateway's headers."""

from __future__ import annotations

from aiohttp import web

from llmctl.core.openai import error_bytes

# The OpenAI error `type` for each status class the gateway answers with itself.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def error_response(
    status: int,
    message: str,
    code: str,
    headers: dict[str, str] | None = None,
    *,
    retry_after: int | None = None,
    param: str | None = None,
) -> web.Response:
    """A JSON `{"error": {...}}` answer; `code` is the reason a client can act on."""
    out = dict(headers or {})
    if retry_after is not None:
        out["Retry-After"] = str(retry_after)
    kind = _TYPES.get(status, "server_error")
    return web.Response(
        body=error_bytes(message, type=kind, code=code, param=param),
        status=status,
        content_type="application/json",
        headers=out,
    )
