"""state/trie.py against py-trie's HexaryTrie (the reference implementation)
and py-evm's make_trie_root_and_nodes."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Optional

import pytest
import rlp
from eth.db.trie import make_trie_root_and_nodes
from eth_hash.auto import keccak
from eth_utils import int_to_big_endian
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trie import HexaryTrie

from state.trie import (
    BLANK_ROOT,
    encode_account,
    encode_storage_value,
    ordered_trie_root,
    root_from_items,
    update_root,
)

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def hexary_root(items: dict[bytes, bytes]) -> bytes:
    t = HexaryTrie({})
    with t.squash_changes() as m:
        for k, v in items.items():
            m[k] = v
    return t.root_hash


# Keys: variable length, over a tiny alphabet so that prefixes (and keys that
# are prefixes of other keys) are common.
short_keys = st.binary(min_size=0, max_size=4).map(lambda b: bytes(x & 0x11 for x in b))
values = st.one_of(
    st.binary(min_size=1, max_size=2), st.binary(min_size=1, max_size=80)
)


def test_blank_root() -> None:
    assert BLANK_ROOT == keccak(rlp.encode(b""))
    assert root_from_items([]) == BLANK_ROOT
    assert root_from_items([(b"\x01", b"")]) == BLANK_ROOT
    assert ordered_trie_root([]) == BLANK_ROOT
    assert update_root({}.__getitem__, BLANK_ROOT, {}) == (BLANK_ROOT, {})
    assert update_root({}.__getitem__, BLANK_ROOT, {b"\x00" * 32: None}) == (BLANK_ROOT, {})


@pytest.mark.parametrize(
    "n", [0, 1, 0x7F, 0x80, 0xFF, 0x100, 2**64 - 1, 10**24, 2**256 - 1]
)
def test_encoders(n: int) -> None:
    sr, ch = keccak(b"s"), keccak(b"c")
    assert encode_account(n, n, sr, ch) == rlp.encode([n, n, sr, ch])
    assert encode_account(1, n, BLANK_ROOT, ch) == rlp.encode([1, n, BLANK_ROOT, ch])
    if n:
        assert encode_storage_value(n) == rlp.encode(int_to_big_endian(n))


@SETTINGS
@given(st.lists(st.tuples(short_keys, values), max_size=40))
def test_root_from_items_short_keys(items: list[tuple[bytes, bytes]]) -> None:
    assert root_from_items(items) == hexary_root(dict(items))


@SETTINGS
@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), values), max_size=40))
def test_root_from_items_hashed_keys(items: list[tuple[bytes, bytes]]) -> None:
    assert root_from_items(items) == hexary_root(dict(items))


def test_root_from_items_random_large() -> None:
    rng = random.Random(7)
    items = {rng.randbytes(32): rng.randbytes(rng.choice([1, 30, 70])) for _ in range(600)}
    shuffled = list(items.items())
    rng.shuffle(shuffled)
    assert root_from_items(shuffled) == hexary_root(items)


# Pool of 32-byte keys with long shared prefixes: embedded (< 32 byte) leaves
# and branches appear deep down, and extensions get split and re-merged.
_PREFIX_A = b"\xab" * 31
_PREFIX_B = b"\x12\x34" + b"\x00" * 28
KEY_POOL = (
    [_PREFIX_A + bytes([i]) for i in (0x00, 0x01, 0x10, 0x11, 0xF0)]
    + [_PREFIX_B + bytes([i, j]) for i in (0, 1) for j in (0, 0x10, 0x11)]
    + [keccak(bytes([i])) for i in range(8)]
    + [b"\xab" * 16 + keccak(bytes([i]))[:16] for i in range(3)]
)

batches_st = st.lists(
    st.dictionaries(
        st.sampled_from(KEY_POOL),
        st.one_of(st.none(), st.binary(min_size=1, max_size=1), st.binary(min_size=1, max_size=40)),
        max_size=12,
    ),
    min_size=1,
    max_size=6,
)


def apply_batches(batches: list[dict[bytes, Optional[bytes]]]) -> None:
    """Apply each batch with update_root (reading only nodes it returned) and
    with HexaryTrie; roots must agree, and HexaryTrie must be able to read
    every key back from the nodes update_root stored."""
    db: dict[bytes, bytes] = {}
    root = BLANK_ROOT
    ref = HexaryTrie({})
    expected: dict[bytes, bytes] = {}
    for changes in batches:
        root, new_nodes = update_root(db.__getitem__, root, changes)
        db.update(new_nodes)
        for k, v in changes.items():
            if v is None:
                expected.pop(k, None)
                if k in ref:
                    del ref[k]
            else:
                expected[k] = v
                ref[k] = v
        assert root == ref.root_hash
        assert root == root_from_items(expected.items())
        if changes and root != BLANK_ROOT:
            assert root in new_nodes  # the root node is always stored
        reader = HexaryTrie(db, root)
        for k, v in expected.items():
            assert reader[k] == v


@SETTINGS
@given(batches_st)
def test_update_root_batches(batches: list[dict[bytes, Optional[bytes]]]) -> None:
    apply_batches(batches)


@SETTINGS
@given(batches_st)
def test_update_root_then_delete_all(batches: list[dict[bytes, Optional[bytes]]]) -> None:
    everything = {k: None for k in KEY_POOL}
    refill = {k: b"\x01" for k in KEY_POOL[::2]}
    apply_batches(batches + [everything, refill, everything])


def test_update_root_random_large() -> None:
    rng = random.Random(11)
    keys = [rng.randbytes(32) for _ in range(500)]
    batches: list[dict[bytes, Optional[bytes]]] = [
        {k: rng.randbytes(rng.choice([1, 40, 80])) for k in keys[:300]}
    ]
    for _ in range(4):
        batch: dict[bytes, Optional[bytes]] = {}
        for k in rng.sample(keys, 150):
            batch[k] = None if rng.random() < 0.4 else rng.randbytes(rng.choice([1, 40]))
        batches.append(batch)
    batches.append({k: None for k in keys})
    apply_batches(batches)


def test_delete_collapses_into_fetched_extension() -> None:
    """Deleting a branch's other child leaves a hashed extension that must be
    fetched and merged into the new path (nibble + extension path)."""
    k1 = b"\x11" + b"\x01" * 31
    k2 = b"\x11" + b"\x02" * 31
    k3 = b"\x22" + b"\x03" * 31
    v = b"x" * 40
    root, db = update_root({}.__getitem__, BLANK_ROOT, {k1: v, k2: v, k3: v})
    fetched: list[bytes] = []

    def get(h: bytes) -> bytes:
        fetched.append(h)
        return db[h]

    root2, new = update_root(get, root, {k3: None})
    assert root2 == hexary_root({k1: v, k2: v})
    assert len(fetched) >= 3  # root, k3's leaf, and the sibling extension
    db.update(new)
    assert HexaryTrie(db, root2)[k1] == v


def test_delete_leaves_single_branch_child() -> None:
    """When the lone remaining child is a branch, it is referenced unchanged
    by a new one-nibble extension (not re-encoded)."""
    v = b"y" * 40
    keep = {b"\x10" + bytes([i]) * 31: v for i in range(3)}  # branch under nibble 1
    gone = b"\x20" + b"\x00" * 31
    root, db = update_root({}.__getitem__, BLANK_ROOT, {**keep, gone: v})
    root2, new = update_root(db.__getitem__, root, {gone: None})
    assert root2 == hexary_root(keep)
    db.update(new)
    for k in keep:
        assert HexaryTrie(db, root2)[k] == v


def test_short_root_is_hashed_and_stored() -> None:
    k = b"\x00" * 32
    root, new = update_root({}.__getitem__, BLANK_ROOT, {k: b"\x01"})
    assert root == hexary_root({k: b"\x01"})
    assert new[root] and keccak(new[root]) == root
    # A trie whose root node is embedded-sized (< 32 bytes).
    assert root_from_items([(b"\x01", b"\x02")]) == hexary_root({b"\x01": b"\x02"})
    root3, _ = update_root(new.__getitem__, root, {k: None})
    assert root3 == BLANK_ROOT


def test_noop_changes() -> None:
    rng = random.Random(3)
    items = {rng.randbytes(32): rng.randbytes(40) for _ in range(50)}
    root, db = update_root({}.__getitem__, BLANK_ROOT, items)
    absent = {rng.randbytes(32): None for _ in range(5)}
    assert update_root(db.__getitem__, root, absent)[0] == root
    some = dict(list(items.items())[:10])
    assert update_root(db.__getitem__, root, some)[0] == root


@pytest.mark.parametrize("n", [0, 1, 2, 16, 127, 128, 129, 300])
def test_ordered_trie_root(n: int) -> None:
    rng = random.Random(n)
    vals = [rng.randbytes(rng.choice([1, 20, 120])) for _ in range(n)]
    expected, _ = make_trie_root_and_nodes(
        tuple(SimpleNamespace(encode=(lambda v=v: v)) for v in vals)  # type: ignore[arg-type]
    )
    assert ordered_trie_root(vals) == expected
