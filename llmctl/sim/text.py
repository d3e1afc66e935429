"""Deterministic pseudo-text and the one token-counting rule shared by prompts and completions.

The rule: split the text on whitespace; a word of n characters counts ceil(n / 4) tokens.
A chat prompt is first rendered with a fixed template (`render_chat`), then counted by the same rule.
Every generated token is one word of at most four characters (plus a separating space), so counting
a completion's text by the rule gives exactly its `completion_tokens`.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

_WORDS = (
    "the", "a", "of", "to", "and", "in", "is", "it", "that", "for", "on", "with", "as", "at",
    "by", "be", "this", "are", "was", "from", "or", "an", "not", "but", "all", "can", "we", "so",
    "if", "one", "two", "new", "old", "way", "data", "load", "fast", "slow", "more", "less",
    "time", "step", "kv", "gpu", "line", "each", "run", "then", "when", "what", "who", "why",
    "how", "much", "many", "good", "bad", "real", "sim", "test", "node", "rate", "peak", "flat",
    "knee", "high", "low", "warm", "cold", "busy", "idle", "fine", "ok", "yes", "no", "next",
    "last", "long", "wide", "deep", "hot", "our", "your", "its", "my", "up", "down", "out",
    "over", "back", "just", "also", "very", "here", "some", "any", "most", "few", "own", "same",
)  # fmt: skip
# Punctuated variants keep sentences readable while staying within four characters.
# Every word has at most four characters, so each is exactly one token by the rule.
_VOCAB = (
    *_WORDS,
    *(w + "." for w in _WORDS if len(w) <= 3),
    *(w + "," for w in _WORDS[:12] if len(w) <= 3),
)
_STREAM_LEN = 4096
# Up to four non-whitespace characters: `str.split()` and `\s` agree on what whitespace is.
_PIECE = re.compile(r"\S{1,4}")


def count_tokens(text: str) -> int:
    """Tokens in `text` by the simulator's documented rule (ceil(len/4) per whitespace word)."""
    return sum((len(word) + 3) // 4 for word in text.split())


def tokenize(text: str) -> list[str]:
    """The tokens of `text` by the same rule: each whitespace word cut into pieces of four
    characters. Equal text gives equal tokens, so prompts that share leading text share leading
    tokens (and KV blocks); a generated token is its word, so a reply sent back in the next turn
    tokenizes to what the engine generated."""
    return _PIECE.findall(text)


def render_chat(messages: Sequence[tuple[str, str]]) -> str:
    """The fixed chat template: `<|role|> content` per message, then `<|assistant|>`."""
    parts = [f"<|{role}|> {content}" for role, content in messages]
    parts.append("<|assistant|>")
    return " ".join(parts)


class TokenStream:
    """A seeded ring of words; request number k reads it from its own seeded offset."""

    def __init__(self, seed: int) -> None:
        rng = random.Random(seed)
        words = [rng.choice(_VOCAB) for _ in range(_STREAM_LEN)]
        # Token i > 0 carries its leading space, so any run of tokens concatenates to text.
        self.first = tuple(words)
        self.rest = tuple(" " + w for w in words)
        self._seed = seed

    def offset(self, request_number: int) -> int:
        return random.Random(self._seed * 1_000_003 + request_number).randrange(_STREAM_LEN)

    def piece(self, offset: int, index: int) -> str:
        """The text of token `index` of a request that starts at `offset`."""
        i = (offset + index) % _STREAM_LEN
        return self.first[i] if index == 0 else self.rest[i]

    def text(self, offset: int, start: int, stop: int) -> str:
        return "".join(self.piece(offset, i) for i in range(start, stop))
