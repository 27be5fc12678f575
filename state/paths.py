"""Many trie paths walked together, one level at a time (geth's trie prefetcher).

A walk from the root to one key is a chain of dependent lookups: each node names
the next. Walking many keys together turns a block's thousands of dependent lookups
into one batch per level (eight to ten at mainnet sizes): `PathWalk.wanted` is the
set of nodes the walk stands at, the caller reads those it does not hold (in
parallel, sorted, batched: `state.readers`) and `advance` moves every path one or
more levels on. Leaves give the value at the key (`values`), so a walk also reads
accounts and slots where the state has no flat tables (`--layout trie`).
"""
from __future__ import annotations

from collections.abc import Mapping

from state.account import BLANK_ROOT
from state.trie import _decode

_NIB = {c: i for i, c in enumerate("0123456789abcdef")}


class PathWalk:
    """Cursors (root, key, depth, node hash) that `advance` moves down their tries."""

    def __init__(self) -> None:
        self._cursors: dict[bytes, list[tuple[bytes, bytes, str, int, bytes]]] = {}  # node hash -> (root, key, path, depth, owner)
        self.values: dict[tuple[bytes, bytes], bytes | None] = {}  # (root, key) -> leaf value (None: absent)
        self.missing: set[bytes] = set()  # nodes no one had: their paths stopped

    def add(self, root: bytes, key: bytes, owner: bytes = b"") -> None:
        """Walk to `key` (a 32-byte hashed key) in the trie with root hash `root`
        (`owner`: the hashed address of a storage trie, b"" for the account trie)."""
        if (root, key) in self.values:
            return
        if root == BLANK_ROOT:
            self.values[(root, key)] = None
            return
        self.values[(root, key)] = None
        self._cursors.setdefault(root, []).append((root, key, key.hex(), 0, owner))

    def wanted(self) -> set[bytes]:
        """The nodes the walk needs next (empty: done)."""
        return set(self._cursors)

    def place(self, node_hash: bytes) -> tuple[bytes, str]:
        """(owner, nibble path) where a wanted node sits (one of its places, if
        several paths wait on it): what a store keyed by place needs (state.nodekeys)."""
        _, _, path, depth, owner = self._cursors[node_hash][0]
        return owner, path[:depth]

    def advance(self, nodes: Mapping[bytes, bytes]) -> None:
        """Move every path whose next node is in `nodes`; a path whose node is not
        stops (the node is counted missing)."""
        cursors, self._cursors = self._cursors, {}
        for node_hash, waiting in cursors.items():
            encoded = nodes.get(node_hash)
            if encoded is None:
                self.missing.add(node_hash)
                continue
            for root, key, path, depth, owner in waiting:
                self._step(encoded, root, key, path, depth, owner)

    def _step(self, encoded: bytes, root: bytes, key: bytes, path: str, depth: int, owner: bytes) -> None:
        while True:
            node = _decode(encoded)
            kind = node[0]
            if kind == 0:  # leaf
                if path[depth:] == node[1]:
                    self.values[(root, key)] = node[2]
                return
            if kind == 1:  # extension
                if path[depth : depth + len(node[1])] != node[1]:
                    return
                depth += len(node[1])
                ref = node[2]
            else:
                if depth == len(path):
                    self.values[(root, key)] = node[2] or None
                    return
                ref = node[1][_NIB[path[depth]]]
                depth += 1
            if len(ref) == 33 and ref[0] == 0xA0:
                self._cursors.setdefault(ref[1:], []).append((root, key, path, depth, owner))
                return
            if ref == b"\x80" or not ref:
                return
            encoded = ref  # embedded node
