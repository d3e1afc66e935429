"""A request's claim on its tenant's limits: checked and charged on arrival, settled at the end.

Requests per minute are charged 1. Tokens per minute are charged prompt plus output: the prompt as
the gateway counted it at admission (tokens.py: exact with the model's tokenizer, else estimated
from its characters) and the output by the request's `max_tokens` (or the tenant's
`default_max_tokens`), then corrected to the usage the engine reports. A refusal is a 429
whose Retry-After comes from the limit's log, with OpenAI's `x-ratelimit-*` headers on it and on
every answer of a limited tenant.

A request whose limit frees within HOLD_S waits for it instead of being refused (`claim_held`):
Retry-After is whole seconds, and rounded to the nearest it is within 20 % of the real wait only
from 2.5 s on; a sub-second wait would read "1", five times too long. So every 429 names a wait
it gets right, and a client that retries when told (up to half a second early) is let in.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass, field
from typing import Any

from llmctl.gateway.ratelimit import Charge, WindowLimit, duration_text
from llmctl.gateway.tenants import Tenant


def estimate_tokens(data: dict[str, Any], prompt_tokens: int, default_max_tokens: int) -> int:
    """The prompt's tokens plus the most output the request may produce."""
    output = data.get("max_tokens")
    if output is None:
        output = data.get("max_completion_tokens")
    if not isinstance(output, int) or isinstance(output, bool) or output < 1:
        output = default_max_tokens
    return prompt_tokens + output


@dataclass
class Claim:
    """What one request charged; `settle` corrects the token charge to the real usage."""

    tenant: Tenant
    estimate: int
    charges: list[Charge] = field(default_factory=list)
    tokens: Charge | None = None

    def settle(self, used_tokens: int | None, now: float) -> None:
        if self.tokens is not None and used_tokens is not None:
            self.tokens.correct(used_tokens, now)


@dataclass(frozen=True)
class Refusal:
    """The tenant is at a limit: which one, and when a retry will pass."""

    limit: str  # "requests" or "tokens"
    retry_after_s: float


def _limits(tenant: Tenant) -> list[tuple[str, WindowLimit]]:
    return [
        (name, limit)
        for name, limit in (("requests", tenant.requests), ("tokens", tenant.tokens))
        if limit
    ]


def claim(tenant: Tenant, estimate: int, now: float) -> Claim | Refusal:
    """Charge one request, or say which limit refuses it (only a limit already reached does)."""
    limits = _limits(tenant)
    blocked = [(name, limit.wait_s(now)) for name, limit in limits if not limit.allows(now)]
    if blocked:
        name, wait = max(blocked, key=lambda item: item[1])
        return Refusal(name, wait)
    result = Claim(tenant, estimate)
    for name, limit in limits:
        charge = limit.charge(1 if name == "requests" else estimate, now)
        result.charges.append(charge)
        if name == "tokens":
            result.tokens = charge
    return result


# Shorter waits are held rather than refused (see above); never held for more than HOLD_MAX_S in all
# (the tenant's own requests competing for what frees).
HOLD_S = 2.5
HOLD_MAX_S = 4 * HOLD_S
_WAKE_S = 0.001  # past the moment a charge leaves the window


async def claim_held(tenant: Tenant, estimate: int) -> Claim | Refusal:
    """`claim`, waiting out a limit that frees within HOLD_S."""
    start = time.monotonic()
    while True:
        now = time.monotonic()
        result = claim(tenant, estimate, now)
        if isinstance(result, Claim):
            return result
        wait = result.retry_after_s
        if wait > HOLD_S or now + wait - start > HOLD_MAX_S:
            return result
        await asyncio.sleep(wait + _WAKE_S)


def retry_after(refusal: Refusal) -> int:
    """Retry-After in whole seconds: the nearest to the wait (never 0)."""
    return max(1, math.floor(refusal.retry_after_s + 0.5))


def headers(tenant: Tenant, now: float) -> dict[str, str]:
    """OpenAI's rate-limit headers for the tenant's limits as they stand."""
    out: dict[str, str] = {}
    for name, limit in _limits(tenant):
        out[f"x-ratelimit-limit-{name}"] = str(int(limit.limit))
        out[f"x-ratelimit-remaining-{name}"] = str(int(limit.remaining(now)))
        reset = limit.wait_s(now) if not limit.allows(now) else limit.reset_s(now)
        out[f"x-ratelimit-reset-{name}"] = duration_text(reset)
    return out
