"""The gateway's engine choice per request: the configured policy (routing.py), the affinity index
and the `routed` counter, behind the one callable the admission controller calls at grant time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llmctl.gateway.affinity import AffinityIndex, chain, prompt_text
from llmctl.gateway.engines import Engine, EnginePool
from llmctl.gateway.metrics import GatewayMetrics
from llmctl.gateway.routing import Policy, Reason, choose, least_loaded

SESSION_HEADER = "X-Session-Id"


@dataclass(frozen=True, slots=True)
class RouteHint:
    """What prefix affinity knows about a request: its prompt's chunk hashes and its session."""

    hashes: list[int]
    session: str | None


@dataclass(frozen=True, slots=True)
class Retry:
    """The hint of a request sent once more after its engine failed: it goes to the least loaded
    of the other engines (counted as reason `retry`), and a round robin's turn does not move."""

    hint: RouteHint | None


class EngineRouter:
    """Chooses among the engines with room; counts every choice by engine and reason."""

    def __init__(
        self,
        pool: EnginePool,
        policy: Policy,
        slack: float,
        limit: Callable[[], int],
        metrics: GatewayMetrics,
    ) -> None:
        self.pool = pool
        self.policy = policy
        self.slack = slack
        self._limit = limit
        self._metrics = metrics
        self.index = AffinityIndex()
        self._turn = 0
        # The routed counter's children by (engine, reason): a label lookup costs more than the
        # increment, on every request.
        self._routed: dict[tuple[str, str], Any] = {}
        pool.on_leave = lambda engine: self.index.forget(engine.name)

    def hint(self, body: dict[str, Any], body_key: str, session: str | None) -> RouteHint | None:
        """The hint for one request (None unless the policy uses it: no work per request)."""
        if self.policy != "prefix_affinity":
            return None
        return RouteHint(chain(prompt_text(body, body_key)), session or None)

    def __call__(self, candidates: list[Engine], hint: Any) -> Engine:
        if isinstance(hint, Retry):
            loads = self.pool.loads(candidates, self._limit())
            best = least_loaded(loads, self._turn).name
            engine = next(e for e in candidates if e.name == best)
            if hint.hint is not None:
                self.index.record(hint.hint.hashes, engine.name, hint.hint.session)
            self._metrics.routed.labels(engine.name, "retry").inc()
            return engine
        preferred = None
        reason: Reason
        if isinstance(hint, RouteHint):
            preferred = self.index.lookup(hint.hashes, hint.session)
        if len(candidates) == 1 and self.policy != "prefix_affinity":
            engine = candidates[0]
            reason = "round_robin" if self.policy == "round_robin" else "least_loaded"
        else:
            loads = self.pool.loads(candidates, self._limit())
            routable = self.pool.routable()
            choice = choose(
                self.policy,
                loads,
                turn=self._turn,
                preferred=preferred,
                slack=self.slack,
                total_active=sum(e.active for e in routable),
                engines=len(routable),
            )
            engine = next(e for e in candidates if e.name == choice.engine)
            reason = choice.reason
        self._turn += 1
        if isinstance(hint, RouteHint):
            self.index.record(hint.hashes, engine.name, hint.session)
        key = (engine.name, reason)
        child = self._routed.get(key)
        if child is None:
            child = self._routed[key] = self._metrics.routed.labels(engine.name, reason)
        child.inc()
        return engine
