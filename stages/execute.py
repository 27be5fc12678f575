"""Execute: run the block's transactions on the state its parent left.

Reads from the in-flight block: `block`, `vm_class`, `parent`. Adds: `execution`
(receipts, gas, the block's `StateDiff`, per-transaction read and write sets).
Writes to disk: nothing; the diff goes on the overlay so that the next block can
execute before this one is committed. Unwind: drops overlay diffs above the target.

How the transactions run is the `ExecutionStrategy`'s business
(`execution/strategies.py`: sequential, optimistic in worker processes, auto); this
stage decides on which state the block runs and keeps the overlay and tip.
"""
from __future__ import annotations

import time

import trio

from execution.strategies import ExecutionStrategy, SequentialStrategy, needs_intermediate_roots
from pipeline.block import InFlightBlock
from pipeline.chain import Chain
from pipeline.errors import InvalidBlock
from pipeline.stage import BaseStage, StageId

_B = "BlockException."
NO_TIP = b"undecided"


class ExecuteStage(BaseStage):
    id = StageId.EXECUTE

    def __init__(self, chain: Chain, strategy: ExecutionStrategy | None = None, max_in_flight: int | None = None) -> None:
        self.chain = chain
        self.strategy = strategy or SequentialStrategy()
        self.max_in_flight = max_in_flight  # None: as many as the channels hold

    async def execute(self, item: InFlightBlock) -> None:
        chain = self.chain
        header = item.header
        off_best_chain = False
        if self.max_in_flight is not None:
            await chain.wait_in_flight_below(self.max_in_flight)
        if header.parent_hash != chain.tip or needs_intermediate_roots(item):
            # Not on the speculative tip (a sibling of a rejected block, or a side chain),
            # or intermediate roots need the parent's trie: wait for in-flight blocks.
            await chain.wait_drained()
            if header.parent_hash != chain.committed_head_hash():
                await self._switch_to_parent(header.parent_hash)
                off_best_chain = True
            chain.tip = chain.committed_head_hash()
        await trio.lowlevel.checkpoint()
        cpu_before = time.process_time()
        execution = await self.strategy.run(chain, item)
        item.execution = execution
        chain.overlay.push(header.block_number, execution.diff)
        # A block off the best chain may lose fork choice at commit: nothing may run
        # speculatively on top of it, so the next block waits for the pipeline to drain.
        chain.tip = NO_TIP if off_best_chain else header.hash
        chain.block_entered()
        item.counts.setdefault("execute", {}).update(
            txs=len(execution.tx_results),
            gas=execution.gas_used,
            keys_written=execution.diff.count_keys(),
            # this process's CPU (all its threads) while the block ran; with worker_cpu,
            # the CPU over wall time of the execute stage
            master_cpu=round(time.process_time() - cpu_before, 6),
        )

    async def _switch_to_parent(self, parent_hash: bytes) -> None:
        """A block on another branch: reorganize the store so its parent is the head.

        Only blocks that were executed and committed once have the change sets that
        make this possible; fork choice (commit stage) decides afterwards which branch
        stays canonical."""
        store = self.chain.store
        if not store.has_changeset(parent_hash):
            raise InvalidBlock(_B + "UNKNOWN_PARENT", f"parent 0x{parent_hash.hex()} was never executed")
        await trio.to_thread.run_sync(store.reorg_to, parent_hash)
        self.chain.generation += 1

    async def unwind(self, to_number: int) -> None:
        self.chain.overlay.drop_above(to_number)
