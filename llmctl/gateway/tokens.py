"""Prompt tokens counted at admission, as vLLM counts them, with the model's own tokenizer.

- chat: the chat template applied with add_generation_prompt (chattemplate.py), then tokenized
  without adding special tokens again (the request's `add_special_tokens`, default false);
- completions: each prompt tokenized with special tokens added (`add_special_tokens`, default
  true); token-id prompts are counted as given, tokenizer or not.

Without a tokenizer (a remote engine, the simulator), or for a request this module cannot count as
vLLM would (images, tools), the count is an estimate: 4 characters a token. Every count says which
it is, and so do the metrics.

Tokenizing a long prompt takes milliseconds, long enough to stall every stream this event loop
carries, so prompts over INLINE_CHARS characters are counted in a worker thread (encode_batch lets
go of the GIL while it works); shorter ones cost the loop less than the hop to a thread and back
(benchmarks/tokenize_cost.py).
"""

from __future__ import annotations

import asyncio
import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from tokenizers import Tokenizer

from llmctl.core.modelfiles import TOKENIZER_FILE, tokenizer_dir
from llmctl.core.openai import Route
from llmctl.gateway.chattemplate import ChatTemplate, NotExactError

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
ESTIMATE_RULE = f"estimate: {CHARS_PER_TOKEN} characters a token"
# Prompts up to this many characters are counted on the event loop: below it the count costs the
# loop about what handing it to a thread and back does (~50 µs); above it, much more
# (docs/benchmarks.md#tokenizing-at-admission).
INLINE_CHARS = 256
# Request fields that change the prompt vLLM builds in ways not modelled here.
_NOT_COUNTED = ("truncate_prompt_tokens", "prompt_embeds")


@dataclass(frozen=True, slots=True)
class PromptSize:
    """One prompt as vLLM checks it: its tokens and, for text, its characters."""

    tokens: int
    chars: int | None = None  # None: a token-id prompt


@dataclass(frozen=True, slots=True)
class PromptCount:
    """A request's prompt tokens; `prompts` (one per prompt of a batch) only when `exact`."""

    tokens: int
    exact: bool
    prompts: tuple[PromptSize, ...] = ()

    @property
    def counting(self) -> str:
        """The metrics label: `exact` or `estimated`."""
        return "exact" if self.exact else "estimated"


def estimate(text_chars: int) -> int:
    return math.ceil(text_chars / CHARS_PER_TOKEN)


def _is_ids(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in value
    )


def _prompt_chars(value: Any) -> int:
    """Characters of text in a prompt or messages value, for the estimate."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, dict):
        return sum(_prompt_chars(v) for k, v in value.items() if k in ("content", "text"))
    if isinstance(value, list):
        return sum(_prompt_chars(v) for v in value if not isinstance(v, int))
    return 0


class TokenCounter:
    """Counts prompt tokens with a loaded tokenizer, or estimates them without one."""

    def __init__(
        self,
        tokenizer: Tokenizer | None = None,
        template: ChatTemplate | None = None,
        source: str = "",
    ) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.source = source
        self.max_chars_per_token = 0
        if tokenizer is not None:
            # vLLM tokenizes with its own truncation; a tokenizer.json may carry another.
            tokenizer.no_truncation()
            tokenizer.no_padding()
            vocab = tokenizer.get_vocab(with_added_tokens=True)
            self.max_chars_per_token = max((len(t) for t in vocab), default=0)
        self._pool: ThreadPoolExecutor | None = None

    @classmethod
    def load(cls, ref: str | None) -> TokenCounter:
        """The counter for `ref` (a model folder or a hub id found in the HF cache; None: none).
        A folder without tokenizer.json, or a hub id not in the cache, leaves the estimate."""
        if ref is None:
            return cls()
        folder = tokenizer_dir(ref)
        if folder is None:
            log.warning(
                "no %s for %s on this disk: prompt tokens are estimated", TOKENIZER_FILE, ref
            )
            return cls(source=ref)
        tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        template = ChatTemplate.load(folder)
        if template is None:
            log.warning("%s has no chat template: chat prompt tokens are estimated", folder)
        return cls(tokenizer, template, str(folder))

    @property
    def rule(self) -> str:
        """How prompts are counted, in words (logged at start, shown by /health)."""
        if self.tokenizer is None:
            return ESTIMATE_RULE
        chat = "chat template and " if self.template is not None else ""
        return f"exact: the {chat}tokenizer of {self.source}"

    def describe(self) -> dict[str, object]:
        return {"rule": self.rule, "exact": self.tokenizer is not None}

    # --- counting ----------------------------------------------------------------------------------

    def count(self, route: Route, data: dict[str, Any]) -> PromptCount:
        """The prompt tokens of a checked request body (blocking: see count_async)."""
        try:
            if any(data.get(k) is not None for k in _NOT_COUNTED):
                raise NotExactError("truncation or embeddings")
            if route.body_key == "messages":
                return self._chat(data)
            return self._completion(data)
        except NotExactError:
            return PromptCount(estimate(_prompt_chars(data.get(route.body_key))), False)

    async def count_async(self, route: Route, data: dict[str, Any]) -> PromptCount:
        """`count`, in a worker thread when the prompt is long enough to stall the event loop."""
        if self.tokenizer is None or _prompt_chars(data.get(route.body_key)) <= INLINE_CHARS:
            return self.count(route, data)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool(), self.count, route, data)

    def pool(self) -> ThreadPoolExecutor:
        """The threads long prompts are counted in (made on first use)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tokens")
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _chat(self, data: dict[str, Any]) -> PromptCount:
        if self.tokenizer is None or self.template is None:
            raise NotExactError("no tokenizer or template")
        text = self.template.render(data)
        return self._texts([text], data.get("add_special_tokens", False) is True)

    def _completion(self, data: dict[str, Any]) -> PromptCount:
        prompt = data.get("prompt")
        special = data.get("add_special_tokens", True) is not False
        if isinstance(prompt, str):
            prompts: list[Any] = [prompt]
        elif _is_ids(prompt) and prompt:
            prompts = [prompt]
        elif isinstance(prompt, list) and prompt:
            prompts = prompt
        else:
            raise NotExactError("an empty or unknown prompt")
        if any(not isinstance(p, str) and not (_is_ids(p) and p) for p in prompts):
            raise NotExactError("a prompt that is neither text nor token ids")
        texts = [p for p in prompts if isinstance(p, str)]
        counted = iter(self._texts(texts, special).prompts)
        sizes = tuple(next(counted) if isinstance(p, str) else PromptSize(len(p)) for p in prompts)
        return PromptCount(sum(s.tokens for s in sizes), True, sizes)

    def _texts(self, texts: list[str], special: bool) -> PromptCount:
        if not texts:
            return PromptCount(0, True)
        if self.tokenizer is None:
            raise NotExactError("no tokenizer")
        # encode_batch, even for one text: unlike encode, it lets go of the GIL while it works,
        # so a worker thread's count does not stall the event loop.
        encoded = self.tokenizer.encode_batch(texts, add_special_tokens=special)
        sizes = tuple(PromptSize(len(e.ids), len(t)) for e, t in zip(encoded, texts, strict=True))
        return PromptCount(sum(s.tokens for s in sizes), True, sizes)
