"""A block's effect on state, as data.

A `StateDiff` is what execution of one block (or one transaction) leaves behind:
the final value of every account and storage slot it changed, the accounts whose
storage was wiped first, and the code it created. Diffs stack: the overlay reads
through a list of them, the merkleizer hashes one, the store commits one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from state.account import Account

Address = bytes


@dataclass(slots=True)
class StateDiff:
    """Final values written by a block; `None` for an account means deleted.

    `wiped` names accounts whose whole storage was cleared before the slot writes in
    `storage` were applied (SELFDESTRUCT, or a CREATE over an address that had
    storage): a first-class operation, so nobody scans all slots to find them.
    """

    accounts: dict[Address, Account | None] = field(default_factory=dict)
    storage: dict[Address, dict[int, int]] = field(default_factory=dict)
    wiped: set[Address] = field(default_factory=set)
    code: dict[bytes, bytes] = field(default_factory=dict)

    def set_account(self, address: Address, account: Account | None) -> None:
        self.accounts[address] = account

    def set_storage(self, address: Address, slot: int, value: int) -> None:
        self.storage.setdefault(address, {})[slot] = value

    def wipe_storage(self, address: Address) -> None:
        self.wiped.add(address)
        self.storage.pop(address, None)

    def merge(self, later: StateDiff) -> None:
        """Apply `later` on top of this diff, in place (later writes win)."""
        for address in later.wiped:
            self.wipe_storage(address)
        self.accounts.update(later.accounts)
        for address, slots in later.storage.items():
            self.storage.setdefault(address, {}).update(slots)
        self.code.update(later.code)

    def touched_addresses(self) -> set[Address]:
        return set(self.accounts) | set(self.storage) | self.wiped

    def count_keys(self) -> int:
        return len(self.accounts) + sum(len(s) for s in self.storage.values())
