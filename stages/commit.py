"""Commit: one atomic SQLite transaction per block, fork choice in the same one.

Reads: `item.pre` (block, header), `item.run` (diff, receipts), `item.merkle` (trie
nodes, sealed accounts). Writes to disk: the state diff, trie nodes, block,
receipts, change set, new head and best head, together (`StateStore.commit_block`).
Then `ChainState.committed`. Unwind: nothing in memory; committed blocks are undone
from their change sets by `StateStore.unwind_block` (reorgs).

Rejected blocks never reach this stage's `execute` (the runner unwinds them where
they fail). A block whose parent is not the committed head cannot be committed:
rejected as `UNKNOWN_PARENT` (a guard: ancestry checks catch such blocks earlier).
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

import rlp
import trio

from execution.forks import is_merged
from pipeline.block import InFlightBlock
from pipeline.chain import ChainState
from pipeline.errors import BlockError, FatalError, InvalidBlock
from pipeline.stage import BaseStage, StageId
from state.merkle import sealed
from state.store import BlockCommit, Head, StateStore

#: seconds a commit may take before the node calls the disk stalled and stops
COMMIT_DEADLINE = 120.0


@dataclass(frozen=True)
class ForkChoice:
    best: bytes  # the best head before this block
    merged: bool  # after the merge the newest block wins (consensus orders)


class CommitStage(BaseStage):
    id = StageId.COMMIT

    def __init__(self, chain: ChainState, deadline: float = COMMIT_DEADLINE) -> None:
        self.chain = chain
        self.deadline = deadline

    async def execute(self, item: InFlightBlock) -> None:
        chain = self.chain
        header = item.header
        if header.parent_hash != chain.head_hash:
            raise InvalidBlock(BlockError.UNKNOWN_PARENT, "its parent is not the committed head")
        execution = item.run.execution
        merkle = item.merkle
        commit = BlockCommit(
            number=header.block_number,
            hash=header.hash,
            parent_hash=header.parent_hash,
            state_root=header.state_root,
            header_rlp=rlp.encode(header),
            block_rlp=item.input.rlp,
            total_difficulty=header.difficulty,  # the parent's is added on the thread
            diff=sealed(execution.diff, merkle.accounts),
            trie_nodes=merkle.trie_nodes,
            receipts=[r.encode() for r in execution.receipts],
            tx_hashes=[tx.hash for tx in item.pre.block.transactions],
        )
        choice = ForkChoice(chain.best or header.parent_hash, is_merged(item.pre.vm_class))
        waited = 0.0
        if merkle.probed is not None:  # the pages this commit inserts into, read ahead by merkleize
            started = time.perf_counter()
            await merkle.probed.wait()
            waited = time.perf_counter() - started
        # Shielded: once started, a commit finishes even if the run is being cancelled;
        # past the deadline the thread is left behind and the node stops (SQLite's
        # transaction is whole or absent either way).
        with trio.CancelScope(shield=True):
            try:
                with trio.fail_after(self.deadline):
                    head, best = await trio.to_thread.run_sync(commit_with_fork_choice, chain.store, commit, choice, abandon_on_cancel=True)
            except trio.TooSlowError:
                raise FatalError(f"block {commit.number}: the commit took more than {self.deadline:g} s (is the disk stalled?)") from None
            except (sqlite3.Error, OSError) as error:
                raise FatalError(
                    f"block {commit.number}: the commit failed ({error}; is the disk full?); "
                    "the database keeps its last whole commit, and a restart resumes from there"
                ) from error
        chain.committed(commit.hash, head, best)
        item.committed = True
        item.count("commit", keys=commit.diff.count_keys(), nodes=len(commit.trie_nodes), probe_wait_ms=round(waited * 1000, 3))


def commit_with_fork_choice(store: StateStore, commit: BlockCommit, choice: ForkChoice) -> tuple[Head, bytes]:
    """Commit the block and record the best head in the same transaction; when the
    block loses fork choice, switch the store back to the best head. Returns the
    committed head and the best head. Blocking: runs on a thread.

    Fork choice keeps the heaviest chain: before the merge by total difficulty (ties
    keep the current head, as geth does); after it the newest block, as consensus
    orders. A block that loses stays stored with its change set, so a heavier child
    can bring its branch back."""
    parent = store.get_header(commit.parent_hash)
    commit.total_difficulty += parent[2] if parent else 0
    wins = choice.best == commit.parent_hash or choice.merged or commit.total_difficulty > store.total_difficulty(choice.best)
    best = commit.hash if wins else choice.best
    commit.meta["best"] = best
    store.commit_block(commit)
    if wins:
        return Head(commit.number, commit.hash, commit.state_root), best
    return store.reorg_to(best), best
