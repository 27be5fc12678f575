"""The account database py-evm executes against: ours, flat and recording.

py-evm's `State` asks its `account_db_class` for every balance, nonce, code and slot.
`RecordingAccountDB` answers from plain dicts over a read-only view of the pre-block
state (committed state + uncommitted diffs of earlier blocks), keeps an undo journal
for py-evm's snapshots, and records per transaction what it read (key -> value seen)
and what it wrote, per account field and per storage slot. No trie is touched here:
merkleization is a stage of its own.

Read keys:  ("nonce"|"balance"|"code"|"exists"|"has_storage", address) and
            ("slot", address, slot).
Write keys: ("account", address) -> (nonce, balance, code_hash) | None and
            ("slot", address, slot) -> value, plus ("wipe", address) -> True.
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

from eth.db.journal import get_next_checkpoint
from eth_hash.auto import keccak

from state.account import BLANK_ROOT, EMPTY_CODE_HASH, Account
from state.diff import StateDiff

AcctTuple = tuple[int, int, bytes]  # nonce, balance, code hash
_EMPTY: AcctTuple = (0, 0, EMPTY_CODE_HASH)
_ABSENT = object()


class StateReader(Protocol):
    """The pre-block view execution reads (an `Overlay`, or a dict-backed test view)."""

    def get_account(self, address: bytes) -> Account | None: ...
    def get_storage(self, address: bytes, slot: int) -> int: ...
    def get_code(self, code_hash: bytes) -> bytes | None: ...
    def has_storage(self, address: bytes, ignoring: frozenset[int] = frozenset()) -> bool: ...


class RecordingAccountDB:
    """py-evm `AccountDatabaseAPI` over a `StateReader`; one instance per block.

    py-evm passes `(db, state_root)` to the constructor: evmpipe passes the reader as
    `db`; the state root is ignored (state roots come from the merkleize stage, or
    from `root_hook` for pre-Byzantium receipts, which carry an intermediate root).
    """

    def __init__(self, reader: StateReader, state_root: bytes = BLANK_ROOT) -> None:
        self.root_hook: Callable[[StateDiff], bytes] | None = None
        self._reader = reader
        self._accounts: dict[bytes, AcctTuple | None] = {}
        self._storage: dict[bytes, dict[int, int]] = {}
        self._wiped: set[bytes] = set()
        self._code: dict[bytes, bytes] = {}
        self._new_code: dict[bytes, bytes] = {}
        self._journal: list[tuple] = []
        self._checkpoints: dict[int, int] = {}
        self._warm: set[Any] = set()
        # block level: what earlier transactions of this block changed
        self._block_accounts: set[bytes] = set()
        self._block_slots: dict[bytes, set[int]] = {}
        self._block_wiped: set[bytes] = set()
        # transaction level
        self._tx_accounts: set[bytes] = set()
        self._tx_slots: dict[bytes, set[int]] = {}
        self._tx_wiped: dict[bytes, tuple[dict[int, int], bool]] = {}  # pre-wipe slots, for originals
        self._tx_wipes: set[bytes] = set()
        self._originals: dict[tuple[bytes, int], int] = {}
        self.reads: dict[tuple, Any] = {}
        self.recording = True

    # -- reads -------------------------------------------------------------------

    def _account(self, address: bytes) -> AcctTuple | None:
        try:
            return self._accounts[address]
        except KeyError:
            account = self._reader.get_account(address)
            value = None if account is None else (account.nonce, account.balance, account.code_hash)
            self._accounts[address] = value
            return value

    def _read(self, key: tuple, value: Any) -> Any:
        if self.recording and key not in self.reads and key[1] not in self._tx_accounts:
            self.reads[key] = value
        return value

    def get_balance(self, address: bytes) -> int:
        account = self._account(address)
        return self._read(("balance", address), 0 if account is None else account[1])

    def get_nonce(self, address: bytes) -> int:
        account = self._account(address)
        return self._read(("nonce", address), 0 if account is None else account[0])

    def get_code_hash(self, address: bytes) -> bytes:
        account = self._account(address)
        return self._read(("code", address), EMPTY_CODE_HASH if account is None else account[2])

    def get_code(self, address: bytes) -> bytes:
        code_hash = self.get_code_hash(address)
        if code_hash == EMPTY_CODE_HASH:
            return b""
        code = self._code.get(code_hash)
        if code is None:
            code = self._reader.get_code(code_hash)
            if code is None:
                raise LookupError(f"missing code {code_hash.hex()} of account 0x{address.hex()}")
            self._code[code_hash] = code
        return code

    def account_exists(self, address: bytes) -> bool:
        return self._read(("exists", address), self._account(address) is not None)

    def account_is_empty(self, address: bytes) -> bool:
        return self.get_nonce(address) == 0 and self.get_balance(address) == 0 and self.get_code_hash(address) == EMPTY_CODE_HASH

    def account_has_code_or_nonce(self, address: bytes) -> bool:
        """Used by py-evm only for CREATE collisions; also true for an account with
        storage, as [EIP-7610] requires (py-evm 0.12.1b1 checks code and nonce only)."""
        if self.get_nonce(address) != 0 or self.get_code_hash(address) != EMPTY_CODE_HASH:
            return True
        return self._has_storage(address)

    def _has_storage(self, address: bytes) -> bool:
        slots = self._storage.get(address, {})
        if any(slots.values()):
            return True
        if address in self._wiped:
            return False
        known_zero = frozenset(s for s, v in slots.items() if v == 0)
        result = self._reader.has_storage(address, known_zero)
        if not self._tx_slots.get(address) and address not in self._tx_wipes:
            # only a transaction-start value is a read; after own writes it is not
            self._read(("has_storage", address), result)
        return result

    def _slot(self, address: bytes, slot: int) -> int:
        slots = self._storage.get(address)
        if slots is not None and slot in slots:
            return slots[slot]
        value = 0 if address in self._wiped else self._reader.get_storage(address, slot)
        self._storage.setdefault(address, {})[slot] = value
        return value

    def get_storage(self, address: bytes, slot: int, from_journal: bool = True) -> int:
        if not from_journal:
            return self._original(address, slot)
        value = self._slot(address, slot)
        tx_slots = self._tx_slots.get(address)
        if self.recording and (tx_slots is None or slot not in tx_slots) and address not in self._tx_wipes:
            self.reads.setdefault(("slot", address, slot), value)
        return value

    def _original(self, address: bytes, slot: int) -> int:
        """The slot's value when the transaction started ([EIP-2200] "original value")."""
        key = (address, slot)
        if key in self._originals:
            return self._originals[key]
        if address in self._tx_wiped:
            before, was_wiped = self._tx_wiped[address]
            if slot in before:
                return before[slot]
            return 0 if was_wiped else self._reader.get_storage(address, slot)
        return self.get_storage(address, slot)

    # -- writes ------------------------------------------------------------------

    def _set_account(self, address: bytes, value: AcctTuple | None) -> None:
        self._journal.append(("account", address, self._accounts.get(address, _ABSENT), address in self._tx_accounts))
        self._accounts[address] = value
        self._tx_accounts.add(address)

    def set_balance(self, address: bytes, balance: int) -> None:
        nonce, _, code_hash = self._account(address) or _EMPTY
        self._set_account(address, (nonce, balance, code_hash))

    def set_nonce(self, address: bytes, nonce: int) -> None:
        _, balance, code_hash = self._account(address) or _EMPTY
        self._set_account(address, (nonce, balance, code_hash))

    def increment_nonce(self, address: bytes) -> None:
        self.set_nonce(address, self.get_nonce(address) + 1)

    def set_code(self, address: bytes, code: bytes) -> None:
        code_hash = keccak(code)
        self._code[code_hash] = code
        self._new_code[code_hash] = code
        nonce, balance, _ = self._account(address) or _EMPTY
        self._set_account(address, (nonce, balance, code_hash))

    def delete_code(self, address: bytes) -> None:
        nonce, balance, _ = self._account(address) or _EMPTY
        self._set_account(address, (nonce, balance, EMPTY_CODE_HASH))

    def touch_account(self, address: bytes) -> None:
        self._set_account(address, self._account(address) or _EMPTY)

    def set_storage(self, address: bytes, slot: int, value: int) -> None:
        key = (address, slot)
        if key not in self._originals:
            self._originals[key] = self._original(address, slot)
        old = self._slot(address, slot)
        tx_slots = self._tx_slots.setdefault(address, set())
        self._journal.append(("slot", address, slot, old, slot in tx_slots))
        tx_slots.add(slot)
        self._storage[address][slot] = value

    def delete_storage(self, address: bytes) -> None:
        """Wipe all storage of `address`: one operation, no scan of its slots."""
        if address not in self._tx_wiped:
            self._tx_wiped[address] = (dict(self._storage.get(address, {})), address in self._wiped)
        self._journal.append(
            ("wipe", address, self._storage.get(address), address in self._wiped, set(self._tx_slots.get(address, ())), address in self._tx_wipes)
        )
        self._storage[address] = {}
        self._wiped.add(address)
        self._tx_wipes.add(address)
        self._tx_slots[address] = set()

    def delete_account(self, address: bytes) -> None:
        self.delete_storage(address)
        self._set_account(address, None)

    # -- access lists (EIP-2929) --------------------------------------------------

    def is_address_warm(self, address: bytes) -> bool:
        return address in self._warm

    def mark_address_warm(self, address: bytes) -> None:
        if address not in self._warm:
            self._warm.add(address)
            self._journal.append(("warm", address))

    def is_storage_warm(self, address: bytes, slot: int) -> bool:
        return (address, slot) in self._warm

    def mark_storage_warm(self, address: bytes, slot: int) -> None:
        key = (address, slot)
        if key not in self._warm:
            self._warm.add(key)
            self._journal.append(("warm", key))

    # -- snapshots ---------------------------------------------------------------

    def record(self) -> int:
        """A checkpoint id from py-evm's own counter: its transient storage journal
        (Cancun) records the same ids and must never see one twice."""
        checkpoint = get_next_checkpoint()
        self._checkpoints[checkpoint] = len(self._journal)
        return checkpoint

    def commit(self, checkpoint: int) -> None:
        """Nested changes become part of the enclosing frame: nothing to do."""

    def discard(self, checkpoint: int) -> None:
        journal = self._journal
        length = self._checkpoints.pop(checkpoint)
        while len(journal) > length:
            entry = journal.pop()
            kind = entry[0]
            if kind == "account":
                _, address, old, was_tx_dirty = entry
                if old is _ABSENT:
                    self._accounts.pop(address, None)
                else:
                    self._accounts[address] = old
                if not was_tx_dirty:
                    self._tx_accounts.discard(address)
            elif kind == "slot":
                _, address, slot, old, was_tx_dirty = entry
                self._storage[address][slot] = old
                if not was_tx_dirty:
                    self._tx_slots[address].discard(slot)
            elif kind == "wipe":
                _, address, old_slots, was_wiped, old_tx_slots, was_tx_wiped = entry
                if old_slots is None:
                    self._storage.pop(address, None)
                else:
                    self._storage[address] = old_slots
                if not was_wiped:
                    self._wiped.discard(address)
                self._tx_slots[address] = old_tx_slots
                if not was_tx_wiped:
                    self._tx_wipes.discard(address)
            else:  # warm
                self._warm.discard(entry[1])

    # -- transaction boundaries ----------------------------------------------------

    def lock_changes(self) -> None:
        """Start of a transaction: py-evm calls this before each one."""
        self.begin_transaction()

    def begin_transaction(self) -> None:
        self._journal.clear()
        self._checkpoints.clear()
        self._warm.clear()
        self._tx_accounts = set()
        self._tx_slots = {}
        self._tx_wiped = {}
        self._tx_wipes = set()
        self._originals = {}
        self.reads = {}

    def end_transaction(self) -> dict[tuple, Any]:
        """Fold the transaction's writes into the block; return them (write set)."""
        writes: dict[tuple, Any] = {}
        for address in self._tx_wipes:
            writes[("wipe", address)] = True
            self._block_wiped.add(address)
            self._block_slots[address] = set()
        for address in self._tx_accounts:
            writes[("account", address)] = self._accounts[address]
            self._block_accounts.add(address)
        for address, slots in self._tx_slots.items():
            block_slots = self._block_slots.setdefault(address, set())
            for slot in slots:
                writes[("slot", address, slot)] = self._storage[address][slot]
                block_slots.add(slot)
        self.begin_transaction()
        return writes

    def block_diff(self) -> StateDiff:
        """Everything the block changed so far, with final values."""
        diff = StateDiff()
        diff.wiped = set(self._block_wiped)
        for address in self._block_accounts:
            value = self._accounts[address]
            diff.accounts[address] = None if value is None else Account(value[0], value[1], value[2])
        for address, slots in self._block_slots.items():
            if slots:
                values = self._storage[address]
                diff.storage[address] = {slot: values[slot] for slot in slots}
        diff.code = dict(self._new_code)
        return diff

    # -- roots -------------------------------------------------------------------

    @property
    def state_root(self) -> bytes:
        return BLANK_ROOT

    @state_root.setter
    def state_root(self, value: bytes) -> None:
        """py-evm resets this on revert; our journal already restored the state."""

    def has_root(self, state_root: bytes) -> bool:
        return False

    def make_state_root(self) -> bytes:
        """Pre-Byzantium receipts carry the state root after each transaction."""
        if self.root_hook is None:
            raise RuntimeError("no state root hook configured for an intermediate root")
        pending = self.block_diff()
        pending.merge(self._tx_diff())
        return self.root_hook(pending)

    def _tx_diff(self) -> StateDiff:
        diff = StateDiff()
        diff.wiped = set(self._tx_wipes)
        for address in self._tx_accounts:
            value = self._accounts[address]
            diff.accounts[address] = None if value is None else Account(value[0], value[1], value[2])
        for address, slots in self._tx_slots.items():
            if slots:
                diff.storage[address] = {slot: self._storage[address][slot] for slot in slots}
        return diff

    def persist(self) -> None:
        raise RuntimeError("evmpipe commits through its commit stage, not through py-evm")
