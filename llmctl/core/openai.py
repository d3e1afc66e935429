"""OpenAI-style error bodies, shared by the gateway and the simulator."""

from __future__ import annotations

import json
from typing import Any


def error_body(
    message: str,
    *,
    type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """The `{"error": {...}}` object OpenAI-compatible clients parse."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def error_bytes(message: str, **kwargs: Any) -> bytes:
    return json.dumps(error_body(message, **kwargs)).encode()


def sse_error_event(message: str, *, type: str = "server_error", code: str | None = None) -> bytes:
    """An in-stream error (after the first byte) followed by the terminating `[DONE]`."""
    payload = json.dumps(error_body(message, type=type, code=code))
    return f"data: {payload}\n\ndata: [DONE]\n\n".encode()
