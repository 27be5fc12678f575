"""A trie root over a sorted stream of leaves, in bounded memory (for `evmpipe gen state`).

`state.trie.root_from_items` holds every leaf in memory; a 10M-account state does not
fit that way. Here the leaves arrive sorted by key (SQLite sorts them on disk) and
are cut into buckets by their first `prefix` nibbles. Each bucket is built with the
trie module's builder (every node encoded and hashed once, as geth's StackTrie does)
and its nodes handed to `emit`; only the bucket's top node is kept. The levels above
the buckets are then put together from those top nodes, which gives byte for byte the
root `root_from_items` gives for the same leaves.

`owner` (None: rows keyed by hash) keys the emitted rows by place (state.nodekeys,
halfpath): b"" for the account trie, the hashed address for a storage trie. Paths are
known while building: each bucket's nodes are walked down from its top node.
"""
from __future__ import annotations

from itertools import groupby
from typing import Any, Callable, Iterable, Optional

from state.nodekeys import halfpath_key, placed_below, placements
from state.trie import BLANK_ROOT, _build, _encode, _keccak, _ref

Emit = Callable[[dict[bytes, bytes]], None]
Node = tuple[Any, ...]  # a decoded node, as state.trie builds them
_HEX = "0123456789abcdef"
BUCKET_TARGET = 50_000  # leaves per bucket: a few tens of MiB of Python objects at most


def prefix_for(expected_leaves: int) -> int:
    """Nibbles of bucket prefix so that a bucket holds about `BUCKET_TARGET` leaves."""
    prefix = 0
    while expected_leaves / 16**prefix > BUCKET_TARGET and prefix < 6:
        prefix += 1
    return prefix


def root_from_sorted(leaves: Iterable[tuple[bytes, bytes]], emit: Emit, *, prefix: int = 0, on_leaf: Callable[[int], None] | None = None, owner: bytes | None = None) -> bytes:
    """Root of the trie of `leaves` ((key, RLP value) pairs, sorted by key, keys unique
    and of one length, values non-empty). Every hashed node, and the root node even
    when it is shorter than 32 bytes, goes to `emit` in batches."""
    return join_buckets(build_buckets(leaves, emit, prefix=prefix, on_leaf=on_leaf, owner=owner), emit, prefix=prefix, owner=owner)


def build_buckets(leaves: Iterable[tuple[bytes, bytes]], emit: Emit, *, prefix: int, on_leaf: Callable[[int], None] | None = None, owner: bytes | None = None) -> dict[str, Node]:
    """The top node (unencoded) of each bucket of `leaves` (sorted), by its hex prefix.
    Buckets of disjoint key ranges may be built apart (other processes) and joined."""
    tops: dict[str, Node] = {}
    for bucket, group in groupby(((key.hex(), value) for key, value in leaves), key=lambda kv: kv[0][:prefix]):
        ks: list[str] = []
        vs: list[bytes] = []
        for k, v in group:
            ks.append(k)
            vs.append(v)
        if len(ks) > 1 and ks[-2] >= ks[-1]:
            raise ValueError("leaves are not sorted by key, or a key repeats")
        if bucket in tops:
            raise ValueError("leaves are not sorted by key")
        store: dict[bytes, bytes] = {}
        tops[bucket] = _build(ks, vs, 0, len(ks), prefix, store)
        if owner is None:
            emit(store)
        else:
            emit({halfpath_key(owner, p, h): store[h] for p, h in placed_below(store, bucket, _encode(tops[bucket]))})
        if on_leaf is not None:
            on_leaf(len(ks))
    return tops


def join_buckets(tops: dict[str, Node], emit: Emit, *, prefix: int, owner: bytes | None = None) -> bytes:
    """The root over the bucket top nodes (`build_buckets`); emits the nodes above them."""
    store: dict[bytes, bytes] = {}
    top = _join(tops, "", prefix, store)
    if top is None:
        return BLANK_ROOT
    encoded = _encode(top)
    root = _keccak(encoded)
    store[root] = encoded
    emit(store if owner is None else {halfpath_key(owner, p, h): store[h] for _, p, h in placements(store, [(owner, root)])})
    return root


def _join(tops: dict[str, Node], path: str, prefix: int, store: dict[bytes, bytes]) -> Optional[Node]:
    """The node at `path` (above the buckets) from the bucket top nodes below it."""
    if len(path) == prefix:
        return tops.get(path)
    children = [(n, _join(tops, path + _HEX[n], prefix, store)) for n in range(16)]
    live = [(n, node) for n, node in children if node is not None]
    if not live:
        return None
    if len(live) == 1:  # no branch here: the only child moves up one nibble
        n, node = live[0]
        if node[0] == 2:
            return (1, _HEX[n], _ref(node, store))
        return (node[0], _HEX[n] + node[1], node[2])
    refs = [b"\x80"] * 16
    for n, node in live:
        refs[n] = _ref(node, store)
    return (2, refs, None)
