"""state/nodekeys.py: trie nodes keyed by hash or by place (halfpath) give the same
roots, every committed root stays readable under both (unwind), and the bulk builder
writes the rows incremental merkleization writes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import rlp
from eth_hash.auto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state.account import BLANK_ROOT, Account
from state.bulk import root_from_sorted
from state.diff import StateDiff
from state.layout import LayoutStats, read_account, read_slot
from state.merkle import merkleize, sealed
from state.nodekeys import HALFPATH, HASH, NodePlaces, halfpath_key, keyed_rows
from state.store import BlockCommit, StateStore
from state.trie import encode_storage_value, root_from_items, update_root

SCHEMES = (HASH, HALFPATH)


def _commit(store: StateStore, number: int, parent: bytes, diff: StateDiff) -> bytes:
    """Merkleize `diff` over the head and commit it; returns the new state root."""
    head = store.head()
    parent_root = BLANK_ROOT if head is None else head.state_root
    result = merkleize(diff, parent_root, store.get_account, store.get_trie_node)
    header = rlp.encode([parent, b"\x00" * 32, b"\x00" * 20, result.root])
    store.commit_block(BlockCommit(number, keccak(header), parent, result.root, header, b"", 0, sealed(diff, result.accounts), result.nodes))
    return result.root


def _expected_root(accounts: dict[bytes, Account], storage: dict[bytes, dict[int, int]]) -> bytes:
    from state.trie import encode_account

    items = []
    for address, account in accounts.items():
        slots = storage.get(address, {})
        sroot = root_from_items((keccak(s.to_bytes(32, "big")), encode_storage_value(v)) for s, v in slots.items() if v)
        items.append((keccak(address), encode_account(account.nonce, account.balance, sroot, account.code_hash)))
    return root_from_items(items)


_batch = st.lists(
    st.tuples(st.integers(0, 30), st.integers(0, 3), st.dictionaries(st.integers(0, 12), st.integers(0, 3), max_size=5)),
    min_size=1, max_size=12,
)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(_batch, min_size=1, max_size=5))
def test_schemes_agree_over_random_batches(batches: list) -> None:
    """Both schemes reach the same roots (and the roots of the flat state), and every
    account and slot reads back by walking the halfpath-keyed trie from the head."""
    with tempfile.TemporaryDirectory() as tmp:
        stores = {s: StateStore(Path(tmp) / f"{s}.sqlite", synchronous="OFF", trie_scheme=s) for s in SCHEMES}
        accounts: dict[bytes, Account] = {}
        storage: dict[bytes, dict[int, int]] = {}
        parents = dict.fromkeys(SCHEMES, b"\x00" * 32)
        try:
            for number, batch in enumerate(batches):
                diff = StateDiff()
                for a, balance, slots in batch:
                    address = a.to_bytes(20, "big")
                    diff.accounts[address] = Account(1, balance + 1)
                    accounts[address] = diff.accounts[address]
                    if slots:
                        diff.storage.setdefault(address, {}).update(slots)
                        storage.setdefault(address, {}).update(slots)
                roots = {}
                for scheme, store in stores.items():
                    roots[scheme] = _commit(store, number, parents[scheme], diff)
                    parents[scheme] = store.head().hash  # type: ignore[union-attr]
                assert roots[HASH] == roots[HALFPATH] == _expected_root(accounts, storage)
            store = stores[HALFPATH]
            assert store.trie_scheme == HALFPATH and stores[HASH].trie_scheme == HASH
            fresh = StateStore(store.path, readonly=True)  # no hot node cache: every node from SQLite
            head_root = fresh.head().state_root  # type: ignore[union-attr]
            for address, account in accounts.items():
                found = read_account(fresh.get_trie_node, head_root, address, LayoutStats())
                assert found is not None and found.balance == account.balance
                for slot, value in storage.get(address, {}).items():
                    assert read_slot(fresh.get_trie_node, head_root, address, slot, LayoutStats()) == value
            fresh.close()
        finally:
            for store in stores.values():
                store.close()


def test_unwind_keeps_old_roots_readable_under_halfpath(tmp_path: Path) -> None:
    """Rows are only added: after an unwind the parent's trie is whole, a sibling block
    merkleizes over it, and the unwound block's nodes are still there too."""
    store = StateStore(tmp_path / "s.sqlite", synchronous="OFF", trie_scheme=HALFPATH)
    a, b = (1).to_bytes(20, "big"), (2).to_bytes(20, "big")
    genesis = StateDiff(accounts={a: Account(0, 10), b: Account(0, 20)}, storage={a: {1: 5, 2: 6}})
    root0 = _commit(store, 0, b"\x00" * 32, genesis)
    hash0 = store.head().hash  # type: ignore[union-attr]
    root1 = _commit(store, 1, hash0, StateDiff(accounts={a: Account(1, 9)}, storage={a: {1: 0, 3: 7}}))
    assert store.unwind_block().state_root == root0
    store.nodes.clear()  # read from SQLite
    assert read_slot(store.get_trie_node, root0, a, 1, LayoutStats()) == 5
    assert read_slot(store.get_trie_node, root1, a, 3, LayoutStats()) == 7  # the unwound block's nodes stay
    root1b = _commit(store, 1, hash0, StateDiff(accounts={b: Account(1, 1)}, storage={b: {9: 9}}))
    assert root1b == _expected_root({a: Account(0, 10), b: Account(1, 1)}, {a: {1: 5, 2: 6}, b: {9: 9}})
    store.close()


@pytest.mark.parametrize("owner", [b"", keccak(b"an address")])
def test_bulk_build_writes_what_incremental_merkleization_writes(owner: bytes) -> None:
    """state.bulk with an owner (halfpath) emits exactly the rows the store writes for the
    same trie built by update_root, and with none the hash-keyed rows."""
    items = sorted((keccak(i.to_bytes(4, "big")), encode_storage_value(i + 1)) for i in range(3000))
    for scheme in SCHEMES:
        rows: dict[bytes, bytes] = {}
        root = root_from_sorted(items, rows.update, prefix=2, owner=None if scheme == HASH else owner)
        new_root, nodes = update_root({}.__getitem__, BLANK_ROOT, dict(items))
        assert root == new_root
        assert rows == keyed_rows(scheme, nodes, [(owner, new_root)])
    assert halfpath_key(b"", "", root)[:1] == b"\x00" and halfpath_key(b"", "abcdef", root)[:1] == b"\x01"


def test_node_places_follow_a_walk(tmp_path: Path) -> None:
    """NodePlaces (py-evm's reads, eth_getProof) finds every node of a walk from the
    root, storage tries included, in a halfpath store."""
    store = StateStore(tmp_path / "s.sqlite", synchronous="OFF", trie_scheme=HALFPATH)
    accounts = {i.to_bytes(20, "big"): Account(0, i) for i in range(1, 200)}
    slots = {i.to_bytes(20, "big"): {s: s + 1 for s in range(i % 7)} for i in range(1, 200)}
    root = _commit(store, 0, b"\x00" * 32, StateDiff(accounts=accounts, storage={a: s for a, s in slots.items() if s}))
    db = store._reader
    places = NodePlaces(HALFPATH, root)

    def get(node_hash: bytes, owner: bytes = b"", path: str = "") -> bytes:
        key = places.key(node_hash)
        assert key is not None
        encoded: bytes = db.execute("SELECT node FROM trie_nodes WHERE hash=?", (key,)).fetchone()[0]
        places.served(node_hash, encoded)
        return encoded

    for address in accounts:
        for slot, value in slots[address].items():
            assert read_slot(get, root, address, slot, LayoutStats()) == value
    store.close()
