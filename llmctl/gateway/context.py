"""The context-window checks vLLM (0.32) makes before a request runs, made at the gateway instead.

In vLLM's order (entrypoints' `build_tok_params`, then renderers/params.py per prompt, then the
sampling parameters), each refusal a 400 with vLLM's own message and body:

1. `max_tokens` (chat: `max_completion_tokens` when given) above max_model_len;
2. a text prompt longer than max_model_len x the longest token (in characters) of the vocabulary:
   refused before it is tokenized;
3. a prompt of more than max_model_len tokens; vLLM tokenizes text with truncation at
   max_model_len + 1, so it reports "at least max_model_len + 1" for every longer text;
4. a prompt of exactly max_model_len tokens, which leaves 0 tokens to generate.

The gateway refuses only what it counted exactly, for a model whose window the engine listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from llmctl.core.openai import Route
from llmctl.gateway.tokens import PromptCount


@dataclass(frozen=True)
class ContextError:
    """One of vLLM's refusals: its message (before vLLM's parameter suffix), parameter, value."""

    message: str
    param: str
    value: int

    def body(self) -> bytes:
        """The 400 body exactly as vLLM writes it."""
        message = f"{self.message} (parameter={self.param}, value={self.value})"
        error = {"message": message, "type": "BadRequestError", "param": self.param, "code": 400}
        return json.dumps({"error": error}).encode()


def _output_limit(route: Route, data: dict[str, Any]) -> tuple[str, int | None]:
    names = ("max_completion_tokens", "max_tokens") if route.kind == "chat" else ("max_tokens",)
    for name in names:
        value = data.get(name)
        if value is not None:
            return name, value if isinstance(value, int) and not isinstance(value, bool) else None
    return names[-1], None


def check(
    route: Route,
    data: dict[str, Any],
    count: PromptCount,
    max_model_len: int | None,
    max_chars_per_token: int,
) -> ContextError | None:
    """vLLM's refusal of this request for a model of `max_model_len` tokens (None: no engine
    listed the model's window, and nothing is refused), or None."""
    if max_model_len is None:
        return None
    window = max_model_len
    param, output = _output_limit(route, data)
    if output is not None and output > window:
        return ContextError(
            f"{param}={output} cannot be greater than max_model_len={window}. "
            "Please request fewer output tokens.",
            param,
            output,
        )
    if not count.exact:
        return None
    for prompt in count.prompts:
        chars_limit = window * max_chars_per_token
        if prompt.chars is not None and max_chars_per_token and prompt.chars > chars_limit:
            return ContextError(
                f"This model's maximum context length is {window} tokens. However, your prompt "
                f"contains {prompt.chars} characters (more than {chars_limit} characters, which "
                f"is the upper bound for {window} input tokens). Please reduce the length of "
                "the input prompt.",
                "input_text",
                prompt.chars,
            )
        tokens = prompt.tokens
        if prompt.chars is not None:
            tokens = min(tokens, window + 1)  # vLLM's truncation at window + 1
        if tokens > window:
            at_least = "at least " if tokens == window + 1 else ""
            return ContextError(
                f"This model's maximum context length is {window} tokens. However, your prompt "
                f"contains {at_least}{tokens} input tokens, which exceeds this limit even "
                "without any output tokens. Please reduce the length of the input prompt.",
                "input_tokens",
                tokens,
            )
    if any(p.tokens == window for p in count.prompts):
        return ContextError("max_tokens must be at least 1, got 0.", "max_tokens", 0)
    return None
