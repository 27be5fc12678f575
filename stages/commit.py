"""Commit: one atomic SQLite transaction per block.

Reads from the in-flight block: everything. Writes to disk: the state diff, trie
nodes, block, receipts, change set and new head, together (`StateStore.commit_block`).
Unwind: `StateStore.unwind_block` undoes committed blocks from their change sets.

This stage also sees rejected blocks: it throws away the overlay diffs built on them
and resets the speculative tip to the committed head, so that the next block runs on
the last good state. A block whose parent was not committed is rejected here.
"""
from __future__ import annotations

import rlp
import trio

from execution.forks import is_merged
from pipeline.block import InFlightBlock
from pipeline.chain import Chain
from pipeline.errors import InvalidBlock
from pipeline.stage import BaseStage, StageId
from state.store import BlockCommit

COMMIT_DEADLINE = 60.0  # seconds a shielded commit may take before we call it fatal


class CommitStage(BaseStage):
    id = StageId.COMMIT
    sees_failed = True

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    async def execute(self, item: InFlightBlock) -> None:
        chain = self.chain
        entered = item.execution is not None
        if item.error is None and item.header.parent_hash != chain.committed_head_hash():
            await self._drop(item, entered)
            raise InvalidBlock("BlockException.UNKNOWN_PARENT", "built on a block that was rejected")
        if item.error is not None:
            await self._drop(item, entered)
            return
        header = item.header
        parent_td = chain.store.get_header(header.parent_hash)
        commit = BlockCommit(
            number=header.block_number,
            hash=header.hash,
            parent_hash=header.parent_hash,
            state_root=header.state_root,
            header_rlp=rlp.encode(header),
            block_rlp=item.input.rlp,
            total_difficulty=(parent_td[2] if parent_td else 0) + header.difficulty,
            diff=item.execution.diff,  # type: ignore[union-attr]
            trie_nodes=item.trie_nodes,
            receipts=[r.encode() for r in item.execution.receipts],  # type: ignore[union-attr]
            tx_hashes=[tx.hash for tx in item.block.transactions],  # type: ignore[union-attr]
        )
        # Shielded: once started, a commit finishes even if the run is being cancelled.
        with trio.CancelScope(shield=True):
            with trio.fail_after(COMMIT_DEADLINE):
                await trio.to_thread.run_sync(chain.store.commit_block, commit)
        chain.overlay.drop_committed(header.block_number)
        item.committed = True
        await self._choose_fork(item)
        chain.block_left()
        item.counts["commit"] = {"keys": commit.diff.count_keys(), "nodes": len(commit.trie_nodes)}

    async def _choose_fork(self, item: InFlightBlock) -> None:
        """Keep the heaviest chain: before the merge by total difficulty (ties keep the
        current head, as geth does); after it the newest block, as consensus orders."""
        chain = self.chain
        header = item.header
        best = chain.best or header.parent_hash
        wins = (
            best == header.parent_hash
            or is_merged(item.vm_class)  # type: ignore[arg-type]
            or chain.store.total_difficulty(header.hash) > chain.store.total_difficulty(best)
        )
        if wins:
            chain.best = header.hash
            return
        await trio.to_thread.run_sync(chain.store.reorg_to, best)
        chain.generation += 1
        chain.tip = best

    async def _drop(self, item: InFlightBlock, entered: bool) -> None:
        """Forget a rejected block. Only a block that executed left a diff on the
        overlay, and only on such a block can later blocks have been built: then
        drop every diff above the committed head and send execution back to it."""
        if not entered:
            return
        chain = self.chain
        head = chain.store.head()
        chain.overlay.drop_above(head.number if head else -1)
        chain.generation += 1
        if chain.best and chain.committed_head_hash() != chain.best:
            # the store was switched to a side branch to run this block: switch back
            await trio.to_thread.run_sync(chain.store.reorg_to, chain.best)
        chain.tip = chain.committed_head_hash()
        chain.block_left()
