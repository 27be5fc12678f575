"""Speculative execution: every transaction of a block against the pre-block state.

Each transaction runs alone on a fresh account database over the same read-only view,
with deferred credits (see `execution.account_db`), and comes back as a
`SpecResult`: its read set, write set, gas and logs. Nothing here depends on the
order of the other transactions: that is the point. In-order validation
(`execution.strategies.validate_in_order`) decides which results still hold.

The `declared` strategy adds chains: transactions predicted to depend on each other
run one after another on one database, each seeing the writes of the chain's
earlier ones.

Results cross process boundaries as msgpack: integers of 256 bits become bytes
(msgpack stops at 64), keys become lists.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Iterable

import msgpack
import rlp
from eth.abc import BlockHeaderAPI, SignedTransactionAPI
from eth_utils import ValidationError

from execution.account_db import RecordingAccountDB
from execution.checks import check_transaction_state
from state.cache import MISSING
from state.overlay import Overlay
from pipeline.errors import InvalidBlock


@dataclass
class SpecResult:
    index: int
    ok: bool  # ran; False when the transaction was invalid on the pre-block state
    reads: dict[tuple, Any] = field(default_factory=dict)
    writes: dict[tuple, Any] = field(default_factory=dict)
    new_code: dict[bytes, bytes] = field(default_factory=dict)
    gas_used: int = 0
    success: bool = False
    logs: list[tuple[bytes, list[int], bytes]] = field(default_factory=list)
    sender: bytes | None = None  # None: the signature does not recover
    bloom: int = 0  # of this transaction's logs
    logs_rlp: bytes = b"\xc0"  # the logs, RLP-encoded as in the receipt


def speculate(vm: Any, header: BlockHeaderAPI, txs: Iterable[tuple[int, SignedTransactionAPI, int | None]], chains: dict[int, RecordingAccountDB] | None = None, *, hints: bool = False) -> list[SpecResult]:
    """Run each transaction on the pre-block view of `vm`'s state.

    A transaction with chain None runs alone; one with a chain id runs after the
    earlier transactions of its chain (`declared` strategy), on a database kept in
    `chains` between calls, so that it sees their writes. With `hints` (prefetch's
    pre-run, whose results are only the keys they touch) the sender's nonce is
    taken from the transaction (the view may lag the sender's transactions in
    flight), and a creation's slots are read from memory only (`SlotsFromMemory`):
    calls need the real values more (a zero balance reverts a transfer early)."""
    state = vm.state
    reader = state._account_db._reader
    from_memory = SlotsFromMemory(reader) if hints and isinstance(reader, Overlay) else reader
    chains = {} if chains is None else chains
    results = []
    for index, tx, chain in txs:
        try:
            sender = tx.sender
        except Exception:  # eth-keys raises several types for bad signatures
            results.append(SpecResult(index, False))
            continue
        db = chains.get(chain) if chain is not None else None
        if db is None:
            db = RecordingAccountDB(from_memory if not tx.to and chain is None else reader)
            db.deferred_credits = True
            if chain is not None:
                chains[chain] = db
        state._account_db = db
        db.begin_transaction()
        code_before = len(db._new_code)
        try:
            if hints:
                db.set_nonce(sender, tx.nonce)
            check_transaction_state(state, header, tx, index)
            computation = state.apply_transaction(tx)
        except (InvalidBlock, ValidationError):
            results.append(SpecResult(index, False, reads=db.reads, sender=sender))
            chains.pop(chain, None)  # the chain's later transactions start afresh
            continue
        receipt = vm.make_receipt(SimpleNamespace(gas_used=0), tx, computation, state)
        reads = db.reads
        writes = db.end_transaction()
        # the code this transaction created (also code it created and destroyed: the
        # sequential run stores that too), and any code its writes point to
        new_code = dict(list(db._new_code.items())[code_before:])
        new_code.update((h, db._new_code[h]) for k, h in writes.items() if k[0] == "code" and h in db._new_code)
        logs = [(log.address, list(log.topics), log.data) for log in receipt.logs]
        logs_rlp = rlp.encode(receipt.logs) if logs else b"\xc0"
        results.append(SpecResult(index, True, reads, writes, new_code, receipt.gas_used, not computation.is_error, logs, sender, receipt.bloom, logs_rlp))
    return results


class SlotsFromMemory:
    """A pre-run's view of an overlay: accounts and code as the overlay has them, but a
    storage slot in neither its diffs nor the store's cache reads as zero instead of
    waiting on the disk. The pre-run wants the keys a transaction touches, which a
    slot's value seldom decides, and one disk read per slot, one after another on the
    worker, made it slower than the block's execution at 10M accounts."""

    def __init__(self, overlay: Any) -> None:
        self._overlay = overlay

    def get_storage(self, address: bytes, slot: int) -> int:
        value = self._overlay.storage_in_diffs(address, slot)
        if value is not None:
            return int(value)
        cached = self._overlay.store.slots.peek((address, slot))
        return 0 if cached is MISSING else int(cached)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._overlay, name)


# -- wire format ---------------------------------------------------------------------

def _int(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _key_out(key: tuple, value: Any) -> list:
    kind = key[0]
    if kind == "slot":
        return [kind, key[1], _int(key[2]), _int(value)]
    if kind in ("balance", "credit"):
        return [kind, key[1], None, _int(value)]
    return [kind, key[1], None, value]


def _key_in(item: list) -> tuple[tuple, Any]:
    kind, address, slot, value = item
    if kind == "slot":
        return (kind, address, int.from_bytes(slot, "big")), int.from_bytes(value, "big")
    if kind in ("balance", "credit"):
        return (kind, address), int.from_bytes(value, "big")
    return (kind, address), value


def pack_results(results: list[SpecResult]) -> bytes:
    return msgpack.packb(
        [
            [
                r.index,
                r.ok,
                [_key_out(k, v) for k, v in r.reads.items()],
                [_key_out(k, v) for k, v in r.writes.items()],
                list(r.new_code.items()),
                r.gas_used,
                r.success,
                [[a, [_int(t) for t in topics], data] for a, topics, data in r.logs],
                r.sender,
                _int(r.bloom),
                r.logs_rlp,
            ]
            for r in results
        ],
        use_bin_type=True,
    )


def unpack_results(data: bytes) -> list[SpecResult]:
    out = []
    for index, ok, reads, writes, new_code, gas_used, success, logs, sender, bloom, logs_rlp in msgpack.unpackb(data, raw=False):
        out.append(
            SpecResult(
                index,
                ok,
                dict(_key_in(item) for item in reads),
                dict(_key_in(item) for item in writes),
                {h: c for h, c in new_code},
                gas_used,
                success,
                [(a, [int.from_bytes(t, "big") for t in topics], d) for a, topics, d in logs],
                sender,
                int.from_bytes(bloom, "big"),
                logs_rlp,
            )
        )
    return out
