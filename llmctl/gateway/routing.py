"""Which engine serves a request: pure routing policies over a snapshot of the engines' load.

A policy sees only engines that can take a request now (ready, in rotation, a free slot under their
own limit) and returns one of them; it never blocks and never scrapes anything. Load is the
gateway's own in-flight count over the engine's limit, plus what the engine itself reports on its
`/metrics` (requests waiting inside vLLM, KV-cache use), polled in the background.

- `round_robin`: the next engine in turn.
- `least_loaded`: the lowest load score (ties: fewest in flight, then in turn, so an idle pool
  spreads new work instead of always picking the first engine).
- `prefix_affinity`: the engine that most recently served the longest matching prompt prefix (or
  the same session), while its load stays within `slack` of the least loaded and its in-flight
  count within `bound` times the pool's mean (consistent hashing with bounded loads, Mirrokni et
  al. 2018: the busiest engine holds at most ceil(bound x mean)); else the least loaded.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Policy = Literal["round_robin", "least_loaded", "prefix_affinity"]
POLICIES: tuple[Policy, ...] = ("round_robin", "least_loaded", "prefix_affinity")

# Why an engine was chosen: the `reason` label of llmctl_gateway_routed_total.
Reason = Literal["round_robin", "least_loaded", "affinity", "affinity_overloaded", "retry"]
REASONS: tuple[Reason, ...] = (
    "round_robin",
    "least_loaded",
    "affinity",
    "affinity_overloaded",
    "retry",
)

# Weights of the engine's own signals in the load score (in units of "one full engine").
WAITING_WEIGHT = 0.5  # each request queued inside vLLM counts half a slot's worth, per slot
KV_WEIGHT = 0.5  # a full KV cache adds half an engine's worth of load
# prefix_affinity: the preferred engine may hold up to this many times the mean in flight.
BOUND = 1.25


@dataclass(frozen=True)
class EngineLoad:
    """One candidate engine as a policy sees it."""

    name: str
    active: int
    limit: int
    waiting: float = 0.0  # vllm:num_requests_waiting (0 when unknown)
    kv_usage: float = 0.0  # vllm:kv_cache_usage_perc, 0..1 (0 when unknown)

    @property
    def score(self) -> float:
        """Load as a share of the engine: 0 idle, 1 all slots busy, more when it queues itself."""
        limit = max(self.limit, 1)
        return (
            self.active / limit + WAITING_WEIGHT * self.waiting / limit + KV_WEIGHT * self.kv_usage
        )


@dataclass(frozen=True)
class Choice:
    engine: str
    reason: Reason


def least_loaded(candidates: Sequence[EngineLoad], turn: int = 0) -> EngineLoad:
    n = len(candidates)
    return min(
        enumerate(candidates), key=lambda ie: (ie[1].score, ie[1].active, (ie[0] - turn) % n)
    )[1]


def within_bound(active: int, total_active: int, engines: int, bound: float) -> bool:
    """Whether one more request on an engine holding `active` keeps it within `bound` times the
    mean in-flight count of `engines` engines (`total_active` in flight in all, this one to come
    included in the mean); always true without a count of engines."""
    if engines <= 0:
        return True
    return active + 1 <= max(1, math.ceil(bound * (total_active + 1) / engines))


def choose(
    policy: Policy,
    candidates: Sequence[EngineLoad],
    *,
    turn: int = 0,
    preferred: str | None = None,
    slack: float = 0.25,
    total_active: int = 0,
    engines: int = 0,
    bound: float = BOUND,
) -> Choice:
    """The engine for one request among `candidates` (non-empty, in a stable order).

    `turn`: a counter the caller advances per request (round robin). `preferred`: the engine the
    affinity index names for this request's prefix or session, if any. `slack`: how much more
    loaded (in score) than the least loaded the preferred engine may be and still be chosen.
    `total_active`, `engines`: requests in flight at, and the number of, every routable engine
    (candidates or not), for the `bound` on the preferred engine's share."""
    if not candidates:
        raise ValueError("no candidate engine")
    if policy == "round_robin":
        return Choice(candidates[turn % len(candidates)].name, "round_robin")
    best = least_loaded(candidates, turn)
    if policy == "prefix_affinity" and preferred is not None:
        match = next((e for e in candidates if e.name == preferred), None)
        if (
            match is not None
            and match.score <= best.score + slack
            and within_bound(match.active, total_active, engines, bound)
        ):
            return Choice(match.name, "affinity")
        return Choice(best.name, "affinity_overloaded")
    return Choice(best.name, "least_loaded")
