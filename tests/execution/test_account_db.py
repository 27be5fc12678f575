"""execution/account_db.py: the recording account database py-evm executes against."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from eth_hash.auto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution.account_db import RecordingAccountDB
from state.account import EMPTY_CODE_HASH, Account

A, B, C, D = (bytes([i]) * 20 for i in (0xA, 0xB, 0xC, 0xD))
CODE = b"\x60\x01\x60\x00\x55"


class DictReader:
    """A pre-block state view backed by plain dicts; counts what it is asked."""

    def __init__(self, accounts: dict[bytes, Account] | None = None, storage: dict[bytes, dict[int, int]] | None = None,
                 code: dict[bytes, bytes] | None = None) -> None:
        self.accounts = dict(accounts or {})
        self.storage = {a: dict(s) for a, s in (storage or {}).items()}
        self.code = dict(code or {})
        self.calls: list[tuple] = []

    def get_account(self, address: bytes) -> Account | None:
        self.calls.append(("account", address))
        return self.accounts.get(address)

    def get_storage(self, address: bytes, slot: int) -> int:
        self.calls.append(("slot", address, slot))
        return self.storage.get(address, {}).get(slot, 0)

    def get_code(self, code_hash: bytes) -> bytes | None:
        self.calls.append(("code", code_hash))
        return self.code.get(code_hash)

    def has_storage(self, address: bytes, ignoring: frozenset[int] = frozenset()) -> bool:
        self.calls.append(("has_storage", address, frozenset(ignoring)))
        return any(v for s, v in self.storage.get(address, {}).items() if s not in ignoring)


def make_reader() -> DictReader:
    return DictReader(
        accounts={
            A: Account(nonce=1, balance=100),
            B: Account(nonce=0, balance=50, code_hash=keccak(CODE)),
            C: Account(nonce=0, balance=0),  # storage only (EIP-7610)
        },
        storage={A: {1: 10, 2: 20}, B: {5: 55}, C: {7: 70}},
        code={keccak(CODE): CODE},
    )


@pytest.fixture
def db() -> RecordingAccountDB:
    return RecordingAccountDB(make_reader())


# -- read and write sets ---------------------------------------------------------------------


def test_reads_and_writes_recorded(db: RecordingAccountDB) -> None:
    db.begin_transaction()
    assert db.get_balance(A) == 100
    assert db.get_nonce(A) == 1
    assert db.get_code_hash(B) == keccak(CODE)
    assert db.get_code(B) == CODE
    assert db.account_exists(D) is False
    assert db.get_storage(A, 1) == 10
    assert db.get_storage(A, 3) == 0
    assert db.reads == {
        ("balance", A): 100,
        ("nonce", A): 1,
        ("code", B): keccak(CODE),
        ("exists", D): False,
        ("slot", A, 1): 10,
        ("slot", A, 3): 0,
    }

    # writes after a read leave the first value in the read set
    db.set_balance(A, 60)
    assert db.get_balance(A) == 60
    assert db.reads[("balance", A)] == 100
    db.set_storage(A, 1, 11)
    assert db.get_storage(A, 1) == 11
    assert db.reads[("slot", A, 1)] == 10

    # written first, then read: not a read
    db.set_balance(D, 5)
    assert db.get_nonce(D) == 0 and db.get_balance(D) == 5 and db.account_exists(D)
    assert ("nonce", D) not in db.reads and ("balance", D) not in db.reads
    assert db.reads[("exists", D)] is False  # read before the write
    db.delete_storage(B)
    assert db.get_storage(B, 5) == 0
    assert ("slot", B, 5) not in db.reads
    db.set_storage(B, 6, 66)
    assert db.get_storage(B, 6) == 66
    assert ("slot", B, 6) not in db.reads
    # SSTORE reads the original value of a slot it has not seen yet: recorded as the old value
    db.set_storage(A, 9, 99)
    assert db.reads[("slot", A, 9)] == 0

    writes = db.end_transaction()
    assert writes == {
        ("balance", A): 60,
        ("exists", A): True,
        ("nonce", D): 0,
        ("balance", D): 5,
        ("code", D): EMPTY_CODE_HASH,
        ("exists", D): True,
        ("slot", A, 1): 11,
        ("slot", A, 9): 99,
        ("wipe", B): True,
        ("slot", B, 6): 66,
    }
    assert db.reads == {}

    # the next transaction reads (and records) what the previous one wrote
    assert db.get_balance(A) == 60
    assert db.get_storage(A, 1) == 11
    assert db.get_storage(B, 5) == 0
    assert db.reads == {("balance", A): 60, ("slot", A, 1): 11, ("slot", B, 5): 0}
    assert db.end_transaction() == {}


def test_reader_asked_once_per_key(db: RecordingAccountDB) -> None:
    reader: DictReader = db._reader  # type: ignore[assignment]
    for _ in range(3):
        db.get_balance(A)
        db.get_nonce(A)
        db.get_storage(A, 1)
        db.get_code(B)
        db.end_transaction()
    assert sorted(reader.calls, key=repr) == sorted(
        [("account", A), ("slot", A, 1), ("account", B), ("code", keccak(CODE))], key=repr
    )


def test_recording_off(db: RecordingAccountDB) -> None:
    db.recording = False
    db.get_balance(A)
    db.get_storage(A, 1)
    assert db.reads == {}


# -- snapshots -----------------------------------------------------------------------------------


def _view(db: RecordingAccountDB) -> tuple:
    return (
        [(db.get_nonce(x), db.get_balance(x), db.get_code_hash(x), db.account_exists(x)) for x in (A, B, C, D)],
        [db.get_storage(x, s) for x in (A, B, C, D) for s in (1, 2, 5, 6, 7)],
        [db.is_address_warm(x) for x in (A, B, C, D)],
        [db.is_storage_warm(x, s) for x in (A, B) for s in (1, 2)],
        set(db._wiped),
    )


def test_discard_restores_everything(db: RecordingAccountDB) -> None:
    db.begin_transaction()
    db.mark_address_warm(A)
    db.set_storage(A, 2, 21)
    before = _view(db)
    cp = db.record()
    db.set_balance(A, 1)
    db.set_nonce(A, 9)
    db.set_code(D, CODE)
    db.set_storage(A, 1, 0)
    db.set_storage(A, 2, 22)
    db.set_storage(C, 8, 88)
    db.delete_storage(B)
    db.delete_account(C)
    db.mark_address_warm(B)
    db.mark_storage_warm(A, 1)
    db.mark_address_warm(A)  # already warm: must stay warm after the discard
    assert _view(db) != before
    db.discard(cp)
    assert _view(db) == before
    assert db.is_address_warm(A) and not db.is_address_warm(B) and not db.is_storage_warm(A, 1)
    assert db.end_transaction() == {("slot", A, 2): 21}
    diff = db.block_diff()
    assert diff.accounts == {} and diff.wiped == set() and diff.storage == {A: {2: 21}}


def test_nested_record_commit_discard(db: RecordingAccountDB) -> None:
    db.begin_transaction()
    outer = db.record()
    db.set_balance(A, 1)
    db.set_storage(A, 1, 1)
    inner = db.record()
    db.set_balance(B, 2)
    db.set_storage(B, 5, 2)
    db.delete_storage(C)
    db.commit(inner)  # becomes part of the outer frame
    third = db.record()
    db.set_balance(D, 3)
    db.set_storage(A, 1, 3)
    db.delete_account(B)
    db.discard(third)
    assert db.get_balance(D) == 0 and not db.account_exists(D)
    assert db.get_storage(A, 1) == 1
    assert db.get_balance(B) == 2 and db.get_storage(B, 5) == 2
    assert db.get_storage(C, 7) == 0  # the committed inner wipe holds
    mid = _view(db)
    fourth = db.record()
    db.set_nonce(A, 77)
    db.commit(fourth)
    assert db.get_nonce(A) == 77
    db.discard(outer)  # everything since `outer`, committed inner frames included
    assert db.get_balance(A) == 100 and db.get_nonce(A) == 1
    assert db.get_storage(A, 1) == 10
    assert db.get_balance(B) == 50 and db.get_storage(B, 5) == 55
    assert db.get_storage(C, 7) == 70
    assert mid != _view(db)
    assert db.end_transaction() == {}
    ids = [db.record() for _ in range(3)]
    assert len(set(ids)) == 3


# -- original values (EIP-2200) -------------------------------------------------------------------


def test_original_value_is_transaction_start(db: RecordingAccountDB) -> None:
    db.begin_transaction()
    db.set_storage(A, 1, 15)  # an earlier transaction of the block
    db.set_storage(A, 2, 0)
    db.end_transaction()

    assert db.get_storage(A, 1, from_journal=False) == 15
    db.set_storage(A, 1, 16)
    db.set_storage(A, 1, 17)
    cp = db.record()
    db.set_storage(A, 1, 18)
    db.discard(cp)
    db.set_storage(A, 1, 19)
    assert db.get_storage(A, 1) == 19
    assert db.get_storage(A, 1, from_journal=False) == 15
    assert db.get_storage(A, 2, from_journal=False) == 0
    db.set_storage(A, 2, 5)
    assert db.get_storage(A, 2, from_journal=False) == 0
    db.delete_storage(A)  # a wipe in this transaction does not change originals
    db.set_storage(A, 1, 1)
    assert db.get_storage(A, 1, from_journal=False) == 15
    assert db.get_storage(A, 2, from_journal=False) == 0
    assert db.get_storage(A, 3, from_journal=False) == 0
    assert db.get_storage(B, 5, from_journal=False) == 55  # untouched slot: pre-block value
    db.end_transaction()

    # next transaction: originals are what the wipe left
    assert db.get_storage(A, 1, from_journal=False) == 1
    assert db.get_storage(A, 2, from_journal=False) == 0
    db.delete_storage(A)
    assert db.get_storage(A, 1, from_journal=False) == 1
    db.end_transaction()


def test_original_value_after_discarded_wipe(db: RecordingAccountDB) -> None:
    db.begin_transaction()
    db.set_storage(A, 1, 12)
    db.end_transaction()
    cp = db.record()
    db.delete_storage(A)
    db.discard(cp)
    assert db.get_storage(A, 1) == 12
    assert db.get_storage(A, 1, from_journal=False) == 12
    assert db.get_storage(A, 2, from_journal=False) == 20
    assert db.end_transaction() == {}


# -- deleting accounts ---------------------------------------------------------------------------------


def test_delete_account_wipes_storage(db: RecordingAccountDB) -> None:
    db.begin_transaction()
    assert db.get_storage(A, 1) == 10
    db.delete_account(A)
    assert db.get_storage(A, 1) == 0
    assert db.get_storage(A, 2) == 0  # never loaded before the wipe
    assert not db.account_exists(A)
    assert db.get_balance(A) == 0
    assert db.end_transaction() == {("wipe", A): True, ("exists", A): False}
    assert db.get_storage(A, 1) == 0 and db.get_storage(A, 2) == 0
    diff = db.block_diff()
    assert diff.wiped == {A}
    assert diff.accounts == {A: None}
    assert A not in diff.storage

    # recreated by a later transaction with one slot
    db.set_balance(A, 3)
    db.set_storage(A, 4, 44)
    db.end_transaction()
    diff = db.block_diff()
    assert diff.wiped == {A}
    assert diff.accounts == {A: Account(balance=3)}
    assert diff.storage == {A: {4: 44}}


def test_block_diff_collects_transactions(db: RecordingAccountDB) -> None:
    db.set_storage(B, 5, 56)
    db.set_storage(B, 6, 66)
    db.set_code(D, CODE)
    db.end_transaction()
    db.delete_storage(B)  # drops slots written by the earlier transaction
    db.set_storage(B, 7, 77)
    db.increment_nonce(A)
    db.end_transaction()
    diff = db.block_diff()
    assert diff.wiped == {B}
    assert diff.storage == {B: {7: 77}}
    assert diff.accounts == {D: Account(code_hash=keccak(CODE)), A: Account(nonce=2, balance=100)}
    assert diff.code == {keccak(CODE): CODE}


# -- EIP-7610 --------------------------------------------------------------------------------------------


def test_has_code_or_nonce_includes_storage(db: RecordingAccountDB) -> None:
    assert db.account_has_code_or_nonce(C)  # storage only
    assert db.account_has_code_or_nonce(A)  # nonce
    assert db.account_has_code_or_nonce(B)  # code
    assert not db.account_has_code_or_nonce(D)  # absent
    db.set_storage(D, 1, 1)
    assert db.account_has_code_or_nonce(D)
    db.set_storage(C, 7, 0)
    assert not db.account_has_code_or_nonce(C)  # its only slot zeroed
    db.end_transaction()
    assert not db.account_has_code_or_nonce(C)
    db.set_storage(C, 7, 1)
    assert db.account_has_code_or_nonce(C)
    db.delete_storage(C)
    assert not db.account_has_code_or_nonce(C)


def test_has_code_or_nonce_with_ignored_slots() -> None:
    reader = DictReader(accounts={C: Account()}, storage={C: {1: 1, 2: 2}})
    db = RecordingAccountDB(reader)
    db.set_storage(C, 1, 0)
    assert db.account_has_code_or_nonce(C)  # slot 2 still set below
    db.set_storage(C, 2, 0)
    assert not db.account_has_code_or_nonce(C)
    assert ("has_storage", C, frozenset({1, 2})) in reader.calls


def test_has_storage_read_is_transaction_start_value() -> None:
    reader = DictReader(accounts={C: Account()}, storage={C: {7: 70}})
    db = RecordingAccountDB(reader)
    db.begin_transaction()
    db.set_storage(C, 7, 0)  # this transaction zeroes C's only slot
    assert not db.account_has_code_or_nonce(C)
    # either not recorded (written in this transaction) or recorded as it was at tx start
    assert db.reads.get(("has_storage", C), True) is True


# -- property: agrees with a reference model -----------------------------------------------------------------

ADDRS = [A, B, C, D]
SLOTS = [1, 2, 5, 7]
CODES = [b"", CODE, b"\x00"]

_addr = st.sampled_from(ADDRS)
_slot = st.sampled_from(SLOTS)
_val = st.sampled_from([0, 1, 2, 2**256 - 1])

OPS = st.one_of(
    st.tuples(st.just("set_balance"), _addr, _val),
    st.tuples(st.just("set_nonce"), _addr, st.integers(0, 3)),
    st.tuples(st.just("set_code"), _addr, st.sampled_from(CODES)),
    st.tuples(st.just("touch"), _addr),
    st.tuples(st.just("set_storage"), _addr, _slot, _val),
    st.tuples(st.just("set_storage"), _addr, _slot, _val),
    st.tuples(st.just("delete_account"), _addr),
    st.tuples(st.just("delete_storage"), _addr),
    st.tuples(st.just("warm"), _addr, _slot),
    st.tuples(st.just("record")),
    st.tuples(st.just("record")),
    st.tuples(st.just("commit")),
    st.tuples(st.just("discard"), st.integers(0, 3)),
    st.tuples(st.just("end_transaction")),
    st.tuples(st.just("read"), _addr, _slot),
    st.tuples(st.just("read"), _addr, _slot),
)

AcctT = tuple  # (nonce, balance, code_hash) or None


class Model:
    """Plain dicts, a stack of deep copies for snapshots."""

    def __init__(self, reader: DictReader) -> None:
        self.accounts: dict[bytes, Any] = {
            a: (acc.nonce, acc.balance, acc.code_hash) for a, acc in reader.accounts.items()
        }
        self.storage: dict[bytes, dict[int, int]] = {a: dict(s) for a, s in reader.storage.items()}
        self.block_accounts: set[bytes] = set()
        self.block_slots: dict[bytes, set[int]] = {}
        self.block_wiped: set[bytes] = set()
        self.snapshots: list[tuple[int, tuple]] = []
        self._new_tx()

    def _new_tx(self) -> None:
        self.tx_accounts: set[bytes] = set()
        self.tx_slots: set[tuple[bytes, int]] = set()
        self.tx_wipes: set[bytes] = set()
        self.warm: set = set()
        self.snapshots = []
        self.tx_start = (copy.deepcopy(self.accounts), copy.deepcopy(self.storage))

    def _state(self) -> tuple:
        return (self.accounts, self.storage, self.tx_accounts, self.tx_slots, self.tx_wipes, self.warm)

    def push(self, checkpoint: int) -> None:
        self.snapshots.append((checkpoint, copy.deepcopy(self._state())))

    def restore(self, index: int) -> None:
        state = self.snapshots[index][1]
        (self.accounts, self.storage, self.tx_accounts, self.tx_slots, self.tx_wipes, self.warm) = copy.deepcopy(state)
        del self.snapshots[index:]

    def account(self, a: bytes) -> AcctT:
        return self.accounts.get(a) or (0, 0, EMPTY_CODE_HASH)

    def set_account(self, a: bytes, value: Any) -> None:
        self.accounts[a] = value
        self.tx_accounts.add(a)

    def wipe(self, a: bytes) -> None:
        self.storage[a] = {}
        self.tx_wipes.add(a)
        self.tx_slots = {(x, s) for x, s in self.tx_slots if x != a}

    def slot(self, a: bytes, s: int) -> int:
        return self.storage.get(a, {}).get(s, 0)

    def original(self, a: bytes, s: int) -> int:
        return self.tx_start[1].get(a, {}).get(s, 0)

    def end_transaction(self) -> dict:
        writes: dict = {}
        for a in self.tx_wipes:
            writes[("wipe", a)] = True
            self.block_wiped.add(a)
            self.block_slots[a] = set()
        for a in self.tx_accounts:
            writes[("account", a)] = self.accounts[a]
            self.block_accounts.add(a)
        for a, s in self.tx_slots:
            writes[("slot", a, s)] = self.slot(a, s)
            self.block_slots.setdefault(a, set()).add(s)
        self._new_tx()
        return writes


def _as_accounts(writes: dict, db: RecordingAccountDB) -> dict:
    """Our per-field write set in the model's whole-account form: every account with a
    field written becomes ("account", a) -> its tuple after the transaction."""
    out: dict = {}
    for key, value in writes.items():
        if key[0] in ("nonce", "balance", "code", "exists"):
            out[("account", key[1])] = db._accounts[key[1]]
        else:
            out[key] = value
    return out


def _check_reads(db: RecordingAccountDB, model: Model, a: bytes, s: int) -> None:
    nonce, balance, code_hash = model.account(a)
    assert db.get_nonce(a) == nonce
    assert db.get_balance(a) == balance
    assert db.get_code_hash(a) == code_hash
    assert db.account_exists(a) == (model.accounts.get(a) is not None)
    assert db.account_is_empty(a) == (nonce == 0 and balance == 0 and code_hash == EMPTY_CODE_HASH)
    assert db.get_storage(a, s) == model.slot(a, s)
    assert db.get_storage(a, s, from_journal=False) == model.original(a, s)
    has_storage = any(model.storage.get(a, {}).values())
    assert db.account_has_code_or_nonce(a) == (nonce != 0 or code_hash != EMPTY_CODE_HASH or has_storage)
    assert db.is_address_warm(a) == (a in model.warm)
    assert db.is_storage_warm(a, s) == ((a, s) in model.warm)


def _check_read_set(db: RecordingAccountDB, model: Model) -> None:
    """Every recorded read holds the value the key had when the transaction started."""
    accounts, storage = model.tx_start
    for key, value in db.reads.items():
        kind, address = key[0], key[1]
        acc = accounts.get(address)
        nonce, balance, code_hash = acc or (0, 0, EMPTY_CODE_HASH)
        if kind == "slot":
            assert value == storage.get(address, {}).get(key[2], 0), key
        elif kind == "nonce":
            assert value == nonce, key
        elif kind == "balance":
            assert value == balance, key
        elif kind == "code":
            assert value == code_hash, key
        elif kind == "exists":
            assert value == (acc is not None), key


@settings(max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(OPS, max_size=60))
def test_matches_reference_model(ops: list[tuple]) -> None:
    reader = make_reader()
    db = RecordingAccountDB(reader)
    model = Model(reader)
    db.begin_transaction()
    checkpoints: list[int] = []
    for op in ops:
        name = op[0]
        if name == "set_balance":
            db.set_balance(op[1], op[2])
            n, _, c = model.account(op[1])
            model.set_account(op[1], (n, op[2], c))
        elif name == "set_nonce":
            db.set_nonce(op[1], op[2])
            _, b, c = model.account(op[1])
            model.set_account(op[1], (op[2], b, c))
        elif name == "set_code":
            db.set_code(op[1], op[2])
            n, b, _ = model.account(op[1])
            model.set_account(op[1], (n, b, keccak(op[2])))
        elif name == "touch":
            db.touch_account(op[1])
            model.set_account(op[1], model.account(op[1]))
        elif name == "set_storage":
            db.set_storage(op[1], op[2], op[3])
            model.storage.setdefault(op[1], {})[op[2]] = op[3]
            model.tx_slots.add((op[1], op[2]))
        elif name == "delete_account":
            db.delete_account(op[1])
            model.wipe(op[1])
            model.set_account(op[1], None)
        elif name == "delete_storage":
            db.delete_storage(op[1])
            model.wipe(op[1])
        elif name == "warm":
            db.mark_address_warm(op[1])
            db.mark_storage_warm(op[1], op[2])
            model.warm.update({op[1], (op[1], op[2])})
        elif name == "record":
            cp = db.record()
            checkpoints.append(cp)
            model.push(cp)
        elif name == "commit":
            if checkpoints:
                db.commit(checkpoints.pop())
                model.snapshots.pop()
        elif name == "discard":
            if checkpoints:
                index = max(0, len(checkpoints) - 1 - op[1])  # the top, or one further down
                db.discard(checkpoints[index])
                assert model.snapshots[index][0] == checkpoints[index]
                model.restore(index)
                del checkpoints[index:]
        elif name == "end_transaction":
            _check_read_set(db, model)
            assert _as_accounts(db.end_transaction(), db) == model.end_transaction()
            checkpoints = []
        elif name == "read":
            _check_reads(db, model, op[1], op[2])
    _check_read_set(db, model)
    assert _as_accounts(db.end_transaction(), db) == model.end_transaction()
    for a in ADDRS:
        for s in SLOTS:
            _check_reads(db, model, a, s)

    diff = db.block_diff()
    assert diff.wiped == model.block_wiped
    assert diff.accounts == {
        a: None if model.accounts[a] is None else Account(*model.accounts[a]) for a in model.block_accounts
    }
    assert diff.storage == {
        a: {s: model.slot(a, s) for s in slots} for a, slots in model.block_slots.items() if slots
    }
    for acc in diff.accounts.values():  # every new code hash comes with its code
        if acc is not None and acc.code_hash != EMPTY_CODE_HASH:
            assert keccak(diff.code.get(acc.code_hash, reader.code.get(acc.code_hash, b"?"))) == acc.code_hash
