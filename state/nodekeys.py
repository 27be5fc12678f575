"""How `trie_nodes` rows are keyed: by hash, or by where the node sits and its hash.

A datadir holds one scheme, named in its meta table (`trie_scheme`; absent: "hash",
the scheme of every datadir made before the choice existed):

- ``hash``: the key is the node's 32-byte hash. Content-addressed; a trie's nodes are
  scattered over the whole B-tree.
- ``halfpath`` (Nethermind's HalfPath): section byte, owner, the first 8 bytes of the
  packed nibble path (zero-padded), the path length, then the hash. Section 0 holds the
  account trie's top levels (path length <= 5), 1 the rest of the account trie, 2 the
  storage tries (owner: the hashed address). A trie's nodes are neighbours on disk, as
  under geth's path keys, but the hash stays in the key: rows are only ever added, so
  every committed root stays readable (unwind, reorgs, bench's reset to genesis) and
  in-memory tiers (hot cache, overlay of in-flight blocks) stay keyed by hash.

A node's key ends with its hash under both schemes (`key[-32:]`). A node that sits at
two places (identical subtries) has a row at each. Readers pass (owner, path) with
the hash; under ``hash`` those are ignored.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from state.trie import BLANK_ROOT, _decode

HASH = "hash"
HALFPATH = "halfpath"
SCHEMES = (HASH, HALFPATH)
DEFAULT_SCHEME = HALFPATH  # what new datadirs get (pipeline.datadir, gen state, the fixture runner): docs/STATE.md
META_KEY = "trie_scheme"
_HEX = "0123456789abcdef"


def halfpath_key(owner: bytes, path: str, node_hash: bytes) -> bytes:
    """The HalfPath key of node `node_hash` at nibble `path` (hex string) of the trie of
    `owner` (b"" for the account trie)."""
    packed = bytes.fromhex(path[:16].ljust(16, "0")) + bytes((len(path),))
    if owner:
        return b"\x02" + owner + packed + node_hash
    return (b"\x00" if len(path) <= 5 else b"\x01") + packed + node_hash


def node_key(scheme: str, owner: bytes, path: str, node_hash: bytes) -> bytes:
    """The `trie_nodes` key of a node under `scheme`."""
    return node_hash if scheme == HASH else halfpath_key(owner, path, node_hash)


def children(encoded: bytes, path: str) -> Iterator[tuple[str, bytes]]:
    """(path, hash) of the hashed nodes directly below the node `encoded` at `path`,
    through embedded nodes."""
    node = _decode(encoded)
    if node[0] == 0:
        return
    refs = [(path + node[1], node[2])] if node[0] == 1 else [(path + _HEX[n], ref) for n, ref in enumerate(node[1]) if ref != b"\x80"]
    for child_path, ref in refs:
        if len(ref) == 33 and ref[0] == 0xA0:
            yield child_path, ref[1:]
        else:
            yield from children(ref, child_path)


def placements(nodes: Mapping[bytes, bytes], roots: Iterable[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, str, bytes]]:
    """(owner, path, hash) of every node of `nodes` (new nodes by hash) that the tries
    `roots` ((owner, root hash)) reach through new nodes only: a new node's parent is
    new (its child reference changed), so walking down from the new roots through
    `nodes` finds every place a new node sits."""
    for owner, root in roots:
        if root not in nodes:
            continue
        stack = [("", root)]
        while stack:
            path, node_hash = stack.pop()
            yield owner, path, node_hash
            stack += ((p, h) for p, h in children(nodes[node_hash], path) if h in nodes)


def placed_below(nodes: Mapping[bytes, bytes], path: str, encoded: bytes) -> Iterator[tuple[str, bytes]]:
    """(path, hash) of every node of `nodes` below the node `encoded` at `path`,
    reached through nodes of `nodes` only (a bucket of a bulk build, state.bulk)."""
    stack = [(p, h) for p, h in children(encoded, path) if h in nodes]
    while stack:
        path, node_hash = stack.pop()
        yield path, node_hash
        stack += ((p, h) for p, h in children(nodes[node_hash], path) if h in nodes)


def keyed_rows(scheme: str, nodes: Mapping[bytes, bytes], roots: Iterable[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    """`trie_nodes` rows (key -> node) for a commit's new nodes under `scheme`."""
    if scheme == HASH:
        return dict(nodes)
    return {halfpath_key(owner, path, h): nodes[h] for owner, path, h in placements(nodes, roots)}


class NodePlaces:
    """Where nodes sit, learnt by following walks from a root: for readers that ask by
    hash only (py-evm's HexaryTrie, eth_getProof's walk) over a datadir keyed by place.
    Every node served tells where its children sit, and an account leaf where its
    storage trie's root sits; a walk reads a node only after its parent, so every node
    it asks for has been placed (a node at several places: one of them, same content)."""

    def __init__(self, scheme: str, state_root: bytes | None) -> None:
        self.scheme = scheme
        self.places: dict[bytes, tuple[bytes, str]] = {} if state_root is None else {state_root: (b"", "")}

    def key(self, node_hash: bytes) -> bytes | None:
        """The `trie_nodes` key to look up (None: a hash never reached, so not a node)."""
        if self.scheme == HASH:
            return node_hash
        place = self.places.get(node_hash)
        return None if place is None else halfpath_key(place[0], place[1], node_hash)

    def served(self, node_hash: bytes, encoded: bytes) -> None:
        """`encoded` (the node `node_hash`) was read: place its children."""
        if self.scheme == HASH:
            return
        owner, path = self.places[node_hash]
        for child_path, child in children(encoded, path):
            self.places.setdefault(child, (owner, child_path))
        node = _decode(encoded)
        if owner == b"" and node[0] == 0 and len(path) + len(node[1]) == 64:  # an account leaf
            from state.layout import _account_from_rlp

            storage_root = _account_from_rlp(node[2]).storage_root
            if storage_root != BLANK_ROOT:
                self.places.setdefault(storage_root, (bytes.fromhex(path + node[1]), ""))
