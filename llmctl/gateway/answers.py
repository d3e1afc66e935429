"""A finished answer in one form, read from the engine's bytes and written back as JSON or SSE.

The cache keeps each answer once, as its choices' text, finish reason and stop reason, the usage
and the model: a streamed answer read this way is served whole, and a whole one as a stream (each
choice's text in one event, shaped as vLLM shapes its events). Only complete, plain answers are
read: an error, a stream without `[DONE]` or without usage, a choice that did not finish (or was
aborted), tool calls, reasoning, refusals or log-probabilities all give None, and nothing is kept.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any

from llmctl.core.openai import DONE_EVENT, Kind

# How an answer can end and still be served again: the same request ends the same way.
FINISHED = ("stop", "length")
# What each entry costs beyond its text, in the cache's byte count (ids, numbers, keys).
ENTRY_OVERHEAD = 256
# Message fields that carry something besides the text: an answer with any of them is not kept.
_EXTRAS = ("tool_calls", "reasoning", "reasoning_content", "refusal", "audio", "function_call")


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    text: str
    finish_reason: str
    stop_reason: str | int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    kind: Kind
    model: str
    choices: tuple[Choice, ...]
    usage: dict[str, int]
    system_fingerprint: str | None = None

    @property
    def size(self) -> int:
        """The bytes this answer counts for in the cache."""
        text = sum(len(c.text.encode()) for c in self.choices)
        return text + ENTRY_OVERHEAD * (1 + len(self.choices))

    @property
    def text(self) -> str:
        """The first choice's text (what most clients show)."""
        return self.choices[0].text if self.choices else ""

    # --- writing ----------------------------------------------------------------------------------

    def _head(self, object_: str) -> dict[str, Any]:
        prefix = "chatcmpl" if self.kind == "chat" else "cmpl"
        return {
            "id": f"{prefix}-{uuid.uuid4().hex[:16]}",
            "object": object_,
            "created": int(time.time()),
            "model": self.model,
        }

    def whole(self) -> bytes:
        """The answer as a non-streamed response body."""
        chat = self.kind == "chat"
        body = self._head("chat.completion" if chat else "text_completion")
        choices = []
        for c in self.choices:
            choice: dict[str, Any] = {"index": c.index}
            if chat:
                choice["message"] = {"role": "assistant", "content": c.text}
            else:
                choice["text"] = c.text
            choice |= {"logprobs": None, "finish_reason": c.finish_reason}
            choice["stop_reason"] = c.stop_reason
            choices.append(choice)
        body["choices"] = choices
        if self.system_fingerprint is not None:
            body["system_fingerprint"] = self.system_fingerprint
        body["usage"] = self.usage
        return json.dumps(body, ensure_ascii=False).encode()

    def stream(self, include_usage: bool) -> bytes:
        """The answer as a complete SSE stream (usage last when asked for, then `[DONE]`)."""
        chat = self.kind == "chat"
        head = self._head("chat.completion.chunk" if chat else "text_completion")
        events = []
        for c in self.choices:
            last: dict[str, Any] = {"index": c.index}
            if chat:
                role = {"role": "assistant", "content": ""}
                opening = {"index": c.index, "delta": role, "logprobs": None, "finish_reason": None}
                events.append({**head, "choices": [opening]})
                last["delta"] = {"content": c.text}
            else:
                last["text"] = c.text
            last |= {"logprobs": None, "finish_reason": c.finish_reason}
            last["stop_reason"] = c.stop_reason
            events.append({**head, "choices": [last]})
        if include_usage:
            usage: dict[str, Any] = {**head, "choices": [], "usage": self.usage}
            if self.system_fingerprint is not None:
                usage["system_fingerprint"] = self.system_fingerprint
            events.append(usage)
        frames = (b"data: " + json.dumps(e, ensure_ascii=False).encode() + b"\n\n" for e in events)
        return b"".join(frames) + DONE_EVENT


# --- reading ----------------------------------------------------------------------------------------


def _usage(value: Any) -> dict[str, int] | None:
    if not isinstance(value, dict):
        return None
    keys = ("prompt_tokens", "total_tokens", "completion_tokens")
    usage = {k: value.get(k) for k in keys}
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in usage.values()):
        return None
    return {k: int(v) for k, v in usage.items() if v is not None}


def _plain(part: dict[str, Any]) -> bool:
    """No log-probabilities, and (chat) nothing but text in the message or delta."""
    if part.get("logprobs") is not None:
        return False
    message = part.get("message", part.get("delta")) or {}
    return isinstance(message, dict) and not any(message.get(k) for k in _EXTRAS)


def _finished(reason: Any) -> bool:
    return reason in FINISHED


def read_whole(kind: Kind, body: bytes) -> Answer | None:
    """The answer in a non-streamed response body, if it is one the cache may keep."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        return None
    usage = _usage(data.get("usage"))
    choices = []
    for raw in data["choices"]:
        if not isinstance(raw, dict) or not _plain(raw) or not _finished(raw.get("finish_reason")):
            return None
        text = (raw.get("message") or {}).get("content") if kind == "chat" else raw.get("text")
        if not isinstance(text, str) or not isinstance(raw.get("index"), int):
            return None
        choices.append(Choice(raw["index"], text, raw["finish_reason"], raw.get("stop_reason")))
    if usage is None or not choices or not isinstance(data.get("model"), str):
        return None
    fingerprint = data.get("system_fingerprint")
    return Answer(kind, data["model"], tuple(choices), usage, fingerprint)


def read_stream(kind: Kind, body: bytes) -> Answer | None:
    """The answer in a whole SSE stream (usage included), if it is one the cache may keep."""
    if not body.endswith(DONE_EVENT):
        return None
    texts: dict[int, list[str]] = {}
    ends: dict[int, tuple[str, Any]] = {}
    usage: dict[str, int] | None = None
    model: str | None = None
    fingerprint: str | None = None
    for event in body[: -len(DONE_EVENT)].split(b"\n\n"):
        if not event.strip():
            continue
        if not event.startswith(b"data: "):
            return None
        try:
            data = json.loads(event[6:])
        except (ValueError, RecursionError):
            return None
        if not isinstance(data, dict) or "error" in data:
            return None
        model = data.get("model", model)
        fingerprint = data.get("system_fingerprint") or fingerprint
        usage = _usage(data.get("usage")) or usage
        for raw in data.get("choices") or ():
            if (
                not isinstance(raw, dict)
                or not _plain(raw)
                or not isinstance(raw.get("index"), int)
            ):
                return None
            piece = (raw.get("delta") or {}).get("content") if kind == "chat" else raw.get("text")
            texts.setdefault(raw["index"], []).append(piece if isinstance(piece, str) else "")
            if raw.get("finish_reason") is not None:
                ends[raw["index"]] = (raw["finish_reason"], raw.get("stop_reason"))
    if usage is None or not texts or not isinstance(model, str) or set(ends) != set(texts):
        return None
    if not all(_finished(reason) for reason, _ in ends.values()):
        return None
    choices = tuple(Choice(i, "".join(texts[i]), ends[i][0], ends[i][1]) for i in sorted(texts))
    return Answer(kind, model, choices, usage, fingerprint)


def read_answer(kind: Kind, body: bytes) -> Answer | None:
    """The answer in an engine's complete response body, streamed or not."""
    if body.startswith(b"data:"):
        return read_stream(kind, body)
    return read_whole(kind, body)
