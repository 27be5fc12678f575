"""The genesis block: pre-state into flat tables and trie nodes, as block 0."""
from __future__ import annotations

from typing import Any

from eth_hash.auto import keccak

from state.account import BLANK_ROOT, Account
from state.diff import StateDiff
from state.merkle import merkleize, sealed
from state.store import BlockCommit


class GenesisMismatch(ValueError):
    """The allocation does not hash to the genesis header's state root."""


def alloc_diff(alloc: dict[bytes, dict[str, Any]]) -> StateDiff:
    """A diff creating every account of a genesis allocation.

    `alloc` maps address -> {"nonce": int, "balance": int, "code": bytes, "storage": {int: int}}.
    """
    diff = StateDiff()
    for address, fields in alloc.items():
        code = fields.get("code", b"")
        code_hash = keccak(code)
        if code:
            diff.code[code_hash] = code
        diff.accounts[address] = Account(fields.get("nonce", 0), fields.get("balance", 0), code_hash)
        slots = {slot: value for slot, value in fields.get("storage", {}).items() if value}
        if slots:
            diff.storage[address] = slots
    return diff


def genesis_commit(alloc: dict[bytes, dict[str, Any]], header_hash: bytes, header_rlp: bytes, state_root: bytes, difficulty: int) -> BlockCommit:
    """Block 0 as one commit; raises `GenesisMismatch` if the roots differ."""
    diff = alloc_diff(alloc)

    def no_node(node_hash: bytes, owner: bytes = b"", path: str = "") -> bytes:
        raise KeyError(node_hash)

    result = merkleize(diff, BLANK_ROOT, lambda address: None, no_node)
    root = result.root
    if root != state_root:
        raise GenesisMismatch(f"genesis allocation hashes to 0x{root.hex()}, the header says 0x{state_root.hex()}")
    return BlockCommit(
        number=0,
        hash=header_hash,
        parent_hash=b"\x00" * 32,
        state_root=root,
        header_rlp=header_rlp,
        block_rlp=b"",
        total_difficulty=difficulty,
        diff=sealed(diff, result.accounts),
        trie_nodes=result.nodes,
    )
