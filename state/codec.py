"""Compact byte encodings of flat-state rows and change sets.

Rows are fixed-layout bytes rather than RLP so that a read decodes with one slice per
field (RLP decoding of an account costs about ten times more, DESIGN.md section 8).
"""
from __future__ import annotations

import msgpack

from state.account import Account
from state.diff import StateDiff

_NONCE_BYTES = 8  # nonces go up to 2**64 - 1 (EIP-2681), too wide for SQLite's INTEGER


def encode_account(account: Account) -> bytes:
    """nonce (8 bytes) | code hash (32) | storage root (32) | balance (minimal)."""
    balance = account.balance.to_bytes((account.balance.bit_length() + 7) // 8, "big")
    return account.nonce.to_bytes(_NONCE_BYTES, "big") + account.code_hash + account.storage_root + balance


def decode_account(data: bytes) -> Account:
    return Account(
        nonce=int.from_bytes(data[:8], "big"),
        balance=int.from_bytes(data[72:], "big"),
        code_hash=data[8:40],
        storage_root=data[40:72],
    )


def encode_slot(slot: int) -> bytes:
    return slot.to_bytes(32, "big")


def encode_int(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def decode_int(data: bytes) -> int:
    return int.from_bytes(data, "big")


def pack_diff(diff: StateDiff) -> bytes:
    """msgpack form of a diff, used for change sets (both directions)."""
    packed: bytes = msgpack.packb(
        [
            [[a, None if acc is None else encode_account(acc)] for a, acc in diff.accounts.items()],
            [[a, [[encode_slot(s), encode_int(v)] for s, v in slots.items()]] for a, slots in diff.storage.items()],
            sorted(diff.wiped),
            [[h, c] for h, c in diff.code.items()],
        ],
        use_bin_type=True,
    )
    return packed


def unpack_diff(data: bytes) -> StateDiff:
    accounts, storage, wiped, code = msgpack.unpackb(data, raw=False)
    diff = StateDiff()
    diff.wiped = set(wiped)
    diff.accounts = {a: None if acc is None else decode_account(acc) for a, acc in accounts}
    diff.storage = {a: {decode_int(s): decode_int(v) for s, v in slots} for a, slots in storage}
    diff.code = {h: c for h, c in code}
    return diff
