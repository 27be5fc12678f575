"""The view that execution reads: committed state plus uncommitted diffs.

While block N merkleizes and commits, block N+1 already executes: it must see N's
writes before they reach SQLite. An `Overlay` stacks the diffs of blocks that are
executed but not yet committed on top of the store; a diff leaves the stack once its
commit is visible in the store. Reads resolve newest first.

Copy on write: every change builds a new list or dict and swaps it in, so a reader
on another thread (execution, merkleization) iterates a consistent snapshot while
the event loop pushes or drops diffs.
"""
from __future__ import annotations

from state.account import Account
from state.diff import StateDiff
from state.store import StateStore


class Overlay:
    """Committed state (`store`) + diffs of in-flight blocks, oldest first."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.diffs: list[tuple[int, StateDiff]] = []
        self.nodes: dict[int, dict[bytes, bytes]] = {}
        # per merkleized block: its changed accounts with their new storage roots
        self.sealed: dict[int, dict[bytes, Account | None]] = {}

    def push(self, number: int, diff: StateDiff) -> None:
        self.diffs = [*self.diffs, (number, diff)]

    def add_merkleized(self, number: int, nodes: dict[bytes, bytes], accounts: dict[bytes, Account | None]) -> None:
        """Trie nodes a merkleized block created and its accounts with their new
        storage roots, readable before its commit."""
        self.nodes = {**self.nodes, number: nodes}
        self.sealed = {**self.sealed, number: accounts}

    def drop_committed(self, number: int) -> None:
        """Forget diffs of blocks up to `number`, now readable from the store."""
        self.diffs = [(n, d) for n, d in self.diffs if n > number]
        self.nodes = {n: d for n, d in self.nodes.items() if n > number}
        self.sealed = {n: d for n, d in self.sealed.items() if n > number}

    def drop_above(self, number: int) -> None:
        """Throw away in-flight work above `number` (a block failed or unwound)."""
        self.diffs = [(n, d) for n, d in self.diffs if n <= number]
        self.nodes = {n: d for n, d in self.nodes.items() if n <= number}
        self.sealed = {n: d for n, d in self.sealed.items() if n <= number}

    def get_trie_node(self, node_hash: bytes, owner: bytes = b"", path: str = "") -> bytes:
        """A trie node by hash; where it sits (state.nodekeys) finds it in the store."""
        for nodes in self.nodes.values():
            node = nodes.get(node_hash)
            if node is not None:
                return node
        return self.store.get_trie_node(node_hash, owner, path)

    def get_account(self, address: bytes) -> Account | None:
        for _, diff in reversed(self.diffs):
            if address in diff.accounts:
                return diff.accounts[address]
        return self.store.get_account(address)

    def get_account_below(self, number: int, address: bytes) -> Account | None:
        """The account as of the start of block `number` (its own and later diffs
        skipped), with the storage root its block's merkleization gave it."""
        sealed = self.sealed
        for n, diff in reversed(self.diffs):
            if n >= number:
                continue
            accounts = sealed.get(n, {})
            if address in accounts:
                return accounts[address]
            if address in diff.accounts:
                return diff.accounts[address]
        return self.store.get_account(address)

    def get_storage(self, address: bytes, slot: int) -> int:
        value = self.storage_in_diffs(address, slot)
        return self.store.get_storage(address, slot) if value is None else value

    def storage_in_diffs(self, address: bytes, slot: int) -> int | None:
        """A slot's value as the in-flight diffs leave it (None: no diff decides it)."""
        for _, diff in reversed(self.diffs):
            slots = diff.storage.get(address)
            if slots is not None and slot in slots:
                return slots[slot]
            if address in diff.wiped:
                return 0
        return None

    def get_code(self, code_hash: bytes) -> bytes | None:
        for _, diff in reversed(self.diffs):
            if code_hash in diff.code:
                return diff.code[code_hash]
        return self.store.get_code(code_hash)

    def has_storage(self, address: bytes, ignoring: frozenset[int] = frozenset()) -> bool:
        """Whether any slot of `address` outside `ignoring` is non-zero ([EIP-7610])."""
        zeroed: set[int] = set(ignoring)
        for _, diff in reversed(self.diffs):
            for slot, value in diff.storage.get(address, {}).items():
                if slot in zeroed:
                    continue
                if value:
                    return True
                zeroed.add(slot)
            if address in diff.wiped:
                return False
        return self.store.has_storage(address, zeroed)
