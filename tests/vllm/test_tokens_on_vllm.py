"""The gateway's prompt-token count against real vLLM's, its context-window 400 against vLLM's own,
and the response cache in front of real vLLM (the session's one vLLM on the tiny model; the
gateway was given the model folder with --tokenizer)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.exposition import Exposition
from tests.support import free_port, llmctl_server
from tests.vllm.conftest import VllmStack

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.timeout(600)]

SYSTEM = {"role": "system", "content": "You are a terse assistant. Answer in one line."}
CHATS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "Count from one to ten, please."}],
    [SYSTEM, {"role": "user", "content": "What is a token?"}],
    [
        SYSTEM,
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Tell me about the queue, the gateway and the engine."},
    ],
    [
        {
            "role": "user",
            "content": "Ünïcödé: naïve café, 日本語のテキスト, emoji 🚀🔥, Ελληνικά, עברית",
        }
    ],
    [
        {
            "role": "user",
            "content": [{"type": "text", "text": "two"}, {"type": "text", "text": "parts"}],
        }
    ],
    [{"role": "developer", "content": "be brief"}, {"role": "user", "content": "why?"}],
    [{"role": "user", "content": "  leading and trailing spaces \n\n and blank lines \t "}],
]
PROMPTS: list[Any] = [
    "Once upon a time",
    "Ünïcödé ✓ 日本語 🚀 and numbers 1234567890",
    ["first prompt of a batch", "the second, longer prompt of the same batch"],
    [1, 2, 3, 4, 5, 6, 7],
    "line one\nline two\n\n\ttabbed, then a very long word: " + "x" * 300,
]


def _counted(stack: VllmStack) -> float:
    page = Exposition.scrape(f"{stack.gateway_url}/metrics")
    return page.total("llmctl_gateway_admission_prompt_tokens_total", counting="exact")


def _post(base: str, path: str, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return httpx.post(f"{base}{path}", json=body, timeout=120, **kw)


@pytest.mark.parametrize(
    ("path", "body"),
    [("/v1/chat/completions", {"messages": m}) for m in CHATS]
    + [("/v1/completions", {"prompt": p}) for p in PROMPTS],
    ids=[f"chat-{i}" for i in range(len(CHATS))] + [f"completion-{i}" for i in range(len(PROMPTS))],
)
def test_the_gateways_count_is_vllms(
    vllm_stack: VllmStack, path: str, body: dict[str, Any]
) -> None:
    before = _counted(vllm_stack)
    answer = _post(
        vllm_stack.gateway_url, path, {"model": vllm_stack.model, "max_tokens": 1, **body}
    )
    assert answer.status_code == 200, answer.text
    assert _counted(vllm_stack) - before == answer.json()["usage"]["prompt_tokens"]


def _engine_4xx(stack: VllmStack, path: str) -> float:
    page = Exposition.scrape(f"{stack.engine_url}/metrics")
    return page.total("http_requests_total", handler=path, status="4xx")


LONG = "the gateway counts tokens " * 400  # about 2,400 tokens: over the 2048 window
REFUSED = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": LONG}]}),
    ("/v1/completions", {"prompt": LONG}),
    ("/v1/completions", {"prompt": "x" * 30000}),  # refused on characters, before tokenizing
    ("/v1/completions", {"prompt": list(range(2049))}),
    ("/v1/completions", {"prompt": [5] * 2048}),  # exactly the window: no room to generate
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4096}),
]


@pytest.mark.parametrize(
    ("path", "body"), REFUSED, ids=[f"refused-{i}" for i in range(len(REFUSED))]
)
def test_a_prompt_too_long_gets_vllms_400_without_reaching_it(
    vllm_stack: VllmStack, path: str, body: dict[str, Any]
) -> None:
    body = {"model": vllm_stack.model, **body}
    direct = _post(vllm_stack.engine_url, path, body)
    assert direct.status_code == 400, direct.text
    before = _engine_4xx(vllm_stack, path)
    via = _post(vllm_stack.gateway_url, path, body)
    assert via.status_code == 400
    assert via.json() == direct.json()
    assert via.headers["Content-Type"].startswith("application/json")
    assert "X-Llmctl-Engine" not in via.headers
    assert _engine_4xx(vllm_stack, path) == before, "the gateway sent it to vLLM"


@pytest.fixture(scope="module")
def cached_gateway(
    vllm_stack: VllmStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A second gateway in front of the same vLLM, with the response cache on."""
    port = free_port()
    args = ["gateway", "serve", "--upstream", vllm_stack.engine_url, "--model", vllm_stack.model,
            "--port", str(port), "--cache", "--health-interval", "0.5"]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("cached") / "gateway.log"
    with llmctl_server(args, ready_url=f"{url}/health", log=log):
        yield url


def _content(answer: httpx.Response) -> str:
    if answer.headers["Content-Type"].startswith("text/event-stream"):
        text = ""
        for line in answer.text.splitlines():
            if line.startswith("data: {"):
                for choice in json.loads(line[6:])["choices"]:
                    text += choice["delta"].get("content") or ""
        return text
    return str(answer.json()["choices"][0]["message"]["content"])


def test_the_cache_in_front_of_vllm_serves_both_forms_alike(
    vllm_stack: VllmStack, cached_gateway: str
) -> None:
    body = {
        "model": vllm_stack.model,
        "messages": [{"role": "user", "content": "Write about the cache."}],
        "max_tokens": 24,
        "temperature": 0,
        "ignore_eos": True,
    }
    direct = _post(vllm_stack.engine_url, "/v1/chat/completions", body)
    streamed = _post(cached_gateway, "/v1/chat/completions", {**body, "stream": True})
    whole = _post(cached_gateway, "/v1/chat/completions", body)
    assert (streamed.headers["x-cache"], whole.headers["x-cache"]) == ("miss", "hit")
    assert _content(streamed) == _content(whole) == _content(direct)
    tokens = ("prompt_tokens", "completion_tokens", "total_tokens")
    assert [whole.json()["usage"][k] for k in tokens] == [direct.json()["usage"][k] for k in tokens]
