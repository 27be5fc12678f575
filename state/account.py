"""Accounts as plain data.

An account is the four fields the state trie commits to. Flat state keeps them in one
row; the storage root is filled in by merkleization, execution never needs it.
"""
from __future__ import annotations

from dataclasses import dataclass

from eth_hash.auto import keccak

EMPTY_CODE_HASH = keccak(b"")
BLANK_ROOT = bytes.fromhex("56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421")


@dataclass(frozen=True, slots=True)
class Account:
    """An account as the state trie stores it ([Yellow Paper] section 4.1)."""

    nonce: int = 0
    balance: int = 0
    code_hash: bytes = EMPTY_CODE_HASH
    storage_root: bytes = BLANK_ROOT


EMPTY_ACCOUNT = Account()
