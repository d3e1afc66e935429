"""Request-body checks and cheap byte scans of engine answers (usage, event counts)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
# The key each route's body must carry.
REQUIRED_KEY = {CHAT_PATH: "messages", COMPLETIONS_PATH: "prompt"}

_PROMPT_TOKENS = re.compile(rb'"prompt_tokens"\s*:\s*(\d+)')
_COMPLETION_TOKENS = re.compile(rb'"completion_tokens"\s*:\s*(\d+)')
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class BadRequest(Exception):
    """The body is not a request the engine can take (answered with 400)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    """A validated body: the bytes to send upstream and whether the client asked for a stream."""

    body: bytes
    stream: bool


def parse_completion(raw: bytes, path: str, default_model: str | None) -> CompletionRequest:
    """Check that `raw` is a JSON object with the route's key; fill in the model if it has none.

    The original bytes are forwarded untouched unless the model had to be filled in."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("request body is nested too deeply") from None
    if not isinstance(data, dict):
        raise BadRequest("request body must be a JSON object")
    key = REQUIRED_KEY[path]
    if key not in data:
        raise BadRequest(f"'{key}' is a required property", param=key)
    value = data[key]
    if key == "messages" and (not isinstance(value, list) or not value):
        raise BadRequest("'messages' must be a non-empty array", param=key)
    if key == "prompt" and not isinstance(value, str | list):
        raise BadRequest("'prompt' must be a string or an array", param=key)
    stream = data.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("'stream' must be a boolean", param="stream")
    if not data.get("model"):
        if default_model is None:
            raise BadRequest("'model' is required (the gateway has no MODEL_NAME)", param="model")
        data["model"] = default_model
        raw = json.dumps(data).encode()
    return CompletionRequest(raw, stream)


def request_id(given: str | None) -> str:
    """The client's X-Request-Id when it is a sane token, else a fresh one."""
    if given and _REQUEST_ID.match(given):
        return given
    return uuid.uuid4().hex


def content_frames(chunk: bytes, key: bytes) -> int:
    """How many frames in `chunk` carry a non-empty `key` string (`"content":` for chat,
    `"text":` for completions), by byte counts alone: this runs on every streamed chunk.

    A quote inside generated text is escaped, so the pattern cannot match inside a string. Frames
    split across two chunks are missed; usage from the engine, when present, is exact."""
    full = key + b'"'
    found = chunk.count(full)
    if found:
        return found - chunk.count(full + b'"')
    spaced = key + b' "'  # json.dumps's default separators
    found = chunk.count(spaced)
    return found - chunk.count(spaced + b'"') if found else 0


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
