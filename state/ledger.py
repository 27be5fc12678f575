"""What became of the keys prefetch put into the hot cache: read (a hit), or never (wasted).

The store keeps one `PrefetchLedger`: `StateStore.fill_cache` records each key it
inserted with the block that predicted it; a read that finds the key in the hot
cache takes it off the ledger and counts a hit; `expire(number)` (once block
`number` is committed) counts what is still there for blocks up to it as wasted.
Reads that reach SQLite on demand are the misses (`StoreReads`' db tier); the
seconds they took are `stall_s` (the reading thread waited that long).
`background_failures` counts background reads ahead that failed (prefetch's
trie-path walks, merkleize's commit-page probes): hints lost, no block failed for them.
`prerun_failures` counts pre-runs (`--prefetch-run`) whose worker died or passed its
deadline: the worker was replaced and the block went on without the pre-run's keys.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from state.tiers import KINDS


class PrefetchLedger:
    def __init__(self) -> None:
        self.pending: dict[str, dict[Hashable, int]] = {kind: {} for kind in KINDS}
        self.inserted = dict.fromkeys(KINDS, 0)
        self.hits = dict.fromkeys(KINDS, 0)
        self.wasted = dict.fromkeys(KINDS, 0)
        self.stale = 0  # values read before a commit that changed them: not inserted
        self.stall_s = dict.fromkeys(KINDS, 0.0)
        self.background_failures = 0
        self.prerun_failures = 0

    def add(self, kind: str, keys: Sequence[Hashable], tag: int) -> None:
        pending = self.pending[kind]
        for key in keys:
            pending[key] = tag
        self.inserted[kind] += len(keys)

    def hit(self, kind: str, key: Hashable) -> None:
        """A read served by the hot cache (called only when `pending[kind]` is not empty)."""
        if self.pending[kind].pop(key, None) is not None:
            self.hits[kind] += 1

    def expire(self, number: int) -> None:
        """Keys prefetched for blocks up to `number` and never read: wasted."""
        for kind, pending in self.pending.items():
            old = [key for key, tag in _items(pending) if tag <= number]
            self.wasted[kind] += sum(1 for key in old if pending.pop(key, None) is not None)

    def snapshot(self) -> dict[str, Any]:
        return {
            "inserted": dict(self.inserted),
            "hits": dict(self.hits),
            "wasted": dict(self.wasted),
            "stale": self.stale,
            "stall_s": dict(self.stall_s),
            "background_failures": self.background_failures,
            "prerun_failures": self.prerun_failures,
        }


def _items(pending: dict[Hashable, int]) -> list[tuple[Hashable, int]]:
    """A copy of `pending`'s items. Reader and execution threads add and take keys
    meanwhile: the copy holds the GIL, unless a garbage collection inside it lets
    another thread run, and then the copy is made again."""
    while True:
        try:
            return list(pending.items())
        except RuntimeError:  # "dictionary changed size during iteration"
            continue
