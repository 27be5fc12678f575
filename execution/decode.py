"""Block RLP to py-evm objects, with the fork chosen from the header itself.

The fork decides the block's layout (London adds the base fee, Shanghai withdrawals,
Cancun blob fields, Prague the requests hash) and its transaction types (py-evm's
Prague builder decodes [EIP-7702] set-code transactions, type 4). The header names
the block number and timestamp that decide the fork: read those two from the raw list
first, then decode with the right class.

[EIP-7702]: https://eips.ethereum.org/EIPS/eip-7702
"""
from __future__ import annotations

from typing import Any

import rlp
from eth.abc import BlockAPI, BlockHeaderAPI
from eth.exceptions import UnrecognizedTransactionType
from eth.vm.forks import LondonVM

from execution.forks import ForkSchedule, VMClass, is_merged
from pipeline.errors import BlockError, InvalidBlock, TxError



def _number_and_time(header_fields: Any) -> tuple[int, int]:
    if not isinstance(header_fields, list) or len(header_fields) < 15:
        raise InvalidBlock(BlockError.INCORRECT_BLOCK_FORMAT, "header is not a list of at least 15 fields")
    number, timestamp = header_fields[8], header_fields[11]
    if not isinstance(number, bytes) or not isinstance(timestamp, bytes):
        raise InvalidBlock(BlockError.RLP_STRUCTURES_ENCODING, "number or timestamp is not a byte string")
    return int.from_bytes(number, "big"), int.from_bytes(timestamp, "big")


def decode_block(schedule: ForkSchedule, data: bytes) -> tuple[BlockAPI, VMClass]:
    """Decode a block; raise `InvalidBlock` with an RLP code when it does not decode."""
    block, vm_class, _ = decode_block_and_transactions(schedule, data)
    return block, vm_class


def decode_block_and_transactions(schedule: ForkSchedule, data: bytes) -> tuple[BlockAPI, VMClass, list[bytes]]:
    """`decode_block`, and each transaction's encoding as the block carries it (a
    typed transaction is its own byte string there; a legacy one is a list): what the
    transactions root is over and what workers decode, without encoding it again."""
    try:
        raw = rlp.decode(data)
    except rlp.exceptions.DecodingError as exc:
        raise InvalidBlock(BlockError.RLP_STRUCTURES_ENCODING, f"block RLP does not decode: {exc}") from exc
    if not isinstance(raw, list) or len(raw) < 3:
        raise InvalidBlock(BlockError.RLP_STRUCTURES_ENCODING, "block is not a list of header, transactions, ommers")
    number, timestamp = _number_and_time(raw[0])
    vm_class = schedule.vm_class(number, timestamp)
    if is_merged(vm_class) and isinstance(raw[2], list) and raw[2]:
        raise InvalidBlock(BlockError.IMPORT_IMPOSSIBLE_UNCLES_OVER_PARIS, "ommers after the merge", number=number)
    block_class = vm_class.get_block_class()
    expected_fields = len(block_class._meta.fields) if hasattr(block_class, "_meta") else None
    if expected_fields is not None and len(raw) != expected_fields:
        code = BlockError.INCORRECT_BLOCK_FORMAT if len(raw) > expected_fields else BlockError.RLP_STRUCTURES_ENCODING
        raise InvalidBlock(code, f"block has {len(raw)} parts, {vm_class.fork} blocks have {expected_fields}", number=number)
    _check_header_layout(schedule, vm_class, raw[0], number, timestamp)
    try:
        block = rlp.decode(data, sedes=block_class)
    except UnrecognizedTransactionType as exc:
        tx_code = {3: TxError.TYPE_3_TX_PRE_FORK, 4: TxError.TYPE_4_TX_PRE_FORK}.get(exc.args[0], TxError.TYPE_NOT_SUPPORTED)
        raise InvalidBlock(tx_code, f"transaction type {exc.args[0]} is not valid in {vm_class.fork}", number=number) from exc
    except Exception as exc:  # rlp and py-evm raise many types for malformed input
        raise InvalidBlock(_decode_code(exc), f"block does not decode as {vm_class.fork}: {exc}", number=number) from exc
    encoded = [item if isinstance(item, bytes) else rlp.encode(item) for item in raw[1]]
    return block, vm_class, encoded


def _check_header_layout(schedule: ForkSchedule, vm_class: VMClass, header_fields: list, number: int, timestamp: int) -> None:
    """A header with the field count of another fork (ethereum/tests names these)."""
    header_class = vm_class.get_block_class()._meta.fields[0][1]
    expected = len(header_class._meta.fields)
    if len(header_fields) == expected:
        return
    london = issubclass(vm_class, LondonVM)
    if london and len(header_fields) == 15:
        parent_london = number > 0 and issubclass(schedule.vm_class(number - 1, timestamp), LondonVM)
        code = BlockError.IMPORT_IMPOSSIBLE_LEGACY_WRONG_PARENT if parent_london else BlockError.IMPORT_IMPOSSIBLE_LEGACY
    elif not london and len(header_fields) == 16:
        code = BlockError.IMPORT_IMPOSSIBLE_LONDON_WRONG_PARENT
    else:
        code = BlockError.INCORRECT_BLOCK_FORMAT
    raise InvalidBlock(code, f"header has {len(header_fields)} fields, {vm_class.fork} headers have {expected}", number=number)


def _decode_code(exc: Exception) -> BlockError:
    text = str(exc).lower()
    if "too long" in text or "too large" in text:
        return BlockError.RLP_INVALID_FIELD_OVERFLOW_64
    return BlockError.RLP_STRUCTURES_ENCODING


def decode_header(schedule: ForkSchedule, data: bytes) -> tuple[BlockHeaderAPI, VMClass]:
    number, timestamp = _number_and_time(rlp.decode(data))
    vm_class = schedule.vm_class(number, timestamp)
    header_class = vm_class.get_block_class()._meta.fields[0][1]
    return rlp.decode(data, sedes=header_class), vm_class


def _signature_checked() -> None:
    """Stands in for py-evm's signature check once the sender has been recovered."""


def mark_senders(transactions: Any, senders: list[bytes | None]) -> None:
    """`mark_sender` for every transaction whose sender was recovered elsewhere (the
    workers); None: its signature did not recover, left for validation to report."""
    for tx, sender in zip(transactions, senders):
        if sender is not None:
            mark_sender(tx, sender)


def mark_sender(tx: Any, sender: bytes) -> None:
    """Record a transaction's recovered sender on it, as py-evm's cached property
    would, and skip py-evm's later signature re-checks: a signature from which a
    public key was recovered verifies against that key by construction. py-evm
    otherwise recovers up to twice more and verifies once per legacy transaction."""
    tx.__dict__["sender"] = sender
    tx.__dict__["check_signature_validity"] = _signature_checked


def skip_signature_check(tx: Any) -> None:
    """Leave the signature to sender recovery, which runs later (in a worker): a
    signature that does not recover fails the transaction there."""
    tx.__dict__["check_signature_validity"] = _signature_checked
