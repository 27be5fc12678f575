"""The in-flight block: one object that every stage enriches, once, in order.

Data flows one way. Each stage adds one typed, frozen record of its own (prefetch:
`Prefetched`; execute: `Executed`; merkleize: `Merkleized`; commit: `committed`), or
the block gets an `error` and the stages after it let it pass untouched. A later
stage reads an earlier stage's record through a property that is present by type
(`item.pre`, `item.run`, `item.merkle`): no optional fields, no stage writing
another's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from eth.abc import BlockAPI, BlockHeaderAPI

from execution.block import BlockExecution
from execution.forks import VMClass
from execution.report import ExecutionReport
from pipeline.errors import InvalidBlock
from state.account import Account

if TYPE_CHECKING:
    from state.warm import PathWarm


@dataclass(frozen=True)
class BlockInput:
    """What consensus hands out: a block in its final order, not yet executed."""

    seq: int
    rlp: bytes
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prefetched:
    """Prefetch's record: the decoded, statically checked block and what it needs."""

    block: BlockAPI
    vm_class: VMClass
    parent: BlockHeaderAPI
    encoded_txs: list[bytes]
    #: recovered senders, in block order; empty when the workers recover them while
    #: they speculate; None where a signature did not recover (the block is invalid)
    senders: list[bytes | None]
    prev_hashes: list[bytes]  # the parent and its ancestors, newest first (BLOCKHASH)
    transactions_root: bytes  # of the body as received (validate compares it, in spec order)
    withdrawals_root: bytes | None
    warm_keys: int = 0
    #: the background walk of the predicted writes' trie paths (None: none queued);
    #: prefetch's, settled by merkleize
    paths: PathWarm | None = None

    @property
    def header(self) -> BlockHeaderAPI:
        return self.block.header

    @property
    def body_matches_header(self) -> bool:
        """Whether the body is the one the header commits to. A rejection of a block
        whose body is not its header's says nothing about the header's hash: the
        right body may still come."""
        header = self.block.header
        withdrawals_ok = self.withdrawals_root is None or self.withdrawals_root == getattr(header, "withdrawals_root", None)
        return self.transactions_root == header.transaction_root and withdrawals_ok


@dataclass(frozen=True)
class Executed:
    """Execute's record: the block's results and how they were obtained."""

    execution: BlockExecution
    report: ExecutionReport


@dataclass(frozen=True)
class Merkleized:
    """Merkleize's record: the state root, new trie nodes, and the changed accounts
    with their new storage roots (what commit writes)."""

    state_root: bytes
    trie_nodes: dict[bytes, bytes]
    accounts: dict[bytes, Account | None]
    #: set when the pages the commit inserts into have been read (merkleize probes
    #: them in the background); None: no probe
    probed: trio.Event | None = None


@dataclass
class InFlightBlock:
    input: BlockInput
    prefetched: Prefetched | None = None
    executed: Executed | None = None
    receipts_root: bytes | None = None  # validate's
    merkleized: Merkleized | None = None
    committed: bool = False
    error: InvalidBlock | None = None
    failed_stage: str | None = None
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def pre(self) -> Prefetched:
        """Prefetch's record (every stage after prefetch may rely on it)."""
        if self.prefetched is None:
            raise RuntimeError(f"block {self.number}: read before prefetch")
        return self.prefetched

    @property
    def run(self) -> Executed:
        """Execute's record (validate, merkleize and commit rely on it)."""
        if self.executed is None:
            raise RuntimeError(f"block {self.number}: read before execute")
        return self.executed

    @property
    def merkle(self) -> Merkleized:
        if self.merkleized is None:
            raise RuntimeError(f"block {self.number}: read before merkleize")
        return self.merkleized

    @property
    def block(self) -> BlockAPI | None:
        return None if self.prefetched is None else self.prefetched.block

    @property
    def header(self) -> BlockHeaderAPI:
        return self.pre.block.header

    @property
    def execution(self) -> BlockExecution | None:
        return None if self.executed is None else self.executed.execution

    @property
    def number(self) -> int | None:
        """The block's number: from the block, else the error, else the source's record."""
        if self.prefetched is not None:
            return int(self.prefetched.block.number)
        if self.error is not None and self.error.number is not None:
            return self.error.number
        number = self.input.meta.get("number")
        return None if number is None else int(number)

    @property
    def hash(self) -> bytes | None:
        if self.prefetched is not None:
            return bytes(self.prefetched.block.header.hash)
        known = self.input.meta.get("hash")
        return known if isinstance(known, bytes) else None

    def fail(self, stage: str, error: InvalidBlock) -> None:
        self.error = error.at(self.number, self.hash)
        self.failed_stage = stage

    def count(self, stage: str, **values: Any) -> None:
        """Add figures to this block's event for `stage`."""
        self.counts.setdefault(stage, {}).update(values)
