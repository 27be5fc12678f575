"""state/store.py: atomic block commits, persistence, storage wipes, unwind, batched
reads and the read cache."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path

import pytest
import rlp
from eth_hash.auto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state.account import Account
from state.diff import StateDiff
from state.store import BlockCommit, Head, StateStore

_TABLES = ("accounts", "storage", "code", "trie_nodes", "headers", "blocks", "receipts", "transactions", "changesets", "meta")


def addr(i: int) -> bytes:
    return i.to_bytes(20, "big")


def bhash(n: int, salt: bytes = b"") -> bytes:
    return keccak(b"block" + n.to_bytes(8, "big") + salt)


def root(n: int) -> bytes:
    return keccak(b"root" + n.to_bytes(8, "big"))


def header_rlp(parent_hash: bytes, state_root: bytes) -> bytes:
    # unwind_block reads the parent's state root as field 3 of its header RLP
    return rlp.encode([parent_hash, b"\x00" * 32, b"\x00" * 20, state_root])


def make_commit(number: int, diff: StateDiff, *, parent: bytes | None = None, nodes: dict[bytes, bytes] | None = None,
                receipts: list[bytes] | None = None, tx_hashes: list[bytes] | None = None) -> BlockCommit:
    parent_hash = parent if parent is not None else (bhash(number - 1) if number else b"\x00" * 32)
    return BlockCommit(
        number=number,
        hash=bhash(number),
        parent_hash=parent_hash,
        state_root=root(number),
        header_rlp=header_rlp(parent_hash, root(number)),
        block_rlp=b"block-rlp-%d" % number,
        total_difficulty=1000 + number,
        diff=diff,
        trie_nodes=nodes or {},
        receipts=receipts or [],
        tx_hashes=tx_hashes or [],
    )


def dump_db(path: Path | str) -> dict[str, list[tuple]]:
    """Every row of every table, through a separate raw connection."""
    con = sqlite3.connect(str(path))
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall()) for t in _TABLES}
    finally:
        con.close()


def dump_state(store: StateStore) -> tuple[dict, dict]:
    accounts = dict(store.iter_accounts())
    storage = {a: dict(store.iter_storage(a)) for a in _all_storage_addresses(store)}
    return accounts, {a: s for a, s in storage.items() if s}


def _all_storage_addresses(store: StateStore) -> list[bytes]:
    with store._lock:
        return [r[0] for r in store._db.execute("SELECT DISTINCT address FROM storage").fetchall()]


CODE_A = b"\x60\x00\x60\x00\xf3"


def genesis_diff() -> StateDiff:
    diff = StateDiff()
    diff.accounts[addr(1)] = Account(nonce=1, balance=100)
    diff.accounts[addr(2)] = Account(nonce=0, balance=5, code_hash=keccak(CODE_A))
    diff.accounts[addr(3)] = Account(nonce=7, balance=0)
    diff.code[keccak(CODE_A)] = CODE_A
    diff.storage[addr(2)] = {1: 11, 2: 22, 3: 33}
    diff.storage[addr(3)] = {9: 99}
    return diff


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.sqlite"


@pytest.fixture
def store(db_path: Path):
    s = StateStore(db_path, synchronous="OFF")
    s.commit_block(make_commit(0, genesis_diff(), nodes={keccak(b"n0"): b"n0"}))
    yield s
    s.close()


def block1_diff() -> StateDiff:
    diff = StateDiff()
    diff.accounts[addr(1)] = Account(nonce=2, balance=90)
    diff.accounts[addr(4)] = Account(nonce=0, balance=10)
    diff.storage[addr(2)] = {1: 12, 2: 0, 4: 44}
    return diff


# -- commit atomicity ----------------------------------------------------------------


def _fail_after_apply(monkeypatch: pytest.MonkeyPatch, store: StateStore) -> None:
    original = store._apply_diff

    def apply_then_fail(diff: StateDiff) -> None:
        original(diff)
        raise RuntimeError("injected after _apply_diff")

    monkeypatch.setattr(store, "_apply_diff", apply_then_fail)


def _fail_at_set_head(monkeypatch: pytest.MonkeyPatch, store: StateStore) -> None:
    def fail(head: Head) -> None:
        raise RuntimeError("injected at _set_head")

    monkeypatch.setattr(store, "_set_head", fail)


def _fail_mid_apply(monkeypatch: pytest.MonkeyPatch, store: StateStore) -> None:
    """Let the wipe and account writes run, then fail inside _apply_diff."""
    db = store._db
    calls = {"n": 0}

    class FailingDB:
        def execute(self, *args, **kwargs):
            return db.execute(*args, **kwargs)

        def executemany(self, sql, rows):
            calls["n"] += 1
            if "INTO storage" in sql:
                raise sqlite3.OperationalError("injected: disk I/O error")
            return db.executemany(sql, rows)

    real_apply = type(store)._apply_diff

    def apply(diff: StateDiff) -> None:
        store._db = FailingDB()  # type: ignore[assignment]
        try:
            real_apply(store, diff)
        finally:
            store._db = db

    monkeypatch.setattr(store, "_apply_diff", apply)


@pytest.mark.parametrize("inject", ["after_apply", "set_head", "mid_apply", "bad_receipt"])
def test_failed_commit_leaves_db_unchanged(store: StateStore, db_path: Path, monkeypatch: pytest.MonkeyPatch, inject: str) -> None:
    store.commit_block(make_commit(1, block1_diff()))
    before_rows = dump_db(db_path)
    before_state = dump_state(store)
    before_head = store.head()

    diff = StateDiff()
    diff.wipe_storage(addr(2))
    diff.storage[addr(2)] = {7: 77}
    diff.accounts[addr(1)] = None
    diff.accounts[addr(5)] = Account(balance=1)
    diff.code[keccak(b"\x00")] = b"\x00"
    receipts = [b"r0", object()] if inject == "bad_receipt" else [b"r0"]  # an unbindable row fails the INSERT
    commit = make_commit(2, diff, nodes={keccak(b"n2"): b"n2"}, receipts=receipts, tx_hashes=[keccak(b"tx")])  # type: ignore[list-item]
    if inject == "after_apply":
        _fail_after_apply(monkeypatch, store)
    elif inject == "set_head":
        _fail_at_set_head(monkeypatch, store)
    elif inject == "mid_apply":
        _fail_mid_apply(monkeypatch, store)

    with pytest.raises(Exception):
        store.commit_block(commit)
    monkeypatch.undo()

    # same connection: nothing visible, cache untouched
    assert store.head() == before_head
    assert store.get_account(addr(1)) == Account(nonce=2, balance=90)
    assert store.get_account(addr(5)) is None
    assert store.get_storage(addr(2), 1) == 12
    assert store.get_storage(addr(2), 7) == 0
    assert dump_state(store) == before_state

    # a fresh connection on the file sees exactly the old database
    assert dump_db(db_path) == before_rows
    reopened = StateStore(db_path)
    try:
        assert reopened.head() == before_head == Head(1, bhash(1), root(1))
        assert dump_state(reopened) == before_state
        assert reopened.get_receipts(bhash(2)) == []
        assert reopened.canonical_hash(2) is None
        with pytest.raises(KeyError):
            reopened.get_trie_node(keccak(b"n2"))
    finally:
        reopened.close()

    # the connection is not left inside a transaction: the next commit works
    store.commit_block(make_commit(2, StateDiff(accounts={addr(6): Account(balance=6)})))
    assert store.head() == Head(2, bhash(2), root(2))
    assert store.get_account(addr(6)) == Account(balance=6)


# -- persistence ----------------------------------------------------------------------


def test_commit_then_reopen(store: StateStore, db_path: Path) -> None:
    code = b"\x60\x01\x60\x02"
    diff = block1_diff()
    diff.accounts[addr(7)] = Account(nonce=1, balance=2**200, code_hash=keccak(code))
    diff.code[keccak(code)] = code
    nodes = {keccak(b"node-a"): b"node-a", keccak(b"node-b"): b"node-b"}
    receipts = [b"receipt-0", b"receipt-1", b"receipt-2"]
    txs = [keccak(b"t0"), keccak(b"t1"), keccak(b"t2")]
    store.commit_block(make_commit(1, diff, nodes=nodes, receipts=receipts, tx_hashes=txs))
    store.close()

    s = StateStore(db_path)
    try:
        assert s.head() == Head(1, bhash(1), root(1))
        assert s.get_account(addr(1)) == Account(nonce=2, balance=90)
        assert s.get_account(addr(3)) == Account(nonce=7)
        assert s.get_account(addr(4)) == Account(balance=10)
        assert s.get_account(addr(7)) == Account(nonce=1, balance=2**200, code_hash=keccak(code))
        assert s.get_account(addr(99)) is None
        assert dict(s.iter_storage(addr(2))) == {1: 12, 3: 33, 4: 44}  # slot 2 zeroed -> row gone
        assert s.get_storage(addr(2), 2) == 0
        assert s.get_storage(addr(3), 9) == 99
        assert s.get_code(keccak(code)) == code
        assert s.get_code(keccak(CODE_A)) == CODE_A
        assert s.get_code(keccak(b"nope")) is None
        for h, n in nodes.items():
            assert s.get_trie_node(h) == n
        assert s.get_trie_node(keccak(b"n0")) == b"n0"
        assert s.get_receipts(bhash(1)) == receipts
        for i, t in enumerate(txs):
            assert s.find_transaction(t) == (bhash(1), i)
        assert s.canonical_hash(0) == bhash(0)
        assert s.canonical_hash(1) == bhash(1)
        assert s.get_block_rlp(1) == b"block-rlp-1"
        assert s.get_header(bhash(1)) == (1, header_rlp(bhash(0), root(1)), 1001)
        forward = s.forward_diff(1)
        assert forward is not None and forward.accounts == diff.accounts and forward.storage == diff.storage
        assert s.get_meta("schema_version") == b"1"
    finally:
        s.close()


# -- storage wipe -----------------------------------------------------------------------


def test_storage_wipe_replaces_all_slots(store: StateStore) -> None:
    assert store.has_storage(addr(2))
    assert store.has_storage(addr(2), ignoring={1, 2})
    assert not store.has_storage(addr(2), ignoring={1, 2, 3})
    assert not store.has_storage(addr(1))
    assert store.get_storage(addr(2), 1) == 11  # now cached

    diff = StateDiff()
    diff.wipe_storage(addr(2))
    diff.set_storage(addr(2), 5, 55)
    diff.set_storage(addr(2), 3, 34)
    diff.set_storage(addr(2), 6, 0)
    store.commit_block(make_commit(1, diff))

    assert dict(store.iter_storage(addr(2))) == {3: 34, 5: 55}
    assert store.get_storage(addr(2), 1) == 0  # the cached old value is gone
    assert store.get_storage(addr(2), 2) == 0
    assert store.get_storage(addr(2), 5) == 55
    assert store.has_storage(addr(2))
    assert not store.has_storage(addr(2), ignoring={3, 5})
    assert dict(store.iter_storage(addr(3))) == {9: 99}  # other accounts untouched

    only_wipe = StateDiff()
    only_wipe.wipe_storage(addr(2))
    store.commit_block(make_commit(2, only_wipe))
    assert not store.has_storage(addr(2))
    assert list(store.iter_storage(addr(2))) == []
    assert store.get_storage(addr(2), 5) == 0


# -- unwind -------------------------------------------------------------------------------


def test_unwind_restores_previous_block(store: StateStore, db_path: Path) -> None:
    store.commit_block(make_commit(1, block1_diff()))
    state1 = dump_state(store)
    head1 = store.head()

    diff = StateDiff()
    diff.accounts[addr(3)] = None  # deleted (SELFDESTRUCT): account and storage go
    diff.wipe_storage(addr(3))
    diff.wipe_storage(addr(2))  # wiped and rewritten
    diff.storage[addr(2)] = {1: 100, 8: 88}
    diff.accounts[addr(2)] = Account(nonce=1, balance=5, code_hash=keccak(CODE_A))
    diff.accounts[addr(8)] = Account(balance=8)  # created
    diff.storage[addr(8)] = {1: 1}
    diff.storage[addr(4)] = {3: 3}  # storage of an account not otherwise changed
    diff.code[keccak(b"new")] = b"new"
    store.commit_block(make_commit(2, diff, receipts=[rlp.encode([b"\x01", 21000, b"\x00" * 256, []])], tx_hashes=[keccak(b"x")]))
    state2 = dump_state(store)
    assert addr(3) not in state2[0] and addr(3) not in state2[1]
    assert state2[1][addr(2)] == {1: 100, 8: 88}
    # warm the cache with block 2's values
    assert store.get_account(addr(3)) is None
    assert store.get_storage(addr(2), 2) == 0 and store.get_storage(addr(2), 1) == 100

    new_head = store.unwind_block()
    assert new_head == head1 == Head(1, bhash(1), root(1))
    assert store.head() == head1
    assert dump_state(store) == state1
    assert store.canonical_hash(2) is None
    assert store.forward_diff(2) is None
    # cached reads see the restored values
    assert store.get_account(addr(3)) == Account(nonce=7)
    assert store.get_storage(addr(3), 9) == 99
    assert store.get_storage(addr(2), 1) == 12
    assert store.get_storage(addr(2), 3) == 33
    assert store.get_storage(addr(2), 8) == 0
    assert store.get_account(addr(8)) is None

    # redo: the same commit gives the same state again, then unwind twice to genesis
    store.commit_block(make_commit(2, diff))
    assert dump_state(store) == state2
    store.unwind_block()
    assert store.unwind_block() == Head(0, bhash(0), root(0))
    after_genesis_state = dump_state(store)
    assert after_genesis_state[0] == {a: acc for a, acc in genesis_diff().accounts.items()}
    assert after_genesis_state[1] == genesis_diff().storage
    with pytest.raises(ValueError):
        store.unwind_block()

    reopened = StateStore(db_path)
    try:
        assert reopened.head() == Head(0, bhash(0), root(0))
        assert dump_state(reopened) == after_genesis_state
    finally:
        reopened.close()


# -- batched reads ---------------------------------------------------------------------------


def test_batched_reads_match_single_reads(db_path: Path) -> None:
    s = StateStore(db_path, synchronous="OFF", cache_size=50)
    diff = StateDiff()
    for i in range(0, 1000, 2):  # even addresses exist
        diff.accounts[addr(i)] = Account(nonce=i, balance=i * 3)
    for i in range(0, 60, 3):
        for slot in range(0, 40, 2):  # even slots of every third address are set
            diff.storage.setdefault(addr(i), {})[slot] = i * 1000 + slot + 1
    s.commit_block(make_commit(0, diff))
    s.close()

    account_keys = [addr(i) for i in range(1000)] + [addr(0), addr(5)]  # with duplicates
    slot_keys = [(addr(i), slot) for i in range(60) for slot in range(20)]  # 1200 keys, absent ones too
    assert len(slot_keys) > 400

    batched = StateStore(db_path, cache_size=50)
    single = StateStore(db_path, cache_size=50)
    try:
        accounts = batched.read_accounts(account_keys)
        assert set(accounts) == set(account_keys) and len(accounts) == 1000
        storage = batched.read_storage(slot_keys + slot_keys[:10])
        assert set(storage) == set(slot_keys)
        for a in account_keys:
            assert accounts[a] == single.get_account(a)
            i = int.from_bytes(a, "big")
            assert accounts[a] == (Account(nonce=i, balance=i * 3) if i % 2 == 0 else None)
        for key in slot_keys:
            a, slot = key
            i = int.from_bytes(a, "big")
            expected = i * 1000 + slot + 1 if i % 3 == 0 and slot % 2 == 0 else 0
            assert storage[key] == single.get_storage(a, slot) == expected
        assert batched.read_accounts([]) == {}
        assert batched.read_storage([]) == {}
        code = batched.read_code([keccak(b"x")] * 500)
        assert code == {}
    finally:
        batched.close()
        single.close()


# -- cache coherence ----------------------------------------------------------------------------


def test_cache_updated_by_commit(store: StateStore) -> None:
    # populate the cache with the old values (including absent ones)
    assert store.get_account(addr(1)) == Account(nonce=1, balance=100)
    assert store.get_account(addr(4)) is None
    assert store.get_storage(addr(2), 1) == 11
    assert store.get_storage(addr(2), 4) == 0
    store.read_accounts([addr(3)])
    store.read_storage([(addr(3), 9)])

    store.commit_block(make_commit(1, block1_diff()))
    assert store.get_account(addr(1)) == Account(nonce=2, balance=90)
    assert store.get_account(addr(4)) == Account(balance=10)
    assert store.get_storage(addr(2), 1) == 12
    assert store.get_storage(addr(2), 2) == 0
    assert store.get_storage(addr(2), 4) == 44

    diff = StateDiff()
    diff.accounts[addr(3)] = None
    diff.wipe_storage(addr(3))
    store.commit_block(make_commit(2, diff))
    assert store.get_account(addr(3)) is None
    assert store.get_storage(addr(3), 9) == 0
    assert store.read_accounts([addr(3)]) == {addr(3): None}


# -- property: commit then unwind is the identity on state ------------------------------------------

_addresses = st.sampled_from([addr(i) for i in range(1, 5)])
_slots = st.integers(0, 4)
_values = st.one_of(st.just(0), st.integers(1, 3), st.just(2**256 - 1))
_accounts = st.one_of(st.none(), st.builds(Account, nonce=st.integers(0, 3), balance=st.integers(0, 2**70)))


@st.composite
def diffs(draw) -> StateDiff:
    diff = StateDiff()
    for a in draw(st.lists(_addresses, max_size=2, unique=True)):
        diff.wipe_storage(a)
    for a, acc in draw(st.dictionaries(_addresses, _accounts, max_size=4)).items():
        diff.accounts[a] = acc
    for a, s, v in draw(st.lists(st.tuples(_addresses, _slots, _values), max_size=8)):
        diff.set_storage(a, s, v)
    return diff


@settings(max_examples=40, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(diffs(), min_size=1, max_size=4))
def test_commit_unwind_roundtrip(block_diffs: list[StateDiff]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        s = StateStore(Path(tmp) / "s.sqlite", synchronous="OFF")
        try:
            s.commit_block(make_commit(0, genesis_diff()))
            states = [dump_state(s)]
            model_accounts = dict(genesis_diff().accounts)
            model_storage = {a: dict(v) for a, v in genesis_diff().storage.items()}
            for n, diff in enumerate(block_diffs, start=1):
                s.commit_block(make_commit(n, diff))
                for a in diff.wiped:
                    model_storage.pop(a, None)
                for a, acc in diff.accounts.items():
                    if acc is None:
                        model_accounts.pop(a, None)
                    else:
                        model_accounts[a] = acc
                for a, slots in diff.storage.items():
                    for slot, v in slots.items():
                        if v:
                            model_storage.setdefault(a, {})[slot] = v
                        else:
                            model_storage.get(a, {}).pop(slot, None)
                model_storage = {a: v for a, v in model_storage.items() if v}
                assert dump_state(s) == (model_accounts, model_storage)
                states.append(dump_state(s))
            for n in range(len(block_diffs), 0, -1):
                assert s.unwind_block() == Head(n - 1, bhash(n - 1), root(n - 1))
                assert dump_state(s) == states[n - 1]
        finally:
            s.close()
