"""Execute: run the block's transactions on the state its parent left.

Reads from the in-flight block: `block`, `vm_class`, `parent`. Adds: `execution`
(receipts, gas, the block's `StateDiff`, per-transaction read and write sets).
Writes to disk: nothing; the diff goes on the overlay so that the next block can
execute before this one is committed. Unwind: drops overlay diffs above the target.

Strategy `sequential` runs transactions one after another in this process; the
`ExecutionStrategy` seam is where optimistic parallel execution plugs in.
"""
from __future__ import annotations

from typing import Protocol

import trio
from eth.abc import BlockAPI
from eth.vm.forks import ByzantiumVM

from execution.block import BlockExecution, execute_block, make_vm
from pipeline.block import InFlightBlock
from pipeline.chain import Chain
from pipeline.errors import InvalidBlock
from pipeline.stage import BaseStage, StageId
from state.diff import StateDiff
from state.merkle import merkleize

_B = "BlockException."
NO_TIP = b"undecided"


class ExecutionStrategy(Protocol):
    name: str

    def run(self, chain: Chain, item: InFlightBlock) -> BlockExecution: ...


class SequentialStrategy:
    """One transaction after another, as the Yellow Paper defines the block."""

    name = "sequential"

    def run(self, chain: Chain, item: InFlightBlock) -> BlockExecution:
        block: BlockAPI = item.block  # type: ignore[assignment]
        header = block.header
        vm = make_vm(
            item.vm_class,
            header,
            chain.overlay,
            chain.ancestor_hashes(header.parent_hash),
            chain.chain_id,
            root_hook=_intermediate_root(chain, item) if needs_intermediate_roots(item) else None,
        )
        return execute_block(vm, block)


def needs_intermediate_roots(item: InFlightBlock) -> bool:
    """Before Byzantium (EIP-658) each receipt holds the state root after its transaction."""
    return not issubclass(item.vm_class, ByzantiumVM)  # type: ignore[arg-type]


def _intermediate_root(chain: Chain, item: InFlightBlock):  # type: ignore[no-untyped-def]
    parent_root = item.parent.state_root  # type: ignore[union-attr]
    number = item.block.number  # type: ignore[union-attr]

    def root(pending: StateDiff) -> bytes:
        get_account = lambda address: chain.overlay.get_account_below(number, address)  # noqa: E731
        return merkleize(pending, parent_root, get_account, chain.overlay.get_trie_node, in_place=False)[0]

    return root


class ExecuteStage(BaseStage):
    id = StageId.EXECUTE

    def __init__(self, chain: Chain, strategy: ExecutionStrategy | None = None) -> None:
        self.chain = chain
        self.strategy = strategy or SequentialStrategy()

    async def execute(self, item: InFlightBlock) -> None:
        chain = self.chain
        header = item.header
        off_best_chain = False
        if header.parent_hash != chain.tip or needs_intermediate_roots(item):
            # Not on the speculative tip (a sibling of a rejected block, or a side chain),
            # or intermediate roots need the parent's trie: wait for in-flight blocks.
            await chain.wait_drained()
            if header.parent_hash != chain.committed_head_hash():
                await self._switch_to_parent(header.parent_hash)
                off_best_chain = True
            chain.tip = chain.committed_head_hash()
        await trio.lowlevel.checkpoint()
        execution = self.strategy.run(chain, item)
        item.execution = execution
        chain.overlay.push(header.block_number, execution.diff)
        # A block off the best chain may lose fork choice at commit: nothing may run
        # speculatively on top of it, so the next block waits for the pipeline to drain.
        chain.tip = NO_TIP if off_best_chain else header.hash
        chain.block_entered()
        item.counts["execute"] = {
            "txs": len(execution.tx_results),
            "gas": execution.gas_used,
            "keys_written": execution.diff.count_keys(),
            "strategy": self.strategy.name,  # type: ignore[dict-item]
        }

    async def _switch_to_parent(self, parent_hash: bytes) -> None:
        """A block on another branch: reorganize the store so its parent is the head.

        Only blocks that were executed and committed once have the change sets that
        make this possible; fork choice (commit stage) decides afterwards which branch
        stays canonical."""
        store = self.chain.store
        if not store.has_changeset(parent_hash):
            raise InvalidBlock(_B + "UNKNOWN_PARENT", f"parent 0x{parent_hash.hex()} was never executed")
        await trio.to_thread.run_sync(store.reorg_to, parent_hash)

    async def unwind(self, to_number: int) -> None:
        self.chain.overlay.drop_above(to_number)
