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
finds them in the cache instead of reading them one at a time.
"""
from __future__ import annotations

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
from state.warm import WarmCounts, memory_nodes, warm_commit, warm_paths


class MerkleizeStage(BaseStage):
    id = StageId.MERKLEIZE

    def __init__(self, chain: ChainState, pool: ReaderPool | None = None, *, trie_paths: bool = True) -> None:
        self.chain = chain
        self.pool = pool
        self.trie_paths = trie_paths

    async def execute(self, item: InFlightBlock) -> None:
        overlay = self.chain.overlay
        header = item.header
        diff = item.run.execution.diff
        number = header.block_number

        def account_before(address: bytes) -> Account | None:
            return overlay.get_account_below(number, address)

        warm: dict[str, int] = {}
        if self.pool is not None and self.trie_paths and self.chain.store.layout.layout == "flat":
            counts = WarmCounts()
            accounts, slots = await trio.to_thread.run_sync(_dirty_paths, diff, account_before)
            await warm_paths(self.pool, self.chain.store, number, item.pre.parent.state_root, accounts, slots, memory_nodes(self.chain.overlay), counts)
            warm = counts.as_counts("warm_")
        result = await trio.to_thread.run_sync(merkleize, diff, item.pre.parent.state_root, account_before, overlay.get_trie_node)
        if self.pool is not None:
            # hash keys: probe where the new rows go (pages spread over the table); keyed by
            # place, the new rows sit beside the nodes warm_paths just read
            new_rows = result.nodes if self.chain.store.trie_scheme == HASH else ()
            await warm_commit(self.pool, number, new_rows, [tx.hash for tx in item.pre.block.transactions])
        item.merkleized = Merkleized(result.root, result.nodes, result.accounts)
        self.chain.merkleized(number, result.nodes, result.accounts)
        item.count("merkleize", keys=diff.count_keys(), nodes=len(result.nodes), **warm)
        if result.root != header.state_root:
            raise InvalidBlock(BlockError.INVALID_STATE_ROOT, f"state root 0x{result.root.hex()}, header says 0x{header.state_root.hex()}")


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

