"""The paged KV cache with vLLM v1's automatic prefix caching.

A request's tokens fill blocks of `block_size`; a full block is named by a hash of its tokens
chained to its parent block's hash, so equal hashes mean equal prefixes and a hit on block i implies
hits on blocks 0..i-1. Invariants (vLLM 0.32's block pool, `vllm/v1/core/block_pool.py`):

- every block is in exactly one state: *held* (one or more requests reference it: a cached block
  shared by several requests is counted once), *free and cached* (no reference, still findable by
  its hash, in `evictable`, least recently freed first), or *free and anonymous* (a count);
- a request takes anonymous blocks first and then evicts the least recently freed cached block
  (vLLM prepends uncached blocks to its free queue and appends cached ones); both kinds count as
  free in `vllm:kv_cache_usage_perc`;
- a request's cached prefix is the longest run of its leading full blocks whose hashes are
  cached, at most `num_tokens - 1` tokens (the last token is always computed, for its logits);
- a block is cached from the step that computes it (prompt blocks at allocation, as vLLM does); the
  blocks a request fills while decoding join the cache when the request frees them (finished,
  preempted or aborted), which only another request whose prompt contains this one's still
  unfinished output could tell apart;
- a request frees its blocks last to first, so its tail is evicted before its head.

Pure bookkeeping, no clock; the scheduler (scheduler.py) calls it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmctl.sim.scheduler import SimRequest


class KvCache:
    """`num_blocks` blocks of `block_size` tokens; prefix caching unless `caching` is False.

    `output_ring`: the generated tokens' source (request k's output token i is
    `output_ring[(k.text_offset + i) % len]`, text.py's TokenStream), so blocks holding output can
    be hashed; empty: output blocks are never cached."""

    def __init__(
        self,
        num_blocks: int,
        block_size: int,
        *,
        caching: bool = True,
        output_ring: Sequence[Hashable] = (),
    ) -> None:
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.caching = caching
        self.output_ring = output_ring
        self.anonymous = num_blocks  # free blocks without a hash (negative: owed after a shrink)
        self.refs: dict[int, int] = {}  # hash of every cached block -> requests holding it
        self.evictable: OrderedDict[int, None] = OrderedDict()  # cached, free; LRU first

    @property
    def free(self) -> int:
        return self.anonymous + len(self.evictable)

    @property
    def usage(self) -> float:
        # Above 1 only just after the cache shrank under running requests (a scenario): full.
        return min(1.0, 1.0 - self.free / self.num_blocks)

    def resize(self, num_blocks: int) -> None:
        """Shrink or grow to `num_blocks`. A shrink gives up free blocks in the order they are
        handed out (anonymous, then cached least recently freed first); blocks that running
        requests hold stay theirs (`anonymous` goes negative), so new blocks come from preemption."""
        self.anonymous += num_blocks - self.num_blocks
        self.num_blocks = num_blocks
        self._repay()

    def _repay(self) -> None:
        while self.anonymous < 0 and self.evictable:
            del self.refs[self.evictable.popitem(last=False)[0]]
            self.anonymous += 1

    def _take(self, count: int) -> None:
        """Hand out `count` free blocks (the caller checked there are that many)."""
        if count <= 0:
            return
        anonymous = self.anonymous
        if count <= anonymous:
            self.anonymous = anonymous - count
            return
        # Never owing here: a shrink's debt is repaid from `evictable` before it can hold any.
        self.anonymous = 0
        pop, refs = self.evictable.popitem, self.refs
        for _ in range(count - anonymous):
            del refs[pop(last=False)[0]]

    def grow(self, req: SimRequest, count: int) -> bool:
        """Give `req` `count` more blocks, or False if fewer are free."""
        if count > self.anonymous + len(self.evictable):
            return False
        self._take(count)
        req.blocks += count
        return True

    def _hashes(self, req: SimRequest, count: int) -> list[int]:
        """`req`'s block hashes, computed up to its first `count` full blocks where its tokens are
        known (fewer when they are not: no prompt tokens, or output without an output ring)."""
        hashes = req.block_hashes
        have = len(hashes)
        if have >= count:
            return hashes
        ids, bs, ring = req.prompt_ids, self.block_size, self.output_ring
        prompt = len(ids)
        if prompt != req.prompt_tokens:
            return hashes  # tokens unknown (a request built without them): never cached
        parent = hashes[-1] if hashes else None
        for j in range(have, count):
            start, stop = j * bs, (j + 1) * bs
            if stop <= prompt:
                block: tuple[Hashable, ...] = tuple(ids[start:stop])
            elif not ring or stop > req.num_tokens:
                break
            else:
                size, offset = len(ring), req.text_offset - prompt
                generated = [ring[(offset + i) % size] for i in range(max(start, prompt), stop)]
                block = (*ids[start:prompt], *generated)
            parent = hash((parent, block))
            hashes.append(parent)
        return hashes

    def lookup(self, req: SimRequest) -> int:
        """How many of `req`'s leading blocks are cached (at most `num_tokens - 1` tokens' worth)."""
        if not self.caching:
            return 0
        limit = (req.num_tokens - 1) // self.block_size
        refs = self.refs
        hits = 0
        while hits < limit:
            hashes = self._hashes(req, hits + 1)
            if len(hashes) <= hits or hashes[hits] not in refs:
                break
            hits += 1
        return hits

    def admit(self, req: SimRequest, hits: int, tokens: int) -> bool:
        """Give a request that holds no blocks its `hits` cached blocks (see `lookup`) and blocks for
        `tokens` in all, or False (and change nothing) if the free blocks do not suffice."""
        refs = self.refs
        cached = req.block_hashes[:hits]
        new = -(-tokens // self.block_size) - hits
        # A hit on a free cached block takes it out of the free pool, as a new block would.
        reclaimed = sum(1 for h in cached if not refs[h])
        if new + reclaimed > self.anonymous + len(self.evictable):
            return False
        evictable = self.evictable
        for h in cached:
            held = refs[h]
            if not held:
                del evictable[h]
            refs[h] = held + 1
        req.cached = cached
        req.hashed = hits
        self._take(new)
        req.blocks = hits + new
        return True

    def commit(self, req: SimRequest, tokens: int) -> None:
        """`req`'s first `tokens` tokens are computed (or being computed this step): cache the full
        blocks among them. A block whose hash is already cached (two requests computed the same
        prefix at once) stays the request's own and is freed uncached, as in vLLM."""
        count = tokens // self.block_size
        if count <= req.hashed or not self.caching:
            return
        hashes = self._hashes(req, count)
        refs, cached = self.refs, req.cached
        for h in hashes[req.hashed : count]:
            if h not in refs:
                refs[h] = 1
                cached.append(h)
        req.hashed = count

    def release(self, req: SimRequest) -> None:
        """`req` gives back all its blocks; its full blocks stay cached until evicted."""
        if req.num_computed // self.block_size > req.hashed:
            self.commit(req, req.num_computed)  # blocks filled while decoding
        refs, evictable = self.refs, self.evictable
        cached = req.cached
        for h in reversed(cached):
            held = refs[h] - 1
            refs[h] = held
            if not held:
                evictable[h] = None
        self.anonymous += req.blocks - len(cached)
        req.blocks = 0
        req.cached = []
        req.hashed = 0
        if self.anonymous < 0:
            self._repay()
