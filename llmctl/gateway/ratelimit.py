"""Per-tenant rate limits that hold over every 60 s window and refuse only at the limit.

A `WindowLimit` keeps the log of what was charged in the last `window_s` seconds. A request is let
in while the window's total is under the limit (so a tenant under its limit is never refused), and
charged at once: tokens on an estimate (prompt plus `max_tokens`), corrected from the usage the
engine reports when the request ends. Over any window the total can pass the limit by at most the
last request's overshoot of its estimate. A token bucket would not hold the limit over 60 s
windows: a full bucket plus a minute of refill is twice the limit.

When a request is refused, `wait_s` is exact for the log as it stands: the time until enough of the
oldest charges leave the window to bring the total under the limit (corrections that shrink a
charge in flight can only make a retry succeed sooner).
"""

from __future__ import annotations

import math
from collections import deque


class Charge:
    """One entry of a limit's log; `correct` replaces its amount."""

    __slots__ = ("amount", "at", "limit")

    def __init__(self, limit: WindowLimit, at: float, amount: float) -> None:
        self.limit = limit
        self.at = at
        self.amount = amount

    def correct(self, amount: float, now: float) -> None:
        self.limit._correct(self, amount, now)


class WindowLimit:
    """At most `limit` units charged in any `window_s` seconds."""

    def __init__(self, limit: float, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._log: deque[Charge] = deque()
        self._used = 0.0

    def _expire(self, now: float) -> None:
        log = self._log
        edge = now - self.window_s
        while log and log[0].at <= edge:
            self._used -= log.popleft().amount
        if not log:
            self._used = 0.0  # no float drift once empty

    def used(self, now: float) -> float:
        self._expire(now)
        return self._used

    def remaining(self, now: float) -> float:
        return max(0.0, self.limit - self.used(now))

    def allows(self, now: float) -> bool:
        return self.used(now) < self.limit

    def charge(self, amount: float, now: float) -> Charge:
        self._expire(now)
        entry = Charge(self, now, amount)
        self._log.append(entry)
        self._used += amount
        return entry

    def _correct(self, entry: Charge, amount: float, now: float) -> None:
        self._expire(now)
        if entry.at > now - self.window_s:  # still in the window: its amount counts there
            self._used += amount - entry.amount
        entry.amount = amount

    def wait_s(self, now: float) -> float:
        """Seconds until the total is under the limit again (0 when it is now)."""
        used = self.used(now)
        if used < self.limit:
            return 0.0
        for entry in self._log:
            used -= entry.amount
            if used < self.limit:
                return max(0.0, entry.at + self.window_s - now)
        return self.window_s

    def reset_s(self, now: float) -> float:
        """Seconds until every charge now in the window has left it (the limit fully reset)."""
        self._expire(now)
        return max(0.0, self._log[-1].at + self.window_s - now) if self._log else 0.0


def duration_text(seconds: float) -> str:
    """OpenAI's `x-ratelimit-reset-*` form: `350ms`, `1.5s`, `6m0s`."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 10) / 10:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"
