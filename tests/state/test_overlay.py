"""state/overlay.py: committed state plus in-flight diffs, newest first."""

from __future__ import annotations

from pathlib import Path

import pytest
import rlp
from eth_hash.auto import keccak

from state.account import Account
from state.diff import StateDiff
from state.overlay import Overlay
from state.store import BlockCommit, StateStore

A, B, C, D = (bytes([i]) * 20 for i in (0xA, 0xB, 0xC, 0xD))
CODE = b"\x60\x2a\x60\x00\x52"
NODE = b"committed-node"


@pytest.fixture
def store(tmp_path: Path):
    s = StateStore(tmp_path / "state.sqlite", synchronous="OFF")
    diff = StateDiff()
    diff.accounts[A] = Account(nonce=1, balance=100)
    diff.accounts[B] = Account(balance=200, code_hash=keccak(CODE))
    diff.accounts[C] = Account(nonce=3)
    diff.code[keccak(CODE)] = CODE
    diff.storage[A] = {1: 10, 2: 20}
    diff.storage[B] = {1: 11}
    s.commit_block(
        BlockCommit(
            number=0,
            hash=b"\x01" * 32,
            parent_hash=b"\x00" * 32,
            state_root=b"\x02" * 32,
            header_rlp=rlp.encode([b"\x00" * 32, b"", b"", b"\x02" * 32]),
            block_rlp=b"",
            total_difficulty=1,
            diff=diff,
            trie_nodes={keccak(NODE): NODE},
        )
    )
    yield s
    s.close()


@pytest.fixture
def overlay(store: StateStore) -> Overlay:
    return Overlay(store)


def test_empty_overlay_reads_store(overlay: Overlay) -> None:
    assert overlay.get_account(A) == Account(nonce=1, balance=100)
    assert overlay.get_account(D) is None
    assert overlay.get_storage(A, 1) == 10
    assert overlay.get_storage(A, 3) == 0
    assert overlay.get_code(keccak(CODE)) == CODE
    assert overlay.get_code(keccak(b"none")) is None
    assert overlay.has_storage(A)
    assert not overlay.has_storage(C)


def test_newest_diff_wins(overlay: Overlay) -> None:
    d1 = StateDiff()
    d1.accounts[A] = Account(nonce=2, balance=90)
    d1.accounts[D] = Account(balance=1)
    d1.set_storage(A, 1, 15)
    d1.set_storage(A, 5, 50)
    d1.code[keccak(b"c1")] = b"c1"
    d2 = StateDiff()
    d2.accounts[A] = Account(nonce=3, balance=80)
    d2.set_storage(A, 1, 16)
    overlay.push(1, d1)
    overlay.push(2, d2)

    assert overlay.get_account(A) == Account(nonce=3, balance=80)
    assert overlay.get_account(D) == Account(balance=1)  # only in the older diff
    assert overlay.get_account(B) == Account(balance=200, code_hash=keccak(CODE))  # store
    assert overlay.get_storage(A, 1) == 16
    assert overlay.get_storage(A, 5) == 50
    assert overlay.get_storage(A, 2) == 20  # falls through both diffs
    assert overlay.get_code(keccak(b"c1")) == b"c1"
    assert overlay.get_code(keccak(CODE)) == CODE


def test_deleted_account_reads_none(overlay: Overlay) -> None:
    d1 = StateDiff()
    d1.accounts[A] = None
    d1.wipe_storage(A)
    overlay.push(1, d1)
    assert overlay.get_account(A) is None
    assert overlay.get_storage(A, 1) == 0
    assert not overlay.has_storage(A)

    d2 = StateDiff()  # recreated in a later block
    d2.accounts[A] = Account(balance=1)
    overlay.push(2, d2)
    assert overlay.get_account(A) == Account(balance=1)
    assert overlay.get_storage(A, 1) == 0  # the older wipe still hides committed slots
    assert overlay.get_account_below(2, A) is None
    assert overlay.get_account_below(1, A) == Account(nonce=1, balance=100)


def test_wipe_hides_older_and_committed_slots(overlay: Overlay) -> None:
    d1 = StateDiff()
    d1.set_storage(A, 3, 30)  # in an older diff
    d2 = StateDiff()
    d2.wipe_storage(A)
    d2.set_storage(A, 7, 70)  # written after the wipe, same block
    overlay.push(1, d1)
    overlay.push(2, d2)
    assert overlay.get_storage(A, 1) == 0  # committed slot hidden
    assert overlay.get_storage(A, 2) == 0
    assert overlay.get_storage(A, 3) == 0  # older diff's slot hidden
    assert overlay.get_storage(A, 7) == 70
    assert overlay.get_storage(B, 1) == 11  # other accounts unaffected

    d3 = StateDiff()
    d3.set_storage(A, 1, 1)  # a newer diff above the wipe
    overlay.push(3, d3)
    assert overlay.get_storage(A, 1) == 1
    assert overlay.get_storage(A, 2) == 0


def test_drop_committed_and_drop_above(overlay: Overlay) -> None:
    diffs = {}
    for n in (1, 2, 3):
        d = StateDiff()
        d.accounts[D] = Account(balance=n)
        d.set_storage(D, 0, n)
        diffs[n] = d
        overlay.push(n, d)
        overlay.add_merkleized(n, {keccak(b"node%d" % n): b"node%d" % n}, {})
    assert overlay.get_account(D) == Account(balance=3)

    overlay.drop_above(2)
    assert [n for n, _ in overlay.diffs] == [1, 2]
    assert set(overlay.nodes) == {1, 2}
    assert overlay.get_account(D) == Account(balance=2)
    assert overlay.get_storage(D, 0) == 2
    with pytest.raises(KeyError):
        overlay.get_trie_node(keccak(b"node3"))

    overlay.drop_committed(1)
    assert [n for n, _ in overlay.diffs] == [2]
    assert set(overlay.nodes) == {2}
    assert overlay.get_account(D) == Account(balance=2)
    overlay.drop_committed(2)
    assert overlay.diffs == [] and overlay.nodes == {}
    assert overlay.get_account(D) is None  # never committed to this store
    assert overlay.get_storage(D, 0) == 0
    overlay.drop_above(0)
    assert overlay.diffs == []


def test_get_account_below(overlay: Overlay) -> None:
    for n in (5, 6, 7):
        d = StateDiff()
        d.accounts[A] = Account(nonce=n)
        overlay.push(n, d)
    d8 = StateDiff()
    d8.accounts[B] = Account(nonce=8)
    overlay.push(8, d8)
    assert overlay.get_account_below(5, A) == Account(nonce=1, balance=100)  # from the store
    assert overlay.get_account_below(6, A) == Account(nonce=5)
    assert overlay.get_account_below(7, A) == Account(nonce=6)
    assert overlay.get_account_below(8, A) == Account(nonce=7)
    assert overlay.get_account_below(100, A) == Account(nonce=7)
    assert overlay.get_account_below(8, B) == Account(balance=200, code_hash=keccak(CODE))
    assert overlay.get_account_below(9, B) == Account(nonce=8)


def test_has_storage_with_zeroed_slots_and_wipes(overlay: Overlay) -> None:
    # A has committed slots 1 and 2
    d1 = StateDiff()
    d1.set_storage(A, 1, 0)
    overlay.push(1, d1)
    assert overlay.has_storage(A)  # slot 2 still set in the store
    assert not overlay.has_storage(A, frozenset({2}))

    d2 = StateDiff()
    d2.set_storage(A, 2, 0)
    overlay.push(2, d2)
    assert not overlay.has_storage(A)  # both committed slots zeroed by diffs

    d3 = StateDiff()
    d3.set_storage(A, 1, 5)
    overlay.push(3, d3)
    assert overlay.has_storage(A)
    assert not overlay.has_storage(A, frozenset({1}))

    # a zero in a newer diff hides a non-zero in an older one
    d4 = StateDiff()
    d4.set_storage(A, 1, 0)
    overlay.push(4, d4)
    assert not overlay.has_storage(A)

    # wipes: slots written after the wipe count, nothing below it does
    e1 = StateDiff()
    e1.set_storage(C, 4, 4)
    overlay.push(5, e1)
    assert overlay.has_storage(C)
    e2 = StateDiff()
    e2.wipe_storage(B)
    e2.wipe_storage(C)
    e2.set_storage(C, 9, 0)
    overlay.push(6, e2)
    assert not overlay.has_storage(B)
    assert not overlay.has_storage(C)
    e3 = StateDiff()
    e3.wipe_storage(B)
    e3.set_storage(B, 2, 2)
    overlay.push(7, e3)
    assert overlay.has_storage(B)
    assert not overlay.has_storage(B, frozenset({2}))
    assert not overlay.has_storage(D)


def test_trie_node_falls_back_to_store(overlay: Overlay) -> None:
    overlay.add_merkleized(1, {keccak(b"n1"): b"n1"}, {})
    overlay.add_merkleized(2, {keccak(b"n2"): b"n2"}, {})
    assert overlay.get_trie_node(keccak(b"n1")) == b"n1"
    assert overlay.get_trie_node(keccak(b"n2")) == b"n2"
    assert overlay.get_trie_node(keccak(NODE)) == NODE  # committed
    with pytest.raises(KeyError):
        overlay.get_trie_node(keccak(b"missing"))


def test_overlay_sees_commits_after_drop(overlay: Overlay, store: StateStore) -> None:
    """A diff leaves the overlay once committed: reads stay the same across the hand-over."""
    d = StateDiff()
    d.accounts[A] = Account(nonce=9)
    d.wipe_storage(A)
    d.set_storage(A, 4, 44)
    overlay.push(1, d)
    before = (overlay.get_account(A), overlay.get_storage(A, 1), overlay.get_storage(A, 4), overlay.has_storage(A))
    store.commit_block(
        BlockCommit(1, b"\x03" * 32, b"\x01" * 32, b"\x04" * 32, rlp.encode([b"\x01" * 32, b"", b"", b"\x04" * 32]), b"", 2, d, {})
    )
    overlay.drop_committed(1)
    after = (overlay.get_account(A), overlay.get_storage(A, 1), overlay.get_storage(A, 4), overlay.has_storage(A))
    assert before == after == (Account(nonce=9), 0, 44, True)
