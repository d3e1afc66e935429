"""Prompt tokens counted as vLLM counts them, with a real tokenizer and chat template on disk
(tests/gateway/modelfolder.py: a whitespace tokenizer whose counts are worked out by hand); the
context-window checks as vLLM makes them; finding model files on disk."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from llmctl.core.modelfiles import tokenizer_dir
from llmctl.core.openai import CHAT, COMPLETIONS
from llmctl.gateway.chattemplate import ChatTemplate
from llmctl.gateway.context import check
from llmctl.gateway.tokens import INLINE_CHARS, PromptCount, PromptSize, TokenCounter
from tests.gateway.modelfolder import PARTS_TEMPLATE, make_model_folder

USER = {"role": "user", "content": "hello world"}


@pytest.fixture
def counter(tmp_path: Path) -> TokenCounter:
    return TokenCounter.load(str(make_model_folder(tmp_path / "model")))


# Chat: the default system block (6 tokens) unless the request has one, each message is
# <|im_start|> role words <|im_end|>, then <|im_start|> assistant; no <s> (no special tokens added).
CHAT_CASES = [
    ("one user turn", {"messages": [USER]}, 6 + 5 + 2),
    ("own system prompt", {"messages": [{"role": "system", "content": "ok"}, USER]}, 4 + 5 + 2),
    (
        "multi-turn",
        {"messages": [USER, {"role": "assistant", "content": "ok"}, USER]},
        6 + 5 + 4 + 5 + 2,
    ),
    (
        "unicode is unknown words",
        {"messages": [{"role": "user", "content": "héllo 日本 ✓"}]},
        6 + 6 + 2,
    ),
    ("no generation prompt", {"messages": [USER], "add_generation_prompt": False}, 6 + 5),
    ("special tokens asked for", {"messages": [USER], "add_special_tokens": True}, 1 + 6 + 5 + 2),
    (
        "text parts joined by newlines",
        {"messages": [{"role": "user", "content": [{"type": "text", "text": "hello"}, "world"]}]},
        6 + 5 + 2,
    ),
    (
        "continue the final message",
        {
            "messages": [USER, {"role": "assistant", "content": "ok you"}],
            "add_generation_prompt": False,
            "continue_final_message": True,
        },
        6 + 5 + 4,
    ),
]


@pytest.mark.parametrize(
    ("body", "tokens"), [c[1:] for c in CHAT_CASES], ids=[c[0] for c in CHAT_CASES]
)
def test_chat_is_the_template_then_the_tokenizer(
    counter: TokenCounter, body: dict[str, Any], tokens: int
) -> None:
    counted = counter.count(CHAT, body)
    assert (counted.tokens, counted.exact) == (tokens, True)


COMPLETION_CASES = [
    ("text gets <s>", {"prompt": "hello world!"}, 4),
    ("no special tokens", {"prompt": "hello world!", "add_special_tokens": False}, 3),
    ("token ids as given", {"prompt": [5, 6, 7]}, 3),
    ("a batch of texts", {"prompt": ["hello", "hello world"]}, 2 + 3),
    ("a batch of token ids", {"prompt": [[1, 2], [3]]}, 3),
]


@pytest.mark.parametrize(
    ("body", "tokens"), [c[1:] for c in COMPLETION_CASES], ids=[c[0] for c in COMPLETION_CASES]
)
def test_completions_add_special_tokens_as_vllm_does(
    counter: TokenCounter, body: dict[str, Any], tokens: int
) -> None:
    counted = counter.count(COMPLETIONS, body)
    assert (counted.tokens, counted.exact) == (tokens, True)


NOT_EXACT = [
    ("an image", CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
    ("tools", CHAT, {"messages": [USER], "tools": [{"type": "function"}]}),
    ("the template refuses", CHAT, {"messages": [{"role": "robot", "content": "hello"}]}),
    ("tool calls", CHAT, {"messages": [{"role": "assistant", "tool_calls": [{"id": "1"}]}]}),
    ("truncation", COMPLETIONS, {"prompt": "hello", "truncate_prompt_tokens": 1}),
    ("a prompt of objects", COMPLETIONS, {"prompt": [{"a": 1}]}),
]


@pytest.mark.parametrize(
    ("route", "body"), [c[1:] for c in NOT_EXACT], ids=[c[0] for c in NOT_EXACT]
)
def test_what_cannot_be_counted_exactly_is_estimated(
    counter: TokenCounter, route: Any, body: dict[str, Any]
) -> None:
    assert counter.count(route, body).exact is False


def test_without_a_tokenizer_text_is_estimated_and_token_ids_are_exact() -> None:
    counter = TokenCounter.load(None)
    assert counter.rule.startswith("estimate: 4 characters a token")
    text = counter.count(COMPLETIONS, {"prompt": "x" * 41})
    assert (text.tokens, text.exact) == (11, False)
    chat = counter.count(CHAT, {"messages": [{"role": "user", "content": "x" * 8}]})
    assert (chat.tokens, chat.exact) == (2, False)
    ids = counter.count(COMPLETIONS, {"prompt": [1, 2, 3]})
    assert (ids.tokens, ids.exact) == (3, True)


def test_a_template_that_loops_over_parts_gets_parts(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "m", PARTS_TEMPLATE, in_config=True)
    template = ChatTemplate.load(folder)
    assert template is not None
    assert template.format == "openai"
    # A string content becomes one text part; bos/eos come from tokenizer_config.json.
    text = template.render({"messages": [USER], "add_generation_prompt": False})
    assert text == "<s>user: hello world</s>"
    assert ChatTemplate.load(make_model_folder(tmp_path / "s")).format == "string"  # type: ignore[union-attr]


def test_developer_becomes_system_for_a_template_without_it(counter: TokenCounter) -> None:
    body = {"messages": [USER, {"role": "developer", "content": "ok"}]}
    # The developer message joins the system prompt at the front: no default one is added.
    assert counter.count(CHAT, body).tokens == 4 + 5 + 2


def test_long_prompts_are_counted_off_the_event_loop(counter: TokenCounter) -> None:
    short = asyncio.run(counter.count_async(COMPLETIONS, {"prompt": "hello world"}))
    assert short.tokens == 3
    assert counter._pool is None  # counted on the loop: cheaper than the hop
    long_prompt = {"prompt": "hello " * (INLINE_CHARS // 3)}
    counted = asyncio.run(counter.count_async(COMPLETIONS, long_prompt))
    assert counted.tokens == 1 + INLINE_CHARS // 3
    assert counter._pool is not None  # the long one went to the thread pool
    counter.close()


def test_model_files_are_found_in_a_folder_or_the_hub_cache(tmp_path: Path) -> None:
    folder = make_model_folder(tmp_path / "model")
    assert tokenizer_dir(str(folder)) == folder
    assert tokenizer_dir(str(tmp_path)) is None  # a folder without tokenizer.json
    hub = tmp_path / "hf" / "hub" / "models--org--name"
    snapshot = make_model_folder(hub / "snapshots" / "abc123")
    (hub / "refs").mkdir()
    (hub / "refs" / "main").write_text("abc123")
    environ = {"HF_HOME": str(tmp_path / "hf")}
    assert tokenizer_dir("org/name", environ) == snapshot
    assert tokenizer_dir("org/other", environ) is None


# --- the context window: vLLM's checks, in vLLM's order, with vLLM's words --------------------------


def _text(tokens: int, chars: int = 10) -> PromptCount:
    return PromptCount(tokens, True, (PromptSize(tokens, chars),))


WINDOW_CASES = [
    ("fits", CHAT, {}, _text(100), None),
    (
        "max_tokens over the window",
        COMPLETIONS,
        {"max_tokens": 5000},
        _text(1),
        ("max_tokens", 5000),
    ),
    (
        "max_completion_tokens named for chat",
        CHAT,
        {"max_completion_tokens": 3000},
        _text(1),
        ("max_completion_tokens", 3000),
    ),
    ("too many characters", COMPLETIONS, {}, _text(10, 26625), ("input_text", 26625)),
    ("text over the window: at least window + 1", CHAT, {}, _text(5000), ("input_tokens", 2049)),
    (
        "token ids over the window",
        COMPLETIONS,
        {},
        PromptCount(2100, True, (PromptSize(2100),)),
        ("input_tokens", 2100),
    ),
    ("exactly the window leaves no output", COMPLETIONS, {}, _text(2048), ("max_tokens", 0)),
    ("estimated counts are never refused", CHAT, {}, PromptCount(9999, False), None),
]


@pytest.mark.parametrize(
    ("route", "data", "count", "refused"),
    [c[1:] for c in WINDOW_CASES],
    ids=[c[0] for c in WINDOW_CASES],
)
def test_context_window_checks(
    route: Any, data: dict[str, Any], count: PromptCount, refused: tuple[str, int] | None
) -> None:
    error = check(route, data, count, 2048, 13)
    if refused is None:
        assert error is None
        return
    assert error is not None
    assert (error.param, error.value) == refused
    body = json.loads(error.body())["error"]
    assert body["type"] == "BadRequestError"
    assert body["code"] == 400
    assert body["message"].endswith(f"(parameter={refused[0]}, value={refused[1]})")


def test_context_messages_are_vllms_own() -> None:
    # The exact messages vLLM 0.32 answered for the tiny model (max_model_len 2048).
    over = check(COMPLETIONS, {}, PromptCount(2049, True, (PromptSize(2049),)), 2048, 13)
    assert over is not None
    assert json.loads(over.body())["error"]["message"] == (
        "This model's maximum context length is 2048 tokens. However, your prompt contains at "
        "least 2049 input tokens, which exceeds this limit even without any output tokens. Please "
        "reduce the length of the input prompt. (parameter=input_tokens, value=2049)"
    )
    chars = check(CHAT, {}, _text(9, 36050), 2048, 13)
    assert chars is not None
    assert json.loads(chars.body())["error"]["message"] == (
        "This model's maximum context length is 2048 tokens. However, your prompt contains 36050 "
        "characters (more than 26624 characters, which is the upper bound for 2048 input tokens). "
        "Please reduce the length of the input prompt. (parameter=input_text, value=36050)"
    )
