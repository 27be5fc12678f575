"""The in-flight block: one object that every stage enriches, once, in order.

Data flows one way. Each stage sets only its own fields (prefetch: `block`,
`vm_class`, `parent`, `senders`, `warm_keys`; execute: `execution`; validate:
`receipts_root`; merkleize: `state_root`, `trie_nodes`; commit: `committed`), or
sets `error` and the stages after it let the block pass untouched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from eth.abc import BlockAPI, BlockHeaderAPI

from execution.block import BlockExecution
from execution.forks import VMClass
from pipeline.errors import InvalidBlock


@dataclass(frozen=True)
class BlockInput:
    """What consensus hands out: a block in its final order, not yet executed."""

    seq: int
    rlp: bytes
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class InFlightBlock:
    input: BlockInput
    block: BlockAPI | None = None
    vm_class: VMClass | None = None
    parent: BlockHeaderAPI | None = None
    senders: list[bytes] = field(default_factory=list)
    encoded_txs: list[bytes] = field(default_factory=list)
    warm_keys: int = 0
    execution: BlockExecution | None = None
    receipts_root: bytes | None = None
    state_root: bytes | None = None
    trie_nodes: dict[bytes, bytes] = field(default_factory=dict)
    committed: bool = False
    error: InvalidBlock | None = None
    failed_stage: str | None = None
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def number(self) -> int | None:
        """The block's number: from the block, else the error, else the source's record."""
        if self.block is not None:
            return self.block.number
        if self.error is not None and self.error.number is not None:
            return self.error.number
        return self.input.meta.get("number")

    @property
    def hash(self) -> bytes | None:
        return None if self.block is None else self.block.header.hash

    @property
    def header(self) -> BlockHeaderAPI:
        assert self.block is not None
        return self.block.header

    def fail(self, stage: str, error: InvalidBlock) -> None:
        self.error = error.at(self.number, self.hash)
        self.failed_stage = stage
