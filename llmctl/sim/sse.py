"""Response bodies: SSE chunk templates filled by string concatenation, and non-stream JSON."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from llmctl.core.openai import DONE_EVENT
from llmctl.sim.api import GenerationParams

_HOLE = "\x00"  # json.dumps turns it into the escape below, which marks where the token text goes
_HOLE_JSON = json.dumps(_HOLE)[1:-1]
_DONE = DONE_EVENT.decode()


def _event(obj: dict[str, Any]) -> str:
    return "data: " + json.dumps(obj, separators=(",", ":")) + "\n\n"


def _split(obj: dict[str, Any]) -> tuple[str, str]:
    prefix, suffix = _event(obj).split(_HOLE_JSON)
    return prefix, suffix


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


class StreamFormat:
    """Pre-rendered SSE frames for one request; a token frame is prefix + text + suffix.

    Token text is drawn from a vocabulary that needs no JSON escaping (see text.py)."""

    def __init__(self, params: GenerationParams) -> None:
        self.params = params
        self.created = int(time.time())
        chat = params.kind == "chat"
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self._head = {
            "id": self.id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": self.created,
            "model": params.model,
        }
        self.prefix, self.suffix = _split(self._choice(_HOLE, None))

    def _choice(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        if self.params.kind == "chat":
            delta = {"content": text} if text or finish_reason is None else {}
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": None}
        else:
            choice = {"index": 0, "text": text, "logprobs": None}
        choice["finish_reason"] = finish_reason
        choice["stop_reason"] = None
        return {**self._head, "choices": [choice]}

    def opening(self) -> str:
        """The chat role frame vLLM sends first (nothing for completions)."""
        if self.params.kind != "chat":
            return ""
        frame = self._choice("", None)
        frame["choices"][0]["delta"] = {"role": "assistant", "content": ""}
        return _event(frame)

    def closing(self, finish_reason: str, completion_tokens: int) -> str:
        """The finish frame, the usage frame when asked for, and `[DONE]`."""
        out = _event(self._choice("", finish_reason))
        if self.params.include_usage:
            out += _event(
                {
                    **self._head,
                    "choices": [],
                    "usage": usage(self.params.prompt_tokens, completion_tokens),
                }
            )
        return out + _DONE


def full_response(params: GenerationParams, text: str, finish_reason: str, tokens: int) -> bytes:
    """The non-streaming chat.completion / text_completion body."""
    chat = params.kind == "chat"
    choice: dict[str, Any]
    if chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "tool_calls": []},
            "logprobs": None,
        }
    else:
        choice = {"index": 0, "text": text, "logprobs": None}
    choice.update(finish_reason=finish_reason, stop_reason=None)
    body = {
        "id": ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": params.model,
        "choices": [choice],
        "usage": usage(params.prompt_tokens, tokens),
    }
    return json.dumps(body).encode()
