"""Which engine most likely holds a request's prompt prefix in its KV cache.

The gateway cannot see an engine's prefix cache, so it remembers where it sent what: each routed
prompt is cut into fixed-size chunks, each chunk's hash chained to the previous one (as vLLM chains
its KV block hashes), and every chain hash maps to the engine that served it, in a bounded LRU. A
new request's engine is the one that served its longest matching prefix: the earlier turns of a
conversation, or a system prompt shared by many users. A session id (the `X-Session-Id` header)
pins a conversation to one engine whatever its text.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

CHUNK_CHARS = 256  # about 64 tokens: a few of vLLM's 16-token blocks
MAX_CHUNKS = 256  # the first 64 K characters decide; longer prompts share that much or differ


def prompt_text(body: dict[str, Any], body_key: str) -> str:
    """The prompt as text in a stable form: chat messages as `role: content` lines, in order."""
    value = body.get(body_key)
    if isinstance(value, str):
        return value
    if body_key != "messages" or not isinstance(value, list):
        return repr(value)
    lines = []
    for message in value:
        if isinstance(message, dict):
            content = message.get("content")
            text = content if isinstance(content, str) else repr(content)
            lines.append(f"{message.get('role')}: {text}")
    return "\n".join(lines)


def chain(text: str) -> list[int]:
    """The chained hash of every whole chunk of `text` (a partial last chunk is not cacheable)."""
    hashes: list[int] = []
    previous = 0
    for start in range(0, min(len(text), CHUNK_CHARS * MAX_CHUNKS), CHUNK_CHARS):
        piece = text[start : start + CHUNK_CHARS]
        if len(piece) < CHUNK_CHARS:
            break
        previous = hash((previous, piece))
        hashes.append(previous)
    return hashes


class AffinityIndex:
    """Chain hash -> engine, and session -> engine, each a bounded LRU."""

    def __init__(self, capacity: int = 200_000, sessions: int = 50_000) -> None:
        self._prefixes: OrderedDict[int, str] = OrderedDict()
        self._sessions: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity
        self._session_capacity = sessions

    def __len__(self) -> int:
        return len(self._prefixes)

    def lookup(self, hashes: list[int], session: str | None = None) -> str | None:
        """The engine of the session, else of the longest prefix seen before, else None."""
        if session is not None:
            engine = self._sessions.get(session)
            if engine is not None:
                return engine
        found = None
        for value in hashes:
            engine = self._prefixes.get(value)
            if engine is None:
                break
            found = engine
        return found

    def record(self, hashes: list[int], engine: str, session: str | None = None) -> None:
        """`engine` now holds these prefixes (and serves this session)."""
        prefixes = self._prefixes
        for value in hashes:
            prefixes[value] = engine
            prefixes.move_to_end(value)
        while len(prefixes) > self._capacity:
            prefixes.popitem(last=False)
        if session is not None:
            self._sessions[session] = engine
            self._sessions.move_to_end(session)
            while len(self._sessions) > self._session_capacity:
                self._sessions.popitem(last=False)

    def forget(self, engine: str) -> None:
        """Drop everything about `engine` (it left the pool)."""
        self._prefixes = OrderedDict((k, v) for k, v in self._prefixes.items() if v != engine)
        self._sessions = OrderedDict((k, v) for k, v in self._sessions.items() if v != engine)
