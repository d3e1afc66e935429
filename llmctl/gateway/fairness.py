"""Who waits for a slot, and who gets the next one: the admission queue's two disciplines.

`FifoQueue` (no tenants file): one line, first come first served, as before.

`FairQueue` (tenants and classes):
- Classes are served in priority order: a waiting request of a higher class is admitted before any
  of a lower one, except that a lower class may hold its `share` of all slots while higher classes
  wait (so batch work is slowed, never stopped), and a request that has waited `aging_s` is served
  as if it were of the top class, in arrival order, so none starves.
- A class may keep a `reserve` of all slots free for itself while it is in use (it held or asked
  for a slot in the last RESERVE_IDLE_S): lower classes never take the last free slots it would
  need to reach its reserve. Strict priority alone orders the queue; it cannot help an interactive
  request that arrives just after batch took every slot, which then waits a whole batch service
  time (all of it when batch requests are of one length and free their slots together). The
  reserve is idle headroom that lets it start at once; its price is batch throughput, and only
  while the class is in use.
- Within a class, tenants share by weight with start-time fair queuing: a request's tag is
  max(the class's virtual time, its tenant's last finish tag), the tenant's finish tag then grows
  by 1 / weight, and the smallest tag goes next. A tenant with a thousand requests queued delays
  another tenant's single request by about one slot's service time, and two tenants that both
  saturate get slots in the ratio of their weights.

- When the queue is full, an arrival takes the place of the newest waiter of a lower class, or of
  the tenant of its own class with the longest line for its weight (if that line is longer than the
  arrival's own would be): a flood of batch requests that fills the queue does not get interactive
  requests refused, nor one tenant's backlog another tenant's single request. The waiter pushed out
  is refused as if it had found the queue full.

Both are pure bookkeeping: the admission controller decides whether a slot is free and asks `pick`
for the waiter to give it to (skipping waiters that cannot take one now: a tenant at its own
concurrency limit, a retry that must avoid the only engine with room), and, when the queue is full,
asks `displace` whom an arrival pushes out (FIFO: nobody, as before).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# A class's reserve lapses when it has neither held nor asked for a slot for this long.
RESERVE_IDLE_S = 60.0


@dataclass(eq=False)
class Entry:
    """One waiting request as the queue sees it."""

    tenant: str = ""
    rank: int = 0  # its class's place in priority order (0 first)
    weight: float = 1.0
    arrived: float = 0.0
    item: Any = None  # the admission controller's waiter
    tag: float = 0.0
    seq: int = 0
    live: bool = True


class Queue(Protocol):
    """What the admission controller needs of a queue discipline."""

    def __len__(self) -> int: ...

    def push(self, entry: Entry, *, front: bool = False) -> None: ...

    def remove(self, entry: Entry) -> None: ...

    def pick(self, can_take: Callable[[Entry], bool], now: float, capacity: int) -> Entry | None:
        """The entry that gets the next slot (removed from the queue), or None. `capacity`: all
        the slots there are (for class shares)."""
        ...

    def hold(self, rank: int, delta: int, now: float) -> None:
        """A request of class `rank` took (+1) or gave back (-1) a slot at `now`."""
        ...

    def admits(self, rank: int, capacity: Callable[[], int], now: float) -> bool:
        """Whether a request of class `rank` that finds the queue empty may take a free slot
        (not one a higher class keeps in reserve); `capacity()`: all the slots there are."""
        ...

    def displace(self, arrival: Entry) -> Entry | None:
        """The queue is full: the waiter `arrival` takes the place of (removed from the queue),
        or None when the arrival is the one to refuse."""
        ...

    def entries(self) -> Iterator[Entry]: ...


class FifoQueue:
    """First come, first served (a retry goes to the front)."""

    def __init__(self) -> None:
        self._line: deque[Entry] = deque()

    def __len__(self) -> int:
        return len(self._line)

    def push(self, entry: Entry, *, front: bool = False) -> None:
        if front:
            self._line.appendleft(entry)
        else:
            self._line.append(entry)

    def remove(self, entry: Entry) -> None:
        if entry in self._line:
            self._line.remove(entry)

    def pick(self, can_take: Callable[[Entry], bool], now: float, capacity: int) -> Entry | None:
        # The first that can take a slot: normally the head (only a retry that must avoid the
        # engines with room is passed over).
        line = self._line
        for i, entry in enumerate(line):
            if can_take(entry):
                del line[i]
                return entry
        return None

    def hold(self, rank: int, delta: int, now: float) -> None:
        pass

    def admits(self, rank: int, capacity: Callable[[], int], now: float) -> bool:
        return True

    def displace(self, arrival: Entry) -> Entry | None:
        return None  # first come, first served: a full queue refuses the newcomer

    def entries(self) -> Iterator[Entry]:
        return iter(self._line)


@dataclass
class ClassPolicy:
    """How one class is served (`rank` 0 is served first)."""

    name: str
    rank: int
    share: float = 0.0  # slots it may hold while higher classes wait, as a share of all slots
    aging_s: float | None = None  # after waiting this long, served as if of the top class
    reserve: float = 0.0  # slots lower classes leave free for it while in use, a share of all


@dataclass
class _Tenant:
    finish: float = 0.0
    line: deque[Entry] = field(default_factory=deque)


@dataclass
class _Class:
    policy: ClassPolicy
    virtual: float = 0.0  # the tag of the request served last
    tenants: dict[str, _Tenant] = field(default_factory=dict)
    heads: list[tuple[float, int, str]] = field(default_factory=list)  # (tag, seq, tenant)
    waiting: int = 0
    holding: int = 0  # requests of this class holding a slot (kept by the controller)
    seen: float = -math.inf  # when it last held or asked for a slot (its reserve lapses after)


class FairQueue:
    """Classes by priority with shares and ageing; tenants by weight within a class."""

    def __init__(self, classes: list[ClassPolicy]) -> None:
        ordered = sorted(classes, key=lambda c: c.rank)
        self.classes = [_Class(c) for c in ordered]
        self._by_rank = {c.policy.rank: c for c in self.classes}
        self._reserving = any(c.policy.reserve > 0 for c in self.classes)
        self._urgent: deque[Entry] = deque()  # retries: ahead of everyone
        self._arrivals: deque[Entry] = deque()  # every entry in arrival order (for ageing)
        self._seq = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def waiting(self, rank: int) -> int:
        return self._by_rank[rank].waiting

    def holding(self, rank: int) -> int:
        return self._by_rank[rank].holding

    def hold(self, rank: int, delta: int, now: float) -> None:
        """A request of class `rank` took (+1) or gave back (-1) a slot at `now`."""
        klass = self._by_rank[rank]
        klass.holding += delta
        klass.seen = now

    def admits(self, rank: int, capacity: Callable[[], int], now: float) -> bool:
        """Whether a request of class `rank` may take a free slot: yes unless the free slots are
        all kept in reserve for higher classes in use."""
        return not self._reserving or self._free_beyond_reserves(rank, capacity(), now)

    def _free_beyond_reserves(self, rank: int, capacity: int, now: float) -> bool:
        kept = self._kept(rank, capacity, now)
        return not kept or capacity - sum(c.holding for c in self.classes) > kept

    def _kept(self, rank: int, capacity: int, now: float) -> int:
        """Free slots a request of class `rank` must leave: what each higher class in use lacks
        of its reserve; never all slots (a lower class is slowed, never stopped)."""
        kept = 0
        for c in self.classes:
            if c.policy.rank >= rank:
                break
            if c.policy.reserve > 0 and now - c.seen < RESERVE_IDLE_S:
                kept += max(0, math.floor(c.policy.reserve * capacity + 0.5) - c.holding)
        return min(kept, capacity - 1)

    def push(self, entry: Entry, *, front: bool = False) -> None:
        entry.seq = next(self._seq)
        entry.live = True
        self._size += 1
        if front:
            self._urgent.append(entry)
            return
        klass = self._by_rank[entry.rank]
        tenant = klass.tenants.setdefault(entry.tenant, _Tenant())
        entry.tag = max(klass.virtual, tenant.finish)
        tenant.finish = entry.tag + 1.0 / max(entry.weight, 1e-9)
        if not tenant.line:
            heapq.heappush(klass.heads, (entry.tag, entry.seq, entry.tenant))
        tenant.line.append(entry)
        klass.waiting += 1
        klass.seen = max(klass.seen, entry.arrived)
        self._arrivals.append(entry)

    def remove(self, entry: Entry) -> None:
        """Forget a waiter that left (timed out, cancelled); lazily dropped from the heaps."""
        if not entry.live:
            return
        klass = self._unlink(entry)
        if klass is None:
            return
        tenant = klass.tenants[entry.tenant]
        was_head = bool(tenant.line) and tenant.line[0] is entry
        tenant.line.remove(entry)
        if was_head and tenant.line:
            head = tenant.line[0]
            heapq.heappush(klass.heads, (head.tag, head.seq, entry.tenant))

    def entries(self) -> Iterator[Entry]:
        yield from self._urgent
        yield from (e for e in self._arrivals if e.live)

    def displace(self, arrival: Entry) -> Entry | None:
        victim = self._victim(arrival)
        if victim is None:
            return None
        klass = self._by_rank[victim.rank]
        tenant = klass.tenants[victim.tenant]
        self.remove(victim)
        # It was its tenant's newest: the tenant gets back the virtual time it had reserved.
        tenant.finish = victim.tag
        return victim

    def _victim(self, arrival: Entry) -> Entry | None:
        """The newest waiter of the longest line (for its tenant's weight) in the lowest class
        that waits; only from a class below the arrival's, or from its own class when that line
        is longer than the arrival's tenant's would be with the arrival in it."""
        klass = next((c for c in reversed(self.classes) if c.waiting), None)
        if klass is None or klass.policy.rank < arrival.rank:
            return None
        lines = [(name, t) for name, t in klass.tenants.items() if t.line]
        name, longest = max(lines, key=lambda item: len(item[1].line) / item[1].line[-1].weight)
        if klass.policy.rank == arrival.rank:
            own = klass.tenants.get(arrival.tenant)
            after = (len(own.line) if own is not None else 0) + 1
            if name == arrival.tenant or len(longest.line) / longest.line[-1].weight <= after / (
                max(arrival.weight, 1e-9)
            ):
                return None
        return longest.line[-1]

    def pick(self, can_take: Callable[[Entry], bool], now: float, capacity: int) -> Entry | None:
        for entry in self._urgent:
            if can_take(entry):
                self._take(entry)
                return entry
        aged = self._aged(can_take, now)
        if aged is not None:
            self._take(aged)
            return aged
        # A lower class below its guaranteed share comes first; then strict priority, leaving
        # higher classes' reserves free.
        entitled, ordered = self._order(capacity)
        for klass in ordered:
            rank = klass.policy.rank
            if (
                self._reserving
                and klass not in entitled
                and not self._free_beyond_reserves(rank, capacity, now)
            ):
                continue
            head = self._fair_head(klass, can_take)
            if head is not None:
                self._take(head)
                return head
        return None

    # --- choosing ------------------------------------------------------------------------------------

    def _order(self, capacity: int) -> tuple[list[_Class], list[_Class]]:
        """The classes below their share of `capacity` while a higher one waits; and all classes
        in the order to try: those first, then all by rank."""
        entitled = [
            c
            for i, c in enumerate(self.classes)
            if c.waiting
            and c.policy.share > 0
            and any(h.waiting for h in self.classes[:i])
            and c.holding < c.policy.share * capacity
        ]
        return entitled, entitled + [c for c in self.classes if c not in entitled]

    def _aged(self, can_take: Callable[[Entry], bool], now: float) -> Entry | None:
        """The oldest waiter of a lower class that has waited its class's `aging_s`."""
        agings = [c.policy.aging_s for c in self.classes[1:] if c.policy.aging_s is not None]
        if not agings:
            return None
        shortest = min(agings)
        arrivals = self._arrivals
        while arrivals and not arrivals[0].live:
            arrivals.popleft()
        for entry in arrivals:
            if now - entry.arrived < shortest:
                return None  # in arrival order: nobody after this one has waited long enough
            if not entry.live or entry.rank == self.classes[0].policy.rank:
                continue
            aging = self._by_rank[entry.rank].policy.aging_s
            if aging is not None and now - entry.arrived >= aging and can_take(entry):
                return entry
        return None

    def _fair_head(self, klass: _Class, can_take: Callable[[Entry], bool]) -> Entry | None:
        skipped: list[tuple[float, int, str]] = []
        found: Entry | None = None
        heads = klass.heads
        while heads:
            tag, seq, name = heapq.heappop(heads)
            tenant = klass.tenants.get(name)
            if tenant is None or not tenant.line or tenant.line[0].seq != seq:
                continue  # stale
            head = tenant.line[0]
            if can_take(head):
                found = head
                break
            skipped.append((tag, seq, name))
        for item in skipped:
            heapq.heappush(heads, item)
        return found

    def _unlink(self, entry: Entry) -> _Class | None:
        """Mark `entry` gone and uncount it; its class, unless it waited in the urgent line."""
        entry.live = False
        self._size -= 1
        if entry in self._urgent:
            self._urgent.remove(entry)
            return None
        klass = self._by_rank[entry.rank]
        klass.waiting -= 1
        return klass

    def _take(self, entry: Entry) -> None:
        klass = self._unlink(entry)
        if klass is None:
            return
        klass.virtual = max(klass.virtual, entry.tag)
        tenant = klass.tenants[entry.tenant]
        tenant.line.remove(entry)
        if tenant.line:
            head = tenant.line[0]
            heapq.heappush(klass.heads, (head.tag, head.seq, entry.tenant))
        elif tenant.finish <= klass.virtual:
            del klass.tenants[entry.tenant]  # idle: it restarts at the class's virtual time
