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
        if header.parent_hash != chain.tip or needs_intermediate_roots(item):
            # Not on the speculative tip (a sibling of a rejected block, or a side chain),
            # or intermediate roots need the parent's trie: wait for in-flight blocks.
            await chain.wait_drained()
            chain.tip = chain.committed_head_hash()
            if header.parent_hash != chain.tip:
                raise InvalidBlock(_B + "UNKNOWN_PARENT", "parent is not the head of the chain (side chains are not followed)")
        await trio.lowlevel.checkpoint()
        execution = self.strategy.run(chain, item)
        item.execution = execution
        chain.overlay.push(header.block_number, execution.diff)
        chain.tip = header.hash
        chain.block_entered()
        item.counts["execute"] = {
            "txs": len(execution.tx_results),
            "gas": execution.gas_used,
            "keys_written": execution.diff.count_keys(),
            "strategy": self.strategy.name,  # type: ignore[dict-item]
        }

    async def unwind(self, to_number: int) -> None:
        self.chain.overlay.drop_above(to_number)
