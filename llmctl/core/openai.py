"""The OpenAI wire format, defined once: routes with their body and text keys, SSE framing, usage,
and error bodies. The gateway, the simulator and the bench client all speak through this module.

A streamed answer is a series of `data: {json}\\n\\n` events ending with `data: [DONE]\\n\\n`. An
event *carries text* when its route's text key (`"content":` in chat deltas, `"text":` in
completions) is followed by a non-empty JSON string: chat's opening role frame and the finish frame
carry none, so they are neither tokens nor the first token.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["chat", "completion"]


@dataclass(frozen=True)
class Route:
    """One generation route: its path, what it generates, the body key it requires, and the JSON
    key whose string holds generated text in its streamed events."""

    path: str
    kind: Kind
    body_key: str
    text_key: bytes


CHAT = Route("/v1/chat/completions", "chat", "messages", b'"content":')
COMPLETIONS = Route("/v1/completions", "completion", "prompt", b'"text":')
ROUTES: dict[str, Route] = {route.path: route for route in (CHAT, COMPLETIONS)}
# bench's --endpoint names
ENDPOINTS: dict[str, Route] = {"chat": CHAT, "completions": COMPLETIONS}
MODELS_PATH = "/v1/models"

DONE = b"[DONE]"
DONE_EVENT = b"data: [DONE]\n\n"

_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')


class NonStandardNumberError(ValueError):
    """NaN, Infinity, -Infinity or a number beyond a double (1e999) in JSON; `path` says where
    (`queue_timeout_s`, `messages[0].temperature`; empty at the top level)."""

    def __init__(self, literal: str, path: str = "") -> None:
        self.literal = literal
        self.path = path
        what = f"{literal} is not a JSON number (JSON has no NaN or infinity)"
        super().__init__(f"{path}: {what}" if path else what)


def parse_json(raw: bytes | str) -> Any:
    """JSON as RFC 8259 defines it, the one loader for request bodies (gateway, admin API, simulator).

    Python's json accepts `NaN`, `Infinity` and `-Infinity` and turns `1e999` into inf; none of them
    is JSON, and a limit or a sampling value of inf or NaN means nothing. They raise
    NonStandardNumberError naming where they are; malformed JSON raises ValueError as json does
    (RecursionError stays as it is: the caller says "nested too deeply")."""
    try:
        return json.loads(raw, parse_constant=_refuse_constant, parse_float=_finite_float)
    except NonStandardNumberError as exc:
        # Rare, so the second parse that finds the key costs nothing on the common path.
        raise NonStandardNumberError(exc.literal, _path_of_bad_number(raw)) from None


def _refuse_constant(name: str) -> Any:
    raise NonStandardNumberError(name)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NonStandardNumberError(text)
    return value


class _Bad:
    """Stands in for a non-standard number while its path is looked for."""


def _path_of_bad_number(raw: bytes | str) -> str:
    def mark(text: str) -> Any:
        value = float(text)
        return value if math.isfinite(value) else _Bad()

    try:
        data = json.loads(raw, parse_constant=lambda _: _Bad(), parse_float=mark)
    except (ValueError, RecursionError):
        return ""
    stack: list[tuple[str, Any]] = [("", data)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, _Bad):
            return path
        if isinstance(value, dict):
            items = [(f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            items = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
        else:
            continue
        stack.extend(reversed(items))
    return ""


def text_frames(data: bytes, key: bytes) -> int:
    """How many events in `data` carry text under `key` (see the module docstring), by byte counts
    alone: this runs on every streamed chunk.

    A quote inside generated text is escaped, so the pattern cannot match inside a string. Compact
    (`"content":"`) and spaced (`"content": "`, json.dumps's default) separators are recognised."""
    compact = key + b'"'
    found = data.count(compact)
    if found:
        found -= data.count(compact + b'"')
    spaced = key + b' "'
    more = data.count(spaced)
    if more:
        found += more - data.count(spaced + b'"')
    return found


def has_text(data: bytes, key: bytes) -> bool:
    """Whether any event in `data` carries text under `key`."""
    return text_frames(data, key) > 0


def usage_tokens(blob: bytes) -> tuple[int, int] | None:
    """(prompt, completion) tokens from the last `usage` object in `blob`, if there is one."""
    at = blob.rfind(b'"usage"')
    if at < 0:
        return None
    tail = blob[at:]
    prompt = _PROMPT_TOKENS.search(tail)
    completion = _COMPLETION_TOKENS.search(tail)
    if prompt is None or completion is None:
        return None
    return int(prompt.group(1)), int(completion.group(1))


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
    return f"data: {payload}\n\n".encode() + DONE_EVENT


def drop_usage_events(data: bytes) -> bytes:
    """`data` without its usage-only events (`"choices":[]` with `"usage"`), for a client that did
    not ask for usage when the gateway asked the engine for it. Only whole events are dropped."""
    if b'"usage"' not in data:
        return data
    kept: list[bytes] = []
    start = 0
    while True:
        end = data.find(b"\n\n", start)
        if end < 0:
            kept.append(data[start:])
            break
        event = data[start : end + 2]
        usage_only = b'"usage"' in event and (b'"choices":[]' in event or b'"choices": []' in event)
        if not usage_only:
            kept.append(event)
        start = end + 2
    return b"".join(kept)
