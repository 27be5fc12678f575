"""Execute: run the block's transactions on the state its parent left.

Reads: `item.pre` (the block, its fork, parent, senders). Adds: `Executed` (receipts,
gas, the block's `StateDiff`, per-transaction read and write sets, the strategy's
report). Writes to disk: nothing; the diff goes on the overlay (`ChainState.executed`)
so that the next block can execute before this one is committed. Unwind: throws
away the diffs above the target and sends the tip back (`ChainState.unwound`), after
the block executing now has finished.

How the transactions run is the `ExecutionStrategy`'s business
(`execution/strategies.py`); this stage decides on which state the block runs. One
lock covers that decision, the run and the `executed` transition, and `unwind`
takes it too: an unwind never pulls the overlay from under a running block, and a
block never runs on a tip an unwind has just moved.
"""
from __future__ import annotations

import time

import trio

from execution.strategies import ExecutionStrategy, SequentialStrategy, needs_intermediate_roots
from pipeline.block import Executed, InFlightBlock
from pipeline.chain import ChainState
from pipeline.errors import BlockError, InvalidBlock
from pipeline.stage import BaseStage, StageId


class ExecuteStage(BaseStage):
    id = StageId.EXECUTE

    def __init__(self, chain: ChainState, strategy: ExecutionStrategy | None = None, max_in_flight: int | None = None) -> None:
        self.chain = chain
        self.strategy: ExecutionStrategy = strategy or SequentialStrategy()
        self.max_in_flight = max_in_flight  # None: as many as the channels hold
        self._lock = trio.Lock()

    async def execute(self, item: InFlightBlock) -> None:
        chain = self.chain
        pre = item.pre
        parent_hash = pre.header.parent_hash
        if self.max_in_flight is not None:
            await chain.wait_in_flight_below(self.max_in_flight)
        while True:
            async with self._lock:
                chain.check_ancestry(parent_hash)
                on_tip = parent_hash == chain.tip and not needs_intermediate_roots(pre.vm_class)
                # Not on the speculative tip (a sibling of a rejected block, a side
                # chain), or intermediate roots need the parent's trie: the block runs
                # once every block in flight is committed or unwound.
                if on_tip or chain.in_flight == 0:
                    if not on_tip and parent_hash != chain.head_hash:
                        await self._switch_to_parent(parent_hash)
                    await self._run(item, off_best_chain=parent_hash != chain.best and not on_tip)
                    return
            await chain.wait_drained()

    async def _run(self, item: InFlightBlock, *, off_best_chain: bool) -> None:
        pre = item.pre
        cpu_before = time.process_time()
        execution, report = await self.strategy.run(self.chain, pre)
        item.executed = Executed(execution, report)
        self.chain.executed(pre.header, execution.diff, off_best_chain=off_best_chain)
        item.count(
            "execute",
            txs=len(execution.tx_results),
            gas=execution.gas_used,
            keys_written=execution.diff.count_keys(),
            # this process's CPU (all its threads) while the block ran; with worker_cpu,
            # the CPU over wall time of the execute stage
            master_cpu=round(time.process_time() - cpu_before, 6),
            **report.counts(),
            # the CPU of the thread that ran the transactions, when they ran here in order
            **({"tx_cpu": round(execution.cpu_seconds, 6)} if execution.cpu_seconds is not None else {}),
        )

    async def _switch_to_parent(self, parent_hash: bytes) -> None:
        """A block on another branch: reorganize the store so its parent is the head.

        Only blocks that were executed and committed once have the change sets that
        make this possible; fork choice (commit stage) decides afterwards which branch
        stays canonical. The best head stays as it is in the database, so a crash
        before the switch back resumes on it."""
        store = self.chain.store
        if not await trio.to_thread.run_sync(store.has_changeset, parent_hash):
            raise InvalidBlock(BlockError.UNKNOWN_PARENT, f"parent 0x{parent_hash.hex()} was never executed")
        self.chain.switched(await trio.to_thread.run_sync(store.reorg_to, parent_hash))

    async def unwind(self, to_number: int) -> None:
        """Throw away executed blocks above `to_number`: the tip goes back to the
        block there (the rejected block's parent), or to the best head when the
        store had been switched to a side branch for the rejected block."""
        chain = self.chain
        async with self._lock:
            tip = chain.tip
            if chain.head_hash != chain.best and chain.in_flight <= 1:
                # The rejected block ran off the best chain (alone): switch back.
                with trio.CancelScope(shield=True):
                    chain.switched(await trio.to_thread.run_sync(chain.store.reorg_to, chain.best))
                tip = chain.best
            else:
                tip = self._tip_at(to_number)
            chain.unwound(to_number, tip)

    def _tip_at(self, number: int) -> bytes:
        """The hash of the executed or committed block at `number` on the tip's branch."""
        chain = self.chain
        if number <= chain.head_number:
            return chain.head_hash
        current = chain.tip
        while current:
            found = chain.known_header(current)
            if found is None:
                break
            header = found[0]
            if header.block_number <= number:
                return bytes(header.hash)
            current = header.parent_hash
        return chain.head_hash
