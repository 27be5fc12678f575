"""Merkleize: the state root from the stored trie plus the block's diff.

Reads from the in-flight block: `execution.diff`, `parent`. Adds: `state_root`,
`trie_nodes`, and the storage root of every changed account (into the diff). Writes
to disk: nothing (the commit stage stores the nodes). Unwind: drops the in-memory
nodes of blocks above the target.

Incremental: only the dirty paths are rebuilt, in one sorted batch per trie.
"""
from __future__ import annotations

from pipeline.block import InFlightBlock
from pipeline.chain import Chain
from pipeline.errors import InvalidBlock
from pipeline.stage import BaseStage, StageId
from state.merkle import merkleize


class MerkleizeStage(BaseStage):
    id = StageId.MERKLEIZE

    def __init__(self, chain: Chain) -> None:
        self.chain = chain

    async def execute(self, item: InFlightBlock) -> None:
        overlay = self.chain.overlay
        header = item.header
        diff = item.execution.diff  # type: ignore[union-attr]
        number = header.block_number
        root, nodes = merkleize(
            diff,
            item.parent.state_root,  # type: ignore[union-attr]
            lambda address: overlay.get_account_below(number, address),
            overlay.get_trie_node,
        )
        item.state_root, item.trie_nodes = root, nodes
        overlay.add_nodes(number, nodes)
        item.counts["merkleize"] = {"keys": diff.count_keys(), "nodes": len(nodes)}
        if root != header.state_root:
            raise InvalidBlock("BlockException.INVALID_STATE_ROOT", f"state root 0x{root.hex()}, header says 0x{header.state_root.hex()}")

    async def unwind(self, to_number: int) -> None:
        self.chain.overlay.drop_above(to_number)
