"""The response cache's store and its key: exact requests, bounded by bytes (LRU) and by age.

Only deterministic requests are cached: greedy decoding (`temperature` 0) or an explicit `seed`,
asking for nothing the stored answer cannot carry (log-probabilities, tools, token ids). The key is
a hash of the tenant (or none), the route and the canonical request body (keys sorted, compact),
with `stream` and `stream_options` left out, so a streamed answer serves a whole one and back, and
no entry is ever shared across tenants.

Single event loop, no locks. Age is checked on every lookup, and expired entries are swept from
the oldest on every store, so neither bound waits for traffic to hold.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmctl.gateway.answers import Answer

# Body fields that ask for what a stored answer does not keep, or that make an answer vary.
_UNCACHEABLE = (
    "logprobs",
    "top_logprobs",
    "prompt_logprobs",
    "tools",
    "functions",
    "return_token_ids",
    "return_tokens_as_token_ids",
    "best_of",
    "use_beam_search",
)
# Keys that change how the answer is delivered, not what it is.
_DELIVERY = ("stream", "stream_options")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cacheable(data: dict[str, Any]) -> bool:
    """Whether a request's answer is determined by its body: greedy, or seeded, and asking for
    nothing a stored answer leaves out."""
    if any(data.get(k) not in (None, False, 0) for k in _UNCACHEABLE):
        return False
    temperature = data.get("temperature")
    greedy = _number(temperature) and temperature == 0
    seeded = isinstance(data.get("seed"), int) and not isinstance(data.get("seed"), bool)
    return greedy or seeded


def cache_key(tenant: str | None, route: str, data: dict[str, Any]) -> str:
    """The entry's key: tenant, route and the canonical body without the delivery fields."""
    body = {k: v for k, v in data.items() if k not in _DELIVERY}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256()
    for part in (tenant or "", route, canonical):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Entry:
    answer: Answer
    size: int
    stored_at: float


class ResponseCache:
    """Answers by key, least recently used first out, none older than `ttl_s`."""

    def __init__(
        self,
        max_bytes: int,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[str, int], None] = lambda reason, n: None,
    ) -> None:
        self.max_bytes = max_bytes
        self.ttl_s = ttl_s
        self._clock = clock
        self._on_evict = on_evict
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._ages: deque[tuple[float, str]] = deque()  # (stored_at, key), oldest first
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Answer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._clock() - entry.stored_at >= self.ttl_s:
            self._drop(key, "age")
            return None
        self._entries.move_to_end(key)
        return entry.answer

    def put(self, key: str, answer: Answer) -> bool:
        """Store `answer` (replacing any entry of `key`); False when it alone exceeds the bound."""
        now = self._clock()
        self._sweep(now)
        size = answer.size + len(key)
        if size > self.max_bytes:
            return False
        if key in self._entries:
            self._drop(key, None)
        self._entries[key] = Entry(answer, size, now)
        self._ages.append((now, key))
        self.bytes += size
        while self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)), "size")
        return True

    def purge(self) -> tuple[int, int]:
        """Drop everything; (entries, bytes) dropped."""
        dropped = (len(self._entries), self.bytes)
        if self._entries:
            self._on_evict("purge", len(self._entries))
        self._entries.clear()
        self._ages.clear()
        self.bytes = 0
        return dropped

    def _sweep(self, now: float) -> None:
        while self._ages and now - self._ages[0][0] >= self.ttl_s:
            stored_at, key = self._ages.popleft()
            entry = self._entries.get(key)
            if entry is not None and entry.stored_at == stored_at:
                self._drop(key, "age")
        # Keys stored again leave stale age records behind; keep the deque near the entries.
        if len(self._ages) > 2 * len(self._entries) + 64:
            self._ages = deque(
                (at, k) for at, k in self._ages if (e := self._entries.get(k)) and e.stored_at == at
            )

    def _drop(self, key: str, reason: str | None) -> None:
        entry = self._entries.pop(key)
        self.bytes -= entry.size
        if reason is not None:
            self._on_evict(reason, 1)
