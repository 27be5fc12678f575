"""The account database py-evm executes against: ours, flat and recording.

py-evm's `State` asks its `account_db_class` for every balance, nonce, code and slot.
`RecordingAccountDB` answers from plain dicts over a read-only view of the pre-block
state (committed state + uncommitted diffs of earlier blocks), keeps an undo journal
for py-evm's snapshots, and records per transaction what it read (key -> value seen
at transaction start) and what it wrote, per account field and per storage slot. No
trie is touched here: merkleization is a stage of its own.

Keys, the same shapes for reads and writes:

- ``("nonce" | "balance" | "code" | "exists", address)``: an account field (code is
  the code hash; exists is whether the account is in the state),
- ``("slot", address, slot)``: a storage slot,
- reads only: ``("has_storage", address)`` (EIP-7610 collision check),
- writes only: ``("wipe", address)`` (storage cleared, before this transaction's slot
  writes) and ``("credit", address)`` (a deferred balance increase, below).

Deferred credits (`deferred_credits=True`, used by speculative execution): a balance
increase of an account whose balance the transaction has not looked at (the fee
credit to the fee recipient, a value transfer's recipient) is kept as a commutative
``credit`` instead of a read and a write, so transactions that only pay the same
account do not conflict. Reading the balance later materializes it (a real read).
Emptiness and existence of an account with a pending credit are known without any
read: a positive credit makes it exist and be non-empty.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Protocol

from eth.db.journal import get_next_checkpoint
from eth_hash.auto import keccak

from state.account import BLANK_ROOT, EMPTY_CODE_HASH, Account
from state.diff import StateDiff

AcctTuple = tuple[int, int, bytes]  # nonce, balance, code hash
_EMPTY: AcctTuple = (0, 0, EMPTY_CODE_HASH)
_ABSENT = object()
_FIELDS = ("nonce", "balance", "code", "exists")
_ALL_FIELDS = frozenset(_FIELDS)


class StateReader(Protocol):
    """The pre-block view execution reads (an `Overlay`, or a dict-backed test view)."""

    def get_account(self, address: bytes) -> Account | None: ...
    def get_storage(self, address: bytes, slot: int) -> int: ...
    def get_code(self, code_hash: bytes) -> bytes | None: ...
    def has_storage(self, address: bytes, ignoring: frozenset[int] = frozenset()) -> bool: ...


class DictState:
    """A `StateReader` over plain dicts: a fixture's pre-state for the interpreter
    bench and the differential tests, with no store behind it."""

    def __init__(self, accounts: dict[bytes, Account], storage: dict[bytes, dict[int, int]], code: dict[bytes, bytes]) -> None:
        self.accounts, self.storage, self.code = accounts, storage, code

    def get_account(self, address: bytes) -> Account | None:
        return self.accounts.get(address)

    def get_storage(self, address: bytes, slot: int) -> int:
        return self.storage.get(address, {}).get(slot, 0)

    def get_code(self, code_hash: bytes) -> bytes | None:
        return self.code.get(code_hash)

    def has_storage(self, address: bytes, ignoring: frozenset[int] = frozenset()) -> bool:
        return any(v for s, v in self.storage.get(address, {}).items() if s not in ignoring)


class RecordingAccountDB:
    """py-evm `AccountDatabaseAPI` over a `StateReader`; one instance per block.

    py-evm passes `(db, state_root)` to the constructor: evmpipe passes the reader as
    `db`; the state root is ignored (state roots come from the merkleize stage, or
    from `root_hook` for pre-Byzantium receipts, which carry an intermediate root).
    """

    def __init__(self, reader: StateReader, state_root: bytes = BLANK_ROOT) -> None:
        self.root_hook: Callable[[StateDiff], bytes] | None = None
        self.deferred_credits = False
        self.recording = True
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
        self._begin()

    def _begin(self) -> None:
        self._journal.clear()
        self._checkpoints.clear()
        self._warm.clear()
        self._tx_fields: dict[bytes, frozenset[str]] = {}
        self._tx_slots: dict[bytes, set[int]] = {}
        self._tx_wiped: dict[bytes, tuple[dict[int, int], bool]] = {}  # pre-wipe slots, for originals
        self._tx_wipes: set[bytes] = set()
        self._credits: dict[bytes, int] = {}
        self._originals: dict[tuple[bytes, int], int] = {}
        self.reads: dict[tuple, Any] = {}

    # -- reads -------------------------------------------------------------------

    def _account(self, address: bytes) -> AcctTuple | None:
        try:
            return self._accounts[address]
        except KeyError:
            account = self._reader.get_account(address)
            value = None if account is None else (account.nonce, account.balance, account.code_hash)
            self._accounts[address] = value
            return value

    def _read(self, field: str, address: bytes, value: Any) -> Any:
        """Record a read of an account field unless this transaction wrote it first."""
        if self.recording and field not in self._tx_fields.get(address, ()):
            self.reads.setdefault((field, address), value)
        return value

    def get_balance(self, address: bytes) -> int:
        if address in self._credits:
            self._materialize(address)
        account = self._account(address)
        return self._read("balance", address, 0 if account is None else account[1])

    def get_nonce(self, address: bytes) -> int:
        account = self._account(address)
        return self._read("nonce", address, 0 if account is None else account[0])

    def get_code_hash(self, address: bytes) -> bytes:
        account = self._account(address)
        return self._read("code", address, EMPTY_CODE_HASH if account is None else account[2])

    def get_code(self, address: bytes) -> bytes:
        code_hash = self.get_code_hash(address)
        if code_hash == EMPTY_CODE_HASH:
            return b""
        return self.code_by_hash(code_hash, address)

    def code_by_hash(self, code_hash: bytes, address: bytes = b"") -> bytes:
        code = self._code.get(code_hash)
        if code is None:
            code = self._reader.get_code(code_hash)
            if code is None:
                raise LookupError(f"missing code {code_hash.hex()} of account 0x{address.hex()}")
            self._code[code_hash] = code
        return code

    def account_exists(self, address: bytes) -> bool:
        if self._credits.get(address, 0) > 0:
            return True  # a positive credit creates the account: no read needed
        return self._read("exists", address, self._account(address) is not None)

    def account_is_empty(self, address: bytes) -> bool:
        if self._credits.get(address, 0) > 0:
            return False  # its balance is at least the credit: no read needed
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
        if self.recording and not self._tx_slots.get(address) and address not in self._tx_wipes:
            # only a transaction-start value is a read; after own writes it is not
            self.reads.setdefault(("has_storage", address), result)
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

    def current(self, key: tuple) -> Any:
        """The value of a read key in the state as it is now, recording nothing: what
        in-order validation compares a speculative read with."""
        kind, address = key[0], key[1]
        if kind == "slot":
            return self._slot(address, key[2])
        if kind == "has_storage":
            recording, self.recording = self.recording, False
            try:
                return self._has_storage(address)
            finally:
                self.recording = recording
        account = self._account(address)
        if kind == "exists":
            return account is not None
        if account is None:
            return EMPTY_CODE_HASH if kind == "code" else 0
        return account[("nonce", "balance", "code").index(kind)]

    # -- writes ------------------------------------------------------------------

    def _set_account(self, address: bytes, value: AcctTuple | None, fields: Iterable[str]) -> None:
        old_fields = self._tx_fields.get(address)
        self._journal.append(("account", address, self._accounts.get(address, _ABSENT), old_fields))
        self._accounts[address] = value
        self._tx_fields[address] = (old_fields or frozenset()).union(fields)

    def _modify(self, address: bytes, field: str, value: Any) -> None:
        """Set one field. Creating the account is only right if it did not exist, so
        that is a read of its existence, and every field of the new account is then
        this transaction's to report."""
        account = self._account(address)
        fields: Iterable[str] = (field, "exists")
        if account is None:
            self._read("exists", address, False)
            account, fields = _EMPTY, _ALL_FIELDS
        nonce, balance, code_hash = account
        if field == "nonce":
            nonce = value
        elif field == "balance":
            balance = value
        else:
            code_hash = value
        self._set_account(address, (nonce, balance, code_hash), fields)

    def set_balance(self, address: bytes, balance: int) -> None:
        if address in self._credits:
            self._drop_credit(address)
        self._modify(address, "balance", balance)

    def set_nonce(self, address: bytes, nonce: int) -> None:
        self._modify(address, "nonce", nonce)

    def increment_nonce(self, address: bytes) -> None:
        self.set_nonce(address, self.get_nonce(address) + 1)

    def set_code(self, address: bytes, code: bytes) -> None:
        code_hash = keccak(code)
        self._code[code_hash] = code
        self._new_code[code_hash] = code
        self._modify(address, "code", code_hash)

    def delete_code(self, address: bytes) -> None:
        self._modify(address, "code", EMPTY_CODE_HASH)

    def touch_account(self, address: bytes) -> None:
        """Make the account exist (pre-EIP-161 touches keep empty accounts)."""
        account = self._account(address)
        if account is None and self._credits.get(address, 0) > 0:
            return  # the pending credit creates it
        self._set_account(address, account or _EMPTY, ("exists",))

    def credit(self, address: bytes, amount: int) -> None:
        """Add `amount` to a balance: deferred when allowed and the balance is unread."""
        balance_seen = ("balance", address) in self.reads or "balance" in self._tx_fields.get(address, ())
        if not self.deferred_credits or amount <= 0 or balance_seen:
            self.set_balance(address, self.get_balance(address) + amount)
            return
        self._journal.append(("credit", address, self._credits.get(address, _ABSENT)))
        self._credits[address] = self._credits.get(address, 0) + amount

    def _drop_credit(self, address: bytes) -> None:
        self._journal.append(("credit", address, self._credits.get(address, _ABSENT)))
        del self._credits[address]

    def _materialize(self, address: bytes) -> None:
        """Turn a pending credit into a real read of the balance and a write."""
        amount = self._credits[address]
        self._drop_credit(address)
        account = self._account(address)
        base = self._read("balance", address, 0 if account is None else account[1])
        self.set_balance(address, base + amount)

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
        if address in self._credits:
            self._drop_credit(address)
        self._set_account(address, None, _ALL_FIELDS)

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
            self._undo(journal.pop())

    def _undo(self, entry: tuple) -> None:
        kind = entry[0]
        if kind == "account":
            _, address, old, old_fields = entry
            if old is _ABSENT:
                self._accounts.pop(address, None)
            else:
                self._accounts[address] = old
            if old_fields is None:
                self._tx_fields.pop(address, None)
            else:
                self._tx_fields[address] = old_fields
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
        elif kind == "credit":
            _, address, old = entry
            if old is _ABSENT:
                self._credits.pop(address, None)
            else:
                self._credits[address] = old
        else:  # warm
            self._warm.discard(entry[1])

    # -- transaction boundaries ----------------------------------------------------

    def lock_changes(self) -> None:
        """Start of a transaction: py-evm calls this before each one."""
        self.begin_transaction()

    def begin_transaction(self) -> None:
        self._begin()

    def end_transaction(self) -> dict[tuple, Any]:
        """Fold the transaction's writes into the block; return them (the write set).

        Pending credits stay credits in the write set; in the block's own state they
        are applied now, so the next transaction sees exact balances."""
        writes: dict[tuple, Any] = {}
        for address in self._tx_wipes:
            writes[("wipe", address)] = True
            self._block_wiped.add(address)
            self._block_slots[address] = set()
        for address, fields in self._tx_fields.items():
            account = self._accounts[address]
            self._block_accounts.add(address)
            if account is None:
                writes[("exists", address)] = False
                continue
            for field in fields:
                writes[(field, address)] = True if field == "exists" else account[("nonce", "balance", "code").index(field)]
        for address, slots in self._tx_slots.items():
            block_slots = self._block_slots.setdefault(address, set())
            for slot in slots:
                writes[("slot", address, slot)] = self._storage[address][slot]
                block_slots.add(slot)
        credits = dict(self._credits)
        for address, amount in credits.items():
            writes[("credit", address)] = amount
        self._begin()
        for address, amount in credits.items():
            self._apply_credit(address, amount)
        return writes

    def _apply_credit(self, address: bytes, amount: int) -> None:
        nonce, balance, code_hash = self._account(address) or _EMPTY
        self._accounts[address] = (nonce, balance + amount, code_hash)
        self._block_accounts.add(address)

    def apply_writes(self, writes: dict[tuple, Any], new_code: dict[bytes, bytes]) -> None:
        """Apply a write set computed elsewhere (a speculative execution whose reads
        still hold) as if the transaction had run here: the block's state and its
        changed keys, directly (no journal: nothing here is ever reverted; this runs
        once per transaction in the one serial process)."""
        self._begin()
        for key in writes:
            if key[0] == "wipe":
                address = key[1]
                self._storage[address] = {}
                self._wiped.add(address)
                self._block_wiped.add(address)
                self._block_slots[address] = set()
        credits = []
        for key, value in writes.items():
            kind, address = key[0], key[1]
            if kind == "slot":
                self._storage.setdefault(address, {})[key[2]] = value
                self._block_slots.setdefault(address, set()).add(key[2])
            elif kind == "credit":
                credits.append((address, value))
            elif kind == "exists":
                self._accounts[address] = (self._account(address) or _EMPTY) if value else None
                self._block_accounts.add(address)
            elif kind in _FIELDS:
                nonce, balance, code_hash = self._account(address) or _EMPTY
                if kind == "nonce":
                    nonce = value
                elif kind == "balance":
                    balance = value
                else:
                    code_hash = value
                self._accounts[address] = (nonce, balance, code_hash)
                self._block_accounts.add(address)
        for code_hash, code in new_code.items():
            self._code[code_hash] = code
            self._new_code[code_hash] = code
        for address, amount in credits:
            self._apply_credit(address, amount)

    def block_diff(self) -> StateDiff:
        """Everything the block changed so far, with final values."""
        diff = self._diff(self._block_accounts, self._block_wiped, self._block_slots)
        diff.code = dict(self._new_code)
        return diff

    def _diff(self, accounts: Iterable[bytes], wiped: set[bytes], slots: dict[bytes, set[int]]) -> StateDiff:
        diff = StateDiff()
        diff.wiped = set(wiped)
        for address in accounts:
            value = self._accounts[address]
            diff.accounts[address] = None if value is None else Account(value[0], value[1], value[2])
        for address, written in slots.items():
            if written:
                values = self._storage[address]
                diff.storage[address] = {slot: values[slot] for slot in written}
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
        return self._diff(self._tx_fields, self._tx_wipes, self._tx_slots)

    def persist(self) -> None:
        raise RuntimeError("evmpipe commits through its commit stage, not through py-evm")
