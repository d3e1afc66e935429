"""OpenAI request validation for the simulator: request bodies in, GenerationParams or ApiError out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from llmctl.core.openai import Kind, error_body
from llmctl.sim.text import render_chat, tokenize

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})


class ApiError(Exception):
    """A client error answered with an OpenAI-style body."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type=type, code=code, param=param)


@dataclass(frozen=True)
class GenerationParams:
    """What the engine needs to know about one validated request."""

    kind: Kind
    model: str
    prompt_tokens: int
    prompt_ids: Sequence[str | int]  # the prompt's tokens (text pieces, or the ids given)
    max_tokens: int
    ignore_eos: bool
    stream: bool
    include_usage: bool


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _content_text(content: object, index: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or not isinstance(part.get("text", ""), str):
                raise ApiError(
                    "each content part must be an object with a string 'text'",
                    param=f"messages[{index}].content",
                )
            texts.append(part.get("text", ""))
        return " ".join(texts)
    raise ApiError(
        "content must be a string or a list of parts", param=f"messages[{index}].content"
    )


def _chat_prompt(body: dict[str, Any]) -> list[str]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError("'messages' must be a non-empty list", param="messages")
    rendered: list[tuple[str, str]] = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise ApiError("each message must be an object", param=f"messages[{i}]")
        role = msg.get("role")
        if role not in _ROLES:
            raise ApiError(f"unknown message role {role!r}", param=f"messages[{i}].role")
        rendered.append((str(role), _content_text(msg.get("content"), i)))
    return tokenize(render_chat(rendered))


def _completion_prompt(body: dict[str, Any]) -> Sequence[str | int]:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    tokens: Sequence[str | int]
    if isinstance(prompt, str):
        tokens = tokenize(prompt)
    elif isinstance(prompt, list) and prompt and all(_is_int(t) and t >= 0 for t in prompt):
        tokens = prompt  # already token ids
    else:
        raise ApiError(
            "'prompt' must be a string, a one-element list of strings or a list of token ids",
            param="prompt",
        )
    if not tokens:
        raise ApiError("'prompt' must not be empty", param="prompt")
    return tokens


def _check_sampling(body: dict[str, Any]) -> None:
    n = body.get("n", 1)
    if n is not None and (not _is_int(n) or n != 1):
        raise ApiError("the simulator supports only n=1", param="n")
    temperature = body.get("temperature")
    if temperature is not None and (not _is_number(temperature) or temperature < 0):
        raise ApiError("'temperature' must be a non-negative number", param="temperature")
    top_p = body.get("top_p")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise ApiError("'top_p' must be in (0, 1]", param="top_p")


def parse_generation(
    kind: Kind, body: object, *, served_model: str, max_model_len: int
) -> GenerationParams:
    """Validate an OpenAI chat/completions body as vLLM would; raise ApiError on bad input."""
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object")
    model = body.get("model", served_model)
    if model != served_model:
        raise ApiError(
            f"The model `{model}` does not exist.",
            status=404,
            param="model",
            code="model_not_found",
        )
    prompt_ids = _chat_prompt(body) if kind == "chat" else _completion_prompt(body)
    prompt_tokens = len(prompt_ids)
    _check_sampling(body)
    key = "max_tokens"
    max_tokens = body.get("max_tokens")
    if max_tokens is None and kind == "chat":
        key, max_tokens = "max_completion_tokens", body.get("max_completion_tokens")
    if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 1):
        raise ApiError(f"'{key}' must be a positive integer", param=key)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError("'stream' must be a boolean", param="stream")
    options = body.get("stream_options")
    if options is not None and (not stream or not isinstance(options, dict)):
        raise ApiError(
            "Stream options can only be defined when `stream=True`.", param="stream_options"
        )
    include_usage = (options or {}).get("include_usage", False)
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(include_usage, bool) or not isinstance(ignore_eos, bool):
        raise ApiError("'include_usage' and 'ignore_eos' must be booleans")
    requested = prompt_tokens + (max_tokens or 1)
    if requested > max_model_len:
        raise ApiError(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{requested} tokens ({prompt_tokens} in the messages, {max_tokens or 1} in the "
            "completion). Please reduce the length of the messages or completion.",
            param="max_tokens" if max_tokens else "messages",
        )
    room = max_model_len - prompt_tokens
    return GenerationParams(
        kind=kind,
        model=served_model,
        prompt_tokens=prompt_tokens,
        prompt_ids=prompt_ids,
        max_tokens=max_tokens if max_tokens is not None else _default_max_tokens(kind, room),
        ignore_eos=ignore_eos,
        stream=stream,
        include_usage=include_usage,
    )


def _default_max_tokens(kind: Kind, room: int) -> int:
    """vLLM's defaults: the OpenAI completions API's 16, and for chat all the room left."""
    return min(16, room) if kind == "completion" else room
