"""The engines behind the gateway: each one's limit, in-flight count, readiness and load signals.

An engine is in rotation while its last probe found it ready; a refused connection takes it out at
once (the probe brings it back). An engine that comes back is re-admitted gradually: its effective
limit climbs from 1 to its full limit over the pool's `ramp_s`, so a freshly restarted engine is
not handed a whole batch in one instant. Engines can join and leave (a DNS name re-resolved): one that leaves
keeps its in-flight requests until they end, but gets no new ones.

Single event loop, no locks: every change happens between two awaits, as in the admission
controller, which is the only writer of `active`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from llmctl.core.config import parse_upstream
from llmctl.gateway.routing import EngineLoad


def engine_name(url: str) -> str:
    """The `engine` label of an upstream: its host:port."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname or url
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(eq=False)
class Engine:
    """One upstream engine."""

    url: str
    own_limit: int | None = None  # from `?max_active=N`; None: the gateway's MAX_ACTIVE
    name: str = ""
    active: int = 0
    ready: bool | None = None  # None: not probed yet (routable, but not reported healthy)
    detail: str = "not probed yet"
    waiting: float = 0.0
    kv_usage: float = 0.0
    preemptions: float | None = None  # vllm:num_preemptions_total as last polled
    polled: bool = False  # its /metrics answered the last poll with the load signals
    member: bool = True  # False once DNS no longer lists it (it drains)
    back_at: float | None = None  # monotonic time it last came back (the ramp starts there)
    # Whether a probe ever found it ready: only an engine that was serving and comes back ramps.
    # One the gateway saw first while it was still loading (every start: the gateway is up in a
    # second, the engine in minutes) takes its full limit at once.
    was_ready: bool = False
    routed: int = 0
    # True once a stream from it carried the usage the gateway asks for: its later streams are
    # counted from that frame instead of a text scan of every chunk.
    sends_usage: bool = False
    # Context window per model id, as its last good probe listed them (vLLM's max_model_len).
    windows: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.name = self.name or engine_name(self.url)

    def limit(self, default: int) -> int:
        return self.own_limit if self.own_limit is not None else default

    def effective_limit(self, default: int, now: float, ramp_s: float = 10.0) -> int:
        """The limit now: ramping up for `ramp_s` after the engine came back."""
        full = self.limit(default)
        if self.back_at is None:
            return full
        ramp = (now - self.back_at) / ramp_s if ramp_s > 0 else 1.0
        if ramp >= 1:
            self.back_at = None
            return full
        return max(1, math.floor(full * ramp))

    def in_rotation(self) -> bool:
        """Routable: a member not known to be down (an engine not probed yet is tried)."""
        return self.ready is not False and self.member

    def set_ready(self, ready: bool, detail: str) -> bool:
        """Record a probe's verdict (or a refused connection); True when readiness changed. An
        engine that comes back after being down (ready before, then not) starts its ramp."""
        changed = ready != self.ready
        if ready and self.ready is False and self.was_ready:
            self.back_at = time.monotonic()
        self.ready, self.detail = ready, detail
        self.was_ready = self.was_ready or ready
        return changed


@dataclass
class EnginePool:
    """Every engine the gateway knows, in a stable order (the order routing ties break by)."""

    engines: list[Engine] = field(default_factory=list)
    ramp_s: float = 10.0  # an engine that comes back reaches its full limit over this long
    # Called with an engine that left (after its last request), so indexes can forget it.
    on_leave: Callable[[Engine], None] | None = None

    @classmethod
    def of(cls, upstreams: Iterable[str], ramp_s: float = 10.0) -> EnginePool:
        engines = []
        for spec in upstreams:
            url, limit = parse_upstream(spec)
            engines.append(Engine(url, limit))
        return cls(engines, ramp_s)

    def __iter__(self) -> Iterator[Engine]:
        return iter(self.engines)

    def __len__(self) -> int:
        return len(self.engines)

    def by_name(self, name: str) -> Engine | None:
        return next((e for e in self.engines if e.name == name), None)

    def ready(self) -> bool:
        """Whether any member engine answered its last probe ready (what /health reports)."""
        return any(e.ready is True and e.member for e in self.engines)

    def routable(self) -> list[Engine]:
        """Engines a request may go to: those in rotation; when none is (every probe failed), all
        members, since a probe can be wrong and a refused connection answers just as fast."""
        members = [e for e in self.engines if e.member]
        in_rotation = [e for e in members if e.in_rotation()]
        return in_rotation or members

    def candidates(self, default_limit: int, exclude: frozenset[str] = frozenset()) -> list[Engine]:
        """Engines that can take one more request now."""
        now = time.monotonic()
        return [
            e
            for e in self.routable()
            if e.name not in exclude
            and e.active < e.effective_limit(default_limit, now, self.ramp_s)
        ]

    def loads(self, engines: Iterable[Engine], default_limit: int) -> list[EngineLoad]:
        now = time.monotonic()
        return [
            EngineLoad(
                e.name, e.active, e.effective_limit(default_limit, now), e.waiting, e.kv_usage
            )
            for e in engines
        ]

    def window(self, model: str) -> int | None:
        """The context window of `model`: the largest any member engine lists (a request too long
        for that is too long for all); None when none lists one."""
        found = [e.windows[model] for e in self.engines if e.member and model in e.windows]
        return max(found) if found else None

    def capacity(self, default_limit: int) -> int:
        """Requests the routable engines may hold at once (full limits, no ramp)."""
        return sum(e.limit(default_limit) for e in self.routable())

    def reconcile(self, urls: Iterable[str]) -> tuple[list[Engine], list[Engine]]:
        """Make the members exactly `urls` (a DNS answer): returns (joined, left). A leaving
        engine stays listed while it has requests in flight."""
        wanted = {engine_name(u): u for u in urls}
        joined = [Engine(url) for name, url in wanted.items() if self.by_name(name) is None]
        left = []
        for engine in self.engines:
            member = engine.name in wanted
            if engine.member and not member:
                left.append(engine)
            engine.member = member
        self.engines += joined
        self.prune()
        return joined, left

    def prune(self) -> None:
        """Forget engines that left and have nothing in flight any more."""
        gone = [e for e in self.engines if not e.member and e.active == 0]
        if gone:
            self.engines = [e for e in self.engines if e.member or e.active > 0]
            if self.on_leave is not None:
                for engine in gone:
                    self.on_leave(engine)
