"""State root of a block from the stored trie plus the block's diff.

Incremental: only the paths of dirty keys are re-encoded and re-hashed (one sorted
batch per storage trie, then one for the account trie), never the whole trie.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from eth_hash.auto import keccak

from state.account import BLANK_ROOT, Account
from state.diff import StateDiff
from state.trie import encode_account, encode_storage_value, update_root

GetAccount = Callable[[bytes], Account | None]
GetNode = Callable[[bytes, bytes, str], bytes]  # (hash, owner, nibble path): state.nodekeys


@dataclass(frozen=True)
class MerkleResult:
    """A block's new state root, the trie nodes it created, and every account it
    changed with its new storage root (`None`: deleted)."""

    root: bytes
    nodes: dict[bytes, bytes]
    accounts: dict[bytes, Account | None]


def merkleize(diff: StateDiff, parent_root: bytes, get_account: GetAccount, get_node: GetNode) -> MerkleResult:
    """The state after applying `diff` on `parent_root`; `diff` is left as it is.

    `get_account` reads the pre-block account (for its storage root); `get_node` reads
    a stored node by hash and where it sits (owner: b"" for the account trie, the
    hashed address for a storage trie; nibble path). The result's
    `accounts` are what the commit writes (`sealed`) and what the next block's
    merkleization reads as its pre-state.
    """
    nodes: dict[bytes, bytes] = {}

    def reader(owner: bytes) -> Callable[[bytes, str], bytes]:
        def node(node_hash: bytes, path: str) -> bytes:
            found = nodes.get(node_hash)
            return found if found is not None else get_node(node_hash, owner, path)

        return node

    account_changes: dict[bytes, bytes | None] = {}
    accounts: dict[bytes, Account | None] = {}
    for address in diff.touched_addresses():
        if address in diff.accounts:
            account = diff.accounts[address]
        else:
            account = get_account(address)
        if account is None:
            account_changes[keccak(address)] = None
            if address in diff.accounts:
                accounts[address] = None
            continue
        if address in diff.wiped:
            storage_root = BLANK_ROOT
        else:
            before = get_account(address)
            storage_root = BLANK_ROOT if before is None else before.storage_root
        slots = diff.storage.get(address)
        if slots:
            changes = {keccak(slot.to_bytes(32, "big")): (encode_storage_value(v) if v else None) for slot, v in slots.items()}
            storage_root, new_nodes = update_root(reader(keccak(address)), storage_root, changes, paths=True)
            nodes.update(new_nodes)
        if account.storage_root != storage_root:
            account = replace(account, storage_root=storage_root)
        accounts[address] = account
        account_changes[keccak(address)] = encode_account(account.nonce, account.balance, account.storage_root, account.code_hash)
    root, new_nodes = update_root(reader(b""), parent_root, account_changes, paths=True)
    nodes.update(new_nodes)
    return MerkleResult(root, nodes, accounts)


def sealed(diff: StateDiff, accounts: dict[bytes, Account | None]) -> StateDiff:
    """`diff` with the accounts merkleization completed (their storage roots): what is
    committed. A new diff; storage and code are shared, not copied."""
    return StateDiff(accounts={**diff.accounts, **accounts}, storage=diff.storage, wiped=diff.wiped, code=diff.code)
