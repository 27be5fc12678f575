"""The chain's moving state, with one owner: tip, best head, generation, blocks in
flight, the overlay, rejected blocks and the committed head.

Stages ask `ChainState`; they never write its fields. Each change is a named
transition, called by the stage that caused it:

- `executed` (execute): the block's diff goes on the overlay, it becomes the tip.
- `merkleized` (merkleize): its trie nodes and sealed accounts join the overlay.
- `committed` (commit): its diff leaves the overlay, the committed head moves.
- `switched` (execute, commit): the store was reorganized to another branch.
- `rejected` (the runner): the block and everything built on it are invalid.
- `unwound` (the execute stage's `unwind`, called by the runner): every diff above
  a height is thrown away and the tip goes back.

The *speculative tip* is the last block execution finished without error: the next
block executes on the overlay if its parent is that tip. Any other parent means the
pipeline must first drain (every executed block committed or unwound) so that the
state under the block is the committed head's.

No method here touches SQLite on the event loop: the committed head and best head
are kept in memory, read once at `open` (a thread) and updated from what the commit
thread returns.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import trio
from eth.abc import BlockHeaderAPI

from execution.decode import decode_header
from execution.forks import ForkSchedule, VMClass
from pipeline.errors import InvalidAncestor, InvalidBlock
from state.account import Account
from state.codec import pack_diff
from state.diff import StateDiff
from state.overlay import Overlay
from state.store import Head, StateStore

MAX_PREV_HEADER_DEPTH = 256  # BLOCKHASH reaches 256 ancestors (Yellow Paper, BLOCKHASH)
#: rejected blocks remembered, so that a late child is named as such
MAX_REJECTED = 1024
#: the tip of a block executed off the best chain: nothing may run on top of it
NO_TIP = b"undecided"


@dataclass(frozen=True)
class Rejection:
    """An invalid block, as its descendants name it."""

    number: int | None
    hash: bytes
    code: str

    def describe(self) -> str:
        where = f"block {self.number}" if self.number is not None else "a block"
        return f"{where} (0x{self.hash.hex()[:16]}…, {self.code})"


class ChainState:
    """What the stages share about the chain, owned here and changed only by the
    transitions below."""

    def __init__(self, store: StateStore, schedule: ForkSchedule, head: Head | None, best: bytes | None) -> None:
        self.store = store
        self.schedule = schedule
        self.overlay = Overlay(store)
        self._headers: dict[bytes, tuple[BlockHeaderAPI, VMClass]] = {}
        self._ommers: dict[bytes, set[bytes]] = {}
        self._head = head
        self._best = best or (head.hash if head else b"")
        self._tip = self._best
        self._generation = 0
        self._executed: dict[bytes, int] = {}  # hash -> number: executed, awaiting commit or unwind
        self._rejected: OrderedDict[bytes, Rejection] = OrderedDict()
        self._changed = trio.Event()

    @classmethod
    def open(cls, store: StateStore, schedule: ForkSchedule) -> ChainState:
        """Read the committed head and the best head (blocking: call on a thread at
        startup). A crash between a switch to a side branch and the switch back left
        the store off the best chain: switch back first."""
        head = store.head()
        best = store.best_hash()
        if head is not None and best and best != head.hash:
            head = store.reorg_to(best)
        return cls(store, schedule, head, best)

    # -- reads ---------------------------------------------------------------------

    @property
    def chain_id(self) -> int:
        return self.schedule.chain_id

    @property
    def tip(self) -> bytes:
        return self._tip

    @property
    def best(self) -> bytes:
        return self._best

    @property
    def head(self) -> Head | None:
        """The committed head, as the last commit or reorganization left it."""
        return self._head

    @property
    def head_hash(self) -> bytes:
        return b"" if self._head is None else self._head.hash

    @property
    def head_number(self) -> int:
        return -1 if self._head is None else self._head.number

    @property
    def generation(self) -> int:
        """Bumps whenever in-flight state is thrown away (workers resync)."""
        return self._generation

    @property
    def in_flight(self) -> int:
        """Executed blocks not yet committed or unwound."""
        return len(self._executed)

    def has_executed(self, block_hash: bytes) -> bool:
        return block_hash in self._executed

    def known_header(self, block_hash: bytes) -> tuple[BlockHeaderAPI, VMClass] | None:
        """A header in memory (in flight or recent); never reads the store."""
        return self._headers.get(block_hash)

    def header(self, block_hash: bytes) -> tuple[BlockHeaderAPI, VMClass] | None:
        """A known header by hash: in flight or recent, else from the store (a miss
        reads SQLite: call it on a thread, or after `load_header`)."""
        found = self._headers.get(block_hash)
        if found is not None:
            return found
        stored = self.store.get_header(block_hash)
        if stored is None:
            return None
        found = decode_header(self.schedule, stored[1])
        self._headers[block_hash] = found
        return found

    def ommers_of(self, block_hash: bytes) -> set[bytes]:
        return self._ommers.get(block_hash, set())

    def ancestor_hashes(self, parent_hash: bytes) -> list[bytes]:
        """Hashes of the parent and its ancestors, newest first, for BLOCKHASH (reads
        the store for headers not in memory: call it on a thread)."""
        hashes: list[bytes] = []
        current = parent_hash
        while current and len(hashes) < MAX_PREV_HEADER_DEPTH:
            found = self.header(current)
            if found is None:
                break
            hashes.append(current)
            header = found[0]
            if header.block_number == 0:
                break
            current = header.parent_hash
        return hashes

    def rejected_ancestor(self, parent_hash: bytes) -> Rejection | None:
        """The rejected block a block with this parent descends from, if any: the
        parent itself, or one of its ancestors above the committed head (memory only)."""
        current = parent_hash
        for _ in range(MAX_PREV_HEADER_DEPTH):
            rejection = self._rejected.get(current)
            if rejection is not None:
                return rejection
            found = self._headers.get(current)
            if found is None or found[0].block_number <= self.head_number:
                return None
            current = found[0].parent_hash
        return None

    def check_ancestry(self, parent_hash: bytes) -> None:
        """Raise `InvalidBlock` for a descendant of a rejected block, naming it."""
        rejection = self.rejected_ancestor(parent_hash)
        if rejection is not None:
            raise InvalidAncestor(rejection, f"descends from invalid {rejection.describe()}")

    # -- transitions -----------------------------------------------------------------

    def remember(self, header: BlockHeaderAPI, vm_class: VMClass, ommers: frozenset[bytes] = frozenset()) -> None:
        """A decoded header (prefetch): parent of the blocks behind it."""
        self._headers[header.hash] = (header, vm_class)
        if ommers:
            self._ommers[header.hash] = set(ommers)
        if len(self._headers) > 4 * MAX_PREV_HEADER_DEPTH:
            for key in list(self._headers)[:MAX_PREV_HEADER_DEPTH]:
                self._headers.pop(key)
                self._ommers.pop(key, None)

    def executed(self, header: BlockHeaderAPI, diff: StateDiff, *, off_best_chain: bool) -> None:
        """The block ran: its diff goes on the overlay, it becomes the tip. A block off
        the best chain may lose fork choice at commit: nothing may run speculatively
        on top of it, so the next block waits for the pipeline to drain."""
        self.overlay.push(header.block_number, diff)
        self._tip = NO_TIP if off_best_chain else header.hash
        self._executed[header.hash] = header.block_number
        self._notify()

    def merkleized(self, number: int, nodes: dict[bytes, bytes], accounts: dict[bytes, Account | None]) -> None:
        """The block's trie nodes and sealed accounts, readable before its commit."""
        self.overlay.add_merkleized(number, nodes, accounts)

    def committed(self, block_hash: bytes, head: Head, best: bytes) -> None:
        """The block is in the store: its diff leaves the overlay."""
        self._executed.pop(block_hash, None)
        if head.hash == block_hash:
            self.overlay.drop_committed(head.number)
        else:
            # It lost fork choice and the store switched back to the best head. Only a
            # block off the best chain can lose, and it ran alone: nothing else is on
            # the overlay.
            self.overlay.drop_above(-1)
            self._generation += 1
            self._tip = best
        self._head = head
        self._best = best
        self._notify()

    def switched(self, head: Head) -> None:
        """The store was reorganized (a side branch, or back to the best chain): the
        overlay is empty and workers must forget what they cached."""
        self._head = head
        self._tip = head.hash
        self._generation += 1

    def rejected(self, block_hash: bytes | None, number: int | None, error: InvalidBlock, *, executed: bytes | None = None) -> int | None:
        """Remember an invalid block (`block_hash`; None: do not name it) so its
        descendants are named as such: a descendant is remembered by the first
        invalid block of its line, which its own descendants then name. Returns the
        height to unwind to when the block `executed` had run (its diff, and those
        of blocks built on it, are on the overlay), else None."""
        if block_hash is not None:
            root = error.ancestor if isinstance(error, InvalidAncestor) and isinstance(error.ancestor, Rejection) else None
            self._rejected[block_hash] = root or Rejection(number, block_hash, error.code)
            while len(self._rejected) > MAX_REJECTED:
                self._rejected.popitem(last=False)
        if executed is not None and executed in self._executed and number is not None:
            return number - 1
        return None

    def unwound(self, to_number: int, tip: bytes) -> None:
        """Every executed block above `to_number` is thrown away; `tip` is the block
        the next one may run on (the rejected block's parent, or the best head)."""
        self.overlay.drop_above(to_number)
        self._executed = {h: n for h, n in self._executed.items() if n <= to_number}
        self._tip = tip
        self._generation += 1
        self._notify()

    # -- waiting -----------------------------------------------------------------------

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_in_flight_below(self, limit: int) -> None:
        """Wait until fewer than `limit` executed blocks await their commit."""
        while len(self._executed) >= limit:
            await self._changed.wait()

    async def wait_drained(self) -> None:
        await self.wait_in_flight_below(1)


class PackedOverlay:
    """The overlay's uncommitted diffs packed for a worker request: each diff packed once
    per (generation, block) and dropped once its block commits, since consecutive
    requests (blocks, chunks, pre-runs) carry the same diffs."""

    def __init__(self) -> None:
        self._packed: dict[tuple[int, int], bytes] = {}  # (generation, block) -> packed diff

    def diffs(self, chain: ChainState) -> list[tuple[int, bytes]]:
        """(block number, packed diff) of every uncommitted diff, oldest first."""
        generation, committed = chain.generation, chain.head_number
        diffs = []
        for number, diff in chain.overlay.diffs:
            key = (generation, number)
            if key not in self._packed:
                self._packed[key] = pack_diff(diff)
            diffs.append((number, self._packed[key]))
        self._packed = {key: packed for key, packed in self._packed.items() if key[0] == generation and key[1] > committed}
        return diffs
