"""The OpenAI wire format, defined once: which events carry text, usage, and validation messages."""

from __future__ import annotations

import json

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmctl.core.openai import CHAT, COMPLETIONS, ROUTES, has_text, text_frames, usage_tokens
from llmctl.core.validation import explain, first_problem


def _event(obj: object, compact: bool = True) -> bytes:
    separators = (",", ":") if compact else (", ", ": ")
    return b"data: " + json.dumps(obj, separators=separators).encode() + b"\n\n"


def _delta(delta: dict[str, str]) -> dict[str, object]:
    return {"choices": [{"index": 0, "delta": delta}]}


@pytest.mark.parametrize("compact", [True, False])
def test_text_frames_count_only_events_with_generated_text(compact: bool) -> None:
    role = _event(_delta({"role": "assistant", "content": ""}), compact)
    token = _event(_delta({"content": "hi"}), compact)
    quote = _event(_delta({"content": '"'}), compact)
    finish = _event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, compact)
    chunk = role + token + quote + token + finish + b"data: [DONE]\n\n"
    assert text_frames(chunk, CHAT.text_key) == 3
    assert not has_text(role + finish, CHAT.text_key)
    completion = _event({"choices": [{"text": "x"}]}, compact) + _event({"choices": [{"text": ""}]})
    assert text_frames(completion, COMPLETIONS.text_key) == 1


def test_a_quote_inside_text_cannot_fake_a_key() -> None:
    payload = json.dumps(_delta({"content": 'say "content":"x"'})).encode()
    assert text_frames(payload, CHAT.text_key) == 1


def test_usage_is_read_from_the_last_usage_object() -> None:
    blob = _event({"usage": {"prompt_tokens": 1, "completion_tokens": 2}}) + _event(
        {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9}}
    )
    assert usage_tokens(blob) == (3, 9)
    assert usage_tokens(b"data: {}") is None


def test_routes_name_their_body_and_text_keys() -> None:
    assert ROUTES["/v1/chat/completions"] is CHAT
    assert (CHAT.body_key, COMPLETIONS.body_key) == ("messages", "prompt")


class _Inner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_active: int = Field(4, ge=1)


class _Outer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gateway: _Inner = _Inner()
    duration_s: float = Field(1.0, gt=0)


def test_validation_messages_use_words_flags_and_suggestions() -> None:
    with pytest.raises(ValidationError) as err:
        _Outer.model_validate({"gateway": {"max_activ": 3, "max_active": 0}, "duration_s": -1})
    text = explain(
        err.value,
        what="settings",
        model=_Outer,
        names={"duration_s": "--duration"},
        sources={"gateway.max_active": "file x.toml", "duration_s": "flag --duration"},
        files={"file x.toml": ("x.toml", lambda key: (7, 1))},
    )
    assert "gateway.max_activ: unknown key; did you mean 'max_active'?" in text
    assert "x.toml:7:1: gateway.max_active: must be at least 1 (got 0)" in text
    assert "--duration: must be greater than 0 (got -1) (from flag --duration)" in text
    assert "Input should" not in text
    assert first_problem(err.value) == "gateway.max_active: must be at least 1 (got 0)"
