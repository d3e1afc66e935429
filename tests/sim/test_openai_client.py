"""The official openai client against the simulator: streaming, non-streaming, usage."""

from __future__ import annotations

import math

import httpx
import openai
import pytest

from tests.sim.conftest import Sim, StartSim


def count_rule(text: str) -> int:
    """The documented rule (docs/simulator.md), written out independently of llmctl.sim.text."""
    return sum(math.ceil(len(word) / 4) for word in text.split())


def chat_prompt(messages: list[dict[str, str]]) -> str:
    """The documented chat template."""
    return " ".join([*(f"<|{m['role']}|> {m['content']}" for m in messages), "<|assistant|>"])


MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Explain paged attention in a sentence, please!"},
]


@pytest.fixture
def client(sim: Sim) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="unused", max_retries=0, timeout=30)


def test_models_lists_the_served_model(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["llmctl-sim"]


def test_chat_non_streaming_usage_is_consistent(client: openai.OpenAI) -> None:
    resp = client.chat.completions.create(
        model="llmctl-sim", messages=MESSAGES, max_tokens=17, extra_body={"ignore_eos": True}
    )
    choice = resp.choices[0]
    assert choice.finish_reason == "length"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 17
    assert resp.usage.prompt_tokens == count_rule(chat_prompt(MESSAGES))
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 17
    assert count_rule(choice.message.content or "") == 17


def test_chat_streaming_with_include_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="llmctl-sim",
        messages=MESSAGES,
        max_tokens=12,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "length"
    assert chunks[-1].choices == []
    usage = chunks[-1].usage
    assert usage is not None
    assert usage.completion_tokens == 12 == count_rule(text)
    assert usage.prompt_tokens == count_rule(chat_prompt(MESSAGES))
    assert all(c.usage is None for c in chunks[:-1])


def test_completions_stream_and_non_stream_agree_on_counting(client: openai.OpenAI) -> None:
    prompt = "The quick brown fox jumps over the lazy dog; supercalifragilistic."
    resp = client.completions.create(model="llmctl-sim", prompt=prompt, max_tokens=9)
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == count_rule(prompt)
    assert resp.usage.completion_tokens == 9 == count_rule(resp.choices[0].text)

    stream = client.completions.create(
        model="llmctl-sim",
        prompt=prompt,
        max_tokens=9,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert count_rule(text) == 9
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 9


def test_bad_input_is_an_openai_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as excinfo:
        client.chat.completions.create(model="llmctl-sim", messages=[], max_tokens=5)
    assert "messages" in str(excinfo.value)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="llmctl-sim", prompt="x", max_tokens=-3)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="llmctl-sim", prompt="x", max_tokens=10**9)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="other-model", prompt="x", max_tokens=3)


def test_unknown_routes_and_bad_json_get_openai_error_bodies(sim: Sim) -> None:
    missing = httpx.get(f"{sim.url}/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"]
    bad_json = httpx.post(f"{sim.url}/v1/chat/completions", content=b"{not json")
    assert bad_json.status_code == 400
    assert bad_json.json()["error"]["type"] == "invalid_request_error"
    not_object = httpx.post(f"{sim.url}/v1/completions", json=["prompt"])
    assert not_object.status_code == 400
    wrong_method = httpx.get(f"{sim.url}/v1/completions")
    assert wrong_method.status_code == 405
    assert "error" in wrong_method.json()


def test_without_ignore_eos_a_long_request_stops_at_its_simulated_eos(
    client: openai.OpenAI,
) -> None:
    resp = client.completions.create(model="llmctl-sim", prompt="go on", max_tokens=4000)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert 64 <= resp.usage.completion_tokens <= 1024
    assert count_rule(resp.choices[0].text) == resp.usage.completion_tokens


def test_same_seed_same_text(start_sim: StartSim) -> None:
    def texts() -> list[str]:
        with start_sim("--seed", "5") as s:
            c = openai.OpenAI(base_url=f"{s.url}/v1", api_key="unused", max_retries=0)
            return [
                c.completions.create(model="llmctl-sim", prompt="hi", max_tokens=20).choices[0].text
                for _ in range(3)
            ]

    first = texts()
    assert len(set(first)) == 3  # each request reads its own part of the seeded text
    assert texts() == first


def test_deeply_nested_json_is_a_400(sim: Sim) -> None:
    for path in ("/v1/chat/completions", "/v1/completions"):
        resp = httpx.post(f"{sim.url}{path}", content=b"[" * 200_000)
        assert resp.status_code == 400, path
        assert resp.json()["error"]["type"] == "invalid_request_error"
    assert httpx.get(f"{sim.url}/health").status_code == 200


def test_completions_default_to_16_tokens_like_vllm(client: openai.OpenAI) -> None:
    resp = client.completions.create(model="llmctl-sim", prompt="go on")
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 16
    assert resp.choices[0].finish_reason == "length"


NON_STANDARD = [b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999"]


@pytest.mark.parametrize("number", NON_STANDARD)
def test_non_standard_json_numbers_are_a_400(sim: Sim, number: bytes) -> None:
    body = b'{"model": "llmctl-sim", "prompt": "hi", "max_tokens": 2, "temperature": ' + number
    resp = httpx.post(f"{sim.url}/v1/completions", content=body + b"}")
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "temperature" in error["message"]
    assert number.lstrip(b"-").decode() in error["message"]
