"""Merkleize: the state root from the stored trie plus the block's diff.

Reads: `item.pre` (parent's state root), `item.run` (the diff). Adds: `Merkleized`
(state root, new trie nodes, the changed accounts with their new storage roots);
the nodes and accounts join the overlay (`ChainState.merkleized`) so that the next
block's merkleization reads them before this block's commit. Writes to disk:
nothing. Unwind: nothing of its own (the overlay is unwound with the diffs).

Incremental: only the dirty paths are rebuilt, in one sorted batch per trie. The
work runs on a thread: trie nodes not in the cache are read from SQLite. With a
reader pool, the nodes on every dirty path that are not in memory yet are read
first, level by level, in parallel (`state.warm.warm_paths`): the rebuild then
finds them in the cache instead of reading them one at a time. The paths of the
keys prefetch predicted were walked in the background already (`Prefetched.paths`):
merkleize waits for that walk if it is under way, takes it back if it has not
started, and walks only the dirty keys a finished walk did not cover, if there are
at least `WALK_AT_LEAST` of them (a walk costs a round on the pool per trie level,
eight or more, however few keys it has; a few keys are cheaper read on demand).

Then, under hash keys, the pages the commit will insert the new nodes into are
probed (`state.warm.warm_commit`): in the background, in the nursery the stage
holds while it runs, so that the next block's merkleization overlaps it; the
commit waits for it (`Merkleized.probed`; without that wait the commit raced the
probe for the same pages and took twice as long). A probe is a hint: one that fails
is counted (the prefetch ledger's `background_failures`) and fails no block.
"""
from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Callable

import trio

from pipeline.block import InFlightBlock, Merkleized
from pipeline.chain import ChainState
from pipeline.errors import BlockError, InvalidBlock
from pipeline.stage import BaseStage, StageId
from state.account import BLANK_ROOT, Account
from state.diff import StateDiff
from state.merkle import merkleize
from state.readers import ReaderPool
from state.nodekeys import HASH
from state.warm import WarmCounts, memory_nodes, settle, warm_commit, warm_paths


#: fewer dirty keys than this left by prefetch's walk are read on demand, not walked
WALK_AT_LEAST = 32


class MerkleizeStage(BaseStage):
    id = StageId.MERKLEIZE

    def __init__(self, chain: ChainState, pool: ReaderPool | None = None, *, trie_paths: bool = True) -> None:
        self.chain = chain
        self.pool = pool
        self.trie_paths = trie_paths
        self._probes: trio.Nursery | None = None  # open while the stage runs

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The nursery the commit-page probes run in; waits for the last one."""
        async with trio.open_nursery() as nursery:
            self._probes = nursery
            try:
                yield
            finally:
                self._probes = None

    async def execute(self, item: InFlightBlock) -> None:
        overlay = self.chain.overlay
        header = item.header
        diff = item.run.execution.diff
        number = header.block_number

        def account_before(address: bytes) -> Account | None:
            return overlay.get_account_below(number, address)

        warm: dict[str, float | str] = {}
        probed: trio.Event | None = None
        started = time.perf_counter()
        if self.pool is not None and self.trie_paths and self.chain.store.layout.layout == "flat":
            counts = WarmCounts()
            accounts, slots = await trio.to_thread.run_sync(_dirty_paths, diff, account_before)
            paths = item.pre.paths
            if paths is not None:
                await settle(paths)
                warm["path_walk"] = paths.state  # what became of prefetch's walk
                warm["path_wait_ms"] = _ms(time.perf_counter() - started)
                dirty = len(accounts) + len(slots)
                accounts, slots = paths.uncovered(accounts, slots)
                warm["warm_covered"] = dirty - len(accounts) - len(slots)
                if warm["warm_covered"] and len(accounts) + len(slots) < WALK_AT_LEAST:
                    accounts, slots = [], []
            await warm_paths(self.pool, self.chain.store, number, item.pre.parent.state_root, accounts, slots, memory_nodes(self.chain.overlay), counts)
            warm.update(counts.as_counts("warm_"))
        walked = time.perf_counter()
        result = await trio.to_thread.run_sync(merkleize, diff, item.pre.parent.state_root, account_before, overlay.get_trie_node)
        rooted = time.perf_counter()
        if self.pool is not None:
            # hash keys: probe where the new rows go (pages spread over the table); keyed by
            # place, the new rows sit beside the nodes warm_paths just read
            new_rows = list(result.nodes) if self.chain.store.trie_scheme == HASH else []
            tx_hashes = [tx.hash for tx in item.pre.block.transactions]
            if self._probes is None:  # not run by the pipeline: probed here
                await warm_commit(self.pool, number, new_rows, tx_hashes)
            else:
                probed = trio.Event()
                self._probes.start_soon(self._probe, number, new_rows, tx_hashes, probed)
        warm.update(walk_ms=_ms(walked - started), root_ms=_ms(rooted - walked))
        item.merkleized = Merkleized(result.root, result.nodes, result.accounts, probed)
        self.chain.merkleized(number, result.nodes, result.accounts)
        item.count("merkleize", keys=diff.count_keys(), nodes=len(result.nodes), **warm)
        if result.root != header.state_root:
            raise InvalidBlock(BlockError.INVALID_STATE_ROOT, f"state root 0x{result.root.hex()}, header says 0x{header.state_root.hex()}")


    async def _probe(self, number: int, new_rows: Sequence[bytes], tx_hashes: Sequence[bytes], probed: trio.Event) -> None:
        assert self.pool is not None
        try:
            await warm_commit(self.pool, number, new_rows, tx_hashes)
        except Exception:
            self.chain.store.prefetch.background_failures += 1
        finally:
            probed.set()


def _dirty_paths(diff: StateDiff, account_before: Callable[[bytes], Account | None]) -> tuple[list[bytes], list[tuple[bytes, bytes, int]]]:
    """The addresses the block changed, and its changed slots with the storage root
    they are in before it (on a thread: a pre-block account may come from SQLite)."""
    slots: list[tuple[bytes, bytes, int]] = []
    for address, changed in diff.storage.items():
        if address in diff.wiped:
            continue
        before = account_before(address)
        if before is not None and before.storage_root != BLANK_ROOT:
            slots.extend((address, before.storage_root, slot) for slot in changed)
    return list(diff.touched_addresses()), slots



def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)
