"""The response cache's pure parts: which requests are cacheable, the key, the store's bounds, and
answers read from engine bytes and written back in either form."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmctl.gateway.answers import Answer, Choice, read_answer, read_stream, read_whole
from llmctl.gateway.cache import ResponseCache, cache_key, cacheable

CACHEABLE = [
    ("greedy", {"temperature": 0}, True),
    ("greedy as a float", {"temperature": 0.0}, True),
    ("seeded", {"temperature": 0.8, "seed": 7}, True),
    ("sampled", {"temperature": 0.7}, False),
    ("no temperature (the engine's default samples)", {}, False),
    ("a boolean is not a temperature", {"temperature": False}, False),
    ("a boolean is not a seed", {"seed": True}, False),
    ("log-probabilities are not kept", {"temperature": 0, "logprobs": True}, False),
    ("tools are not kept", {"temperature": 0, "tools": [{"type": "function"}]}, False),
    ("logprobs false is fine", {"temperature": 0, "logprobs": False, "top_logprobs": 0}, True),
]


@pytest.mark.parametrize(
    ("data", "expected"), [c[1:] for c in CACHEABLE], ids=[c[0] for c in CACHEABLE]
)
def test_cacheable(data: dict[str, Any], expected: bool) -> None:
    assert cacheable(data) is expected


def test_key_covers_tenant_route_and_body_but_not_delivery() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    key = cache_key(None, "/v1/chat/completions", body)
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    reordered = dict(reversed(list(body.items())))
    assert cache_key(None, "/v1/chat/completions", streamed) == key
    assert cache_key(None, "/v1/chat/completions", reordered) == key
    assert cache_key("acme", "/v1/chat/completions", body) != key
    assert cache_key(None, "/v1/completions", body) != key
    assert cache_key(None, "/v1/chat/completions", {**body, "max_tokens": 5}) != key


def _answer(text: str = "hello", n: int = 1) -> Answer:
    choices = tuple(Choice(i, text, "stop") for i in range(n))
    usage = {"prompt_tokens": 3, "total_tokens": 5, "completion_tokens": 2}
    return Answer("chat", "m", choices, usage)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_store_evicts_least_recently_used_past_its_byte_bound() -> None:
    evicted: list[tuple[str, int]] = []
    size = _answer().size + 64  # one entry: its answer plus its 64-character key
    cache = ResponseCache(3 * size, 60, on_evict=lambda reason, n: evicted.append((reason, n)))
    for key in ("a", "b", "c"):
        assert cache.put(key * 64, _answer())
    assert cache.get("a" * 64) is not None  # a is now the most recently used
    cache.put("d" * 64, _answer())
    assert cache.get("b" * 64) is None
    assert [cache.get(k * 64) is not None for k in "acd"] == [True, True, True]
    assert cache.bytes == 3 * size <= cache.max_bytes
    assert evicted == [("size", 1)]
    assert not cache.put("e" * 64, _answer("x" * 4 * size))  # alone over the bound: not kept
    assert len(cache) == 3


def test_store_serves_nothing_older_than_its_age_bound() -> None:
    clock = Clock()
    evicted: list[str] = []
    cache = ResponseCache(1 << 20, 10, clock, on_evict=lambda reason, n: evicted.append(reason))
    cache.put("a", _answer())
    clock.now += 5
    cache.put("b", _answer())
    clock.now += 5  # a is 10 s old
    assert cache.get("a") is None
    assert cache.get("b") is not None
    clock.now += 6
    cache.put("c", _answer())  # storing sweeps b out, unasked
    assert len(cache) == 1
    assert cache.bytes == _answer().size + 1
    assert evicted == ["age", "age"]
    assert cache.purge() == (1, _answer().size + 1)
    assert (len(cache), cache.bytes) == (0, 0)


def _sse(*events: dict[str, Any], done: bool = True) -> bytes:
    out = b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def _delta(content: str | None = None, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    choice = {"index": 0, "delta": delta | extra, "logprobs": None, "finish_reason": finish}
    return {"id": "x", "model": "m", "choices": [choice]}


USAGE = {
    "choices": [],
    "model": "m",
    "usage": {"prompt_tokens": 3, "total_tokens": 5, "completion_tokens": 2},
}


def test_a_stream_is_read_whole_and_written_back_both_ways() -> None:
    body = _sse(_delta("", role="assistant"), _delta("hel"), _delta("lo", "length"), USAGE)
    answer = read_stream("chat", body)
    assert answer is not None
    assert (answer.text, answer.choices[0].finish_reason) == ("hello", "length")
    whole = json.loads(answer.whole())
    assert whole["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert whole["usage"] == USAGE["usage"]
    again = read_whole("chat", answer.whole())
    assert again is not None
    assert again.choices == answer.choices
    streamed = answer.stream(include_usage=True)
    assert read_answer("chat", streamed) == answer
    assert b'"usage"' not in answer.stream(include_usage=False)


UNKEPT = [
    ("no [DONE]", _sse(_delta("hi", "stop"), USAGE, done=False)),
    ("no usage", _sse(_delta("hi", "stop"))),
    ("never finished", _sse(_delta("hi"), USAGE)),
    ("aborted", _sse(_delta("hi", "abort"), USAGE)),
    ("an error event", _sse(_delta("hi"), {"error": {"message": "boom"}})),
    ("tool calls", _sse(_delta(None, "stop", tool_calls=[{"id": "1"}]), USAGE)),
    ("not JSON", b'{"choices": ['),
    ("a whole answer without usage", json.dumps({"model": "m", "choices": []}).encode()),
]


@pytest.mark.parametrize("body", [c[1] for c in UNKEPT], ids=[c[0] for c in UNKEPT])
def test_incomplete_or_unusual_answers_are_not_kept(body: bytes) -> None:
    assert read_answer("chat", body) is None


def test_completions_and_several_choices_round_trip() -> None:
    usage = {"prompt_tokens": 1, "total_tokens": 3, "completion_tokens": 2}
    choices = [
        {"index": i, "text": t, "logprobs": None, "finish_reason": "stop"}
        for i, t in enumerate(("a", "b"))
    ]
    body = json.dumps({"model": "m", "choices": choices, "usage": usage}).encode()
    answer = read_whole("completion", body)
    assert answer is not None
    assert [c.text for c in answer.choices] == ["a", "b"]
    assert read_stream("completion", answer.stream(include_usage=True)) == answer
