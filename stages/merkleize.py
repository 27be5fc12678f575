"""Merkleize: the state root from the stored trie plus the block's diff.

Reads: `item.pre` (parent's state root), `item.run` (the diff). Adds: `Merkleized`
(state root, new trie nodes, the changed accounts with their new storage roots);
the nodes and accounts join the overlay (`ChainState.merkleized`) so that the next
block's merkleization reads them before this block's commit. Writes to disk:
nothing. Unwind: nothing of its own (the overlay is unwound with the diffs).

Incremental: only the dirty paths are rebuilt, in one sorted batch per trie. The
work runs on a thread: trie nodes not in the cache are read from SQLite.
"""
from __future__ import annotations

import trio

from pipeline.block import InFlightBlock, Merkleized
from pipeline.chain import ChainState
from pipeline.errors import BlockError, InvalidBlock
from pipeline.stage import BaseStage, StageId
from state.account import Account
from state.merkle import merkleize


class MerkleizeStage(BaseStage):
    id = StageId.MERKLEIZE

    def __init__(self, chain: ChainState) -> None:
        self.chain = chain

    async def execute(self, item: InFlightBlock) -> None:
        overlay = self.chain.overlay
        header = item.header
        diff = item.run.execution.diff
        number = header.block_number

        def account_before(address: bytes) -> Account | None:
            return overlay.get_account_below(number, address)

        result = await trio.to_thread.run_sync(merkleize, diff, item.pre.parent.state_root, account_before, overlay.get_trie_node)
        item.merkleized = Merkleized(result.root, result.nodes, result.accounts)
        self.chain.merkleized(number, result.nodes, result.accounts)
        item.count("merkleize", keys=diff.count_keys(), nodes=len(result.nodes))
        if result.root != header.state_root:
            raise InvalidBlock(BlockError.INVALID_STATE_ROOT, f"state root 0x{result.root.hex()}, header says 0x{header.state_root.hex()}")
