"""What the stages share about the chain: store, overlay, known headers, the tip.

The *speculative tip* is the last block execution finished without error: the next
block executes on the overlay if its parent is that tip. Any other parent means the
pipeline must first drain (every in-flight block committed or rejected) so that the
state under the block is the committed head's.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import trio
from eth.abc import BlockHeaderAPI

from execution.decode import decode_header
from execution.forks import ForkSchedule, VMClass
from state.overlay import Overlay
from state.store import StateStore

MAX_PREV_HEADER_DEPTH = 256  # BLOCKHASH reaches 256 ancestors (Yellow Paper, BLOCKHASH)


@dataclass
class Chain:
    store: StateStore
    schedule: ForkSchedule
    overlay: Overlay = field(init=False)
    headers: dict[bytes, tuple[BlockHeaderAPI, VMClass]] = field(default_factory=dict)
    ommers: dict[bytes, set[bytes]] = field(default_factory=dict)
    tip: bytes = b""
    best: bytes = b""  # the head fork choice picked; the store's head may differ during a reorg
    in_flight: int = 0
    generation: int = 0  # bumps whenever in-flight state is thrown away (workers resync)
    _left: trio.Event = field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.overlay = Overlay(self.store)
        head = self.store.head()
        if head is not None:
            self.tip = self.best = head.hash

    @property
    def chain_id(self) -> int:
        return self.schedule.chain_id

    def header(self, block_hash: bytes) -> tuple[BlockHeaderAPI, VMClass] | None:
        """A known header by hash: in flight or recent, else from the store."""
        found = self.headers.get(block_hash)
        if found is not None:
            return found
        stored = self.store.get_header(block_hash)
        if stored is None:
            return None
        found = decode_header(self.schedule, stored[1])
        self.headers[block_hash] = found
        return found

    def remember(self, header: BlockHeaderAPI, vm_class: VMClass, ommers: set[bytes] = frozenset()) -> None:  # type: ignore[assignment]
        self.headers[header.hash] = (header, vm_class)
        if ommers:
            self.ommers[header.hash] = set(ommers)
        if len(self.headers) > 4 * MAX_PREV_HEADER_DEPTH:
            for key in list(self.headers)[: MAX_PREV_HEADER_DEPTH]:
                self.headers.pop(key)

    def ancestor_hashes(self, parent_hash: bytes) -> list[bytes]:
        """Hashes of the parent and its ancestors, newest first, for BLOCKHASH."""
        hashes = []
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

    def committed_head_hash(self) -> bytes:
        head = self.store.head()
        return b"" if head is None else head.hash

    # -- drain tracking ------------------------------------------------------------

    def block_entered(self) -> None:
        self.in_flight += 1

    def block_left(self) -> None:
        self.in_flight -= 1
        self._left.set()
        self._left = trio.Event()

    async def wait_in_flight_below(self, limit: int) -> None:
        """Wait until fewer than `limit` executed blocks await their commit."""
        while self.in_flight >= limit:
            await self._left.wait()

    async def wait_drained(self) -> None:
        await self.wait_in_flight_below(1)
