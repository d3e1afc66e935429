"""Request-body checks: a client's body made into what the engine is sent."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any

from llmctl.core.openai import NonStandardNumberError, Route, parse_json

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class BadRequestError(Exception):
    """The body is not a request the engine can take (answered with 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A validated body: the bytes to send upstream, whether the client asked for a stream, and
    the parsed object (for routing by prompt)."""

    body: bytes
    stream: bool
    data: dict[str, Any]


def parse_completion(raw: bytes, route: Route, default_model: str | None) -> CompletionRequest:
    """Check that `raw` is a JSON object with the route's key; fill in the model if it has none.

    The original bytes are forwarded untouched unless the model had to be filled in."""
    try:
        data = parse_json(raw)
    except NonStandardNumberError as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}", exc.path or None) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequestError("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequestError("request body must be a JSON object")
    key = route.body_key
    if key not in data:
        raise BadRequestError(f"'{key}' is a required property", param=key)
    value = data[key]
    if key == "messages" and (not isinstance(value, list) or not value):
        raise BadRequestError("'messages' must be a non-empty array", param=key)
    if key == "prompt" and not isinstance(value, str | list):
        raise BadRequestError("'prompt' must be a string or an array", param=key)
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequestError("'stream' must be a boolean", param="stream")
    if not data.get("model"):
        if default_model is None:
            raise BadRequestError(
                "'model' is required (the gateway has no MODEL_NAME)", param="model"
            )
        data["model"] = default_model
        raw = json.dumps(data).encode()
    return CompletionRequest(raw, stream, data)


def add_member(body: bytes, member: bytes) -> bytes:
    """A JSON object's bytes with one more `"key":value` member (its key not already there), by
    splicing instead of re-encoding the whole body."""
    end = body.rstrip().rfind(b"}")
    if end < 0:
        raise ValueError("not a JSON object")
    head = body[:end].rstrip()
    comma = b"" if head.endswith(b"{") else b","
    return head + comma + member + b"}"


def request_id(given: str | None) -> str:
    """The client's X-Request-Id when it is a sane token, else a fresh one."""
    if given and _REQUEST_ID.match(given):
        return given
    return os.urandom(16).hex()  # as random as uuid4().hex, at a third of the cost
