"""Three ways to read committed state, same answers, other costs (`--layout`).

- ``flat`` (the default): one SQLite lookup per account or slot (`StateStore`'s flat
  tables), as geth's snapshot and reth's plain state do.
- ``trie``: every account read walks the account trie from the head's state root, and
  every slot read walks the account trie and then the contract's storage trie, one
  node lookup per level, as py-evm (and geth without a snapshot) read state.
- ``trie-pinned``: the same walks, with the nodes of the top `PINNED_DEPTH` levels of
  every trie kept in memory once read (never evicted): the levels every walk crosses.

Node lookups go through `StateStore.get_trie_node`, so they meet the store's hot
node cache, then SQLite, and are counted by tier like any read. `LayoutStats` counts
the reads that missed the hot account/slot caches and the node lookups their walks
made, which gives the lookups per account read and per slot read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from eth_hash.auto import keccak

from state.account import BLANK_ROOT, Account
from state.trie import _decode, rlp_item

LAYOUTS = ("flat", "trie", "trie-pinned")
PINNED_DEPTH = 3  # nibbles: 1 + 16 + 256 branch nodes per full trie
_NIBBLES = {c: i for i, c in enumerate("0123456789abcdef")}


@dataclass
class LayoutStats:
    layout: str = "flat"
    account_reads: int = 0
    account_lookups: int = 0
    slot_reads: int = 0
    slot_lookups: int = 0
    pinned_hits: int = 0
    pinned: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "layout": self.layout,
            "account_reads": self.account_reads,
            "lookups_per_account_read": round(self.account_lookups / self.account_reads, 3) if self.account_reads else None,
            "slot_reads": self.slot_reads,
            "lookups_per_slot_read": round(self.slot_lookups / self.slot_reads, 3) if self.slot_reads else None,
            "pinned_nodes": len(self.pinned),
            "pinned_hits": self.pinned_hits,
        }


GetNode = Callable[[bytes, bytes, str], bytes]  # (hash, owner, nibble path): state.nodekeys


def walk(get_node: GetNode, root: bytes, key: bytes, stats: LayoutStats, depth_pinned: int = 0, owner: bytes = b"") -> tuple[bytes | None, int]:
    """The value at `key` in the trie with root `root` (None: absent), and how many
    node lookups the walk made (pinned nodes are free and counted apart). `owner`:
    the hashed address for a storage trie, b"" for the account trie."""
    if root == BLANK_ROOT:
        return None, 0
    path = key.hex()
    depth = 0
    lookups = 0
    ref = b"\xa0" + root
    while True:
        if len(ref) == 33 and ref[0] == 0xA0:
            node_hash = ref[1:]
            encoded = stats.pinned.get(node_hash) if depth < depth_pinned else None
            if encoded is None:
                encoded = get_node(node_hash, owner, path[:depth])
                lookups += 1
                if depth < depth_pinned:
                    stats.pinned[node_hash] = encoded
            else:
                stats.pinned_hits += 1
        else:
            encoded = ref  # embedded node
        node = _decode(encoded)
        kind = node[0]
        if kind == 0:  # leaf
            return (node[2] if path[depth:] == node[1] else None), lookups
        if kind == 1:  # extension
            if path[depth : depth + len(node[1])] != node[1]:
                return None, lookups
            depth += len(node[1])
            ref = node[2]
            continue
        if depth == len(path):
            return node[2], lookups
        ref = node[1][_NIBBLES[path[depth]]]
        depth += 1
        if ref == b"\x80":
            return None, lookups


def _account_from_rlp(value: bytes) -> Account:
    """[nonce, balance, storage_root, code_hash] from a leaf's RLP list."""
    pos = 1 if value[0] <= 0xF7 else 1 + value[0] - 0xF7
    fields = []
    for _ in range(4):
        start, end = rlp_item(value, pos)
        fields.append(value[start:end])
        pos = end
    return Account(int.from_bytes(fields[0], "big"), int.from_bytes(fields[1], "big"), fields[3], fields[2])


def read_account(get_node: GetNode, state_root: bytes, address: bytes, stats: LayoutStats) -> Account | None:
    pinned = PINNED_DEPTH if stats.layout == "trie-pinned" else 0
    value, lookups = walk(get_node, state_root, keccak(address), stats, pinned)
    stats.account_reads += 1
    stats.account_lookups += lookups
    return None if value is None else _account_from_rlp(value)


def read_slot(get_node: GetNode, state_root: bytes, address: bytes, slot: int, stats: LayoutStats) -> int:
    pinned = PINNED_DEPTH if stats.layout == "trie-pinned" else 0
    owner = keccak(address)
    value, lookups = walk(get_node, state_root, owner, stats, pinned)
    total = lookups
    result = 0
    if value is not None:
        storage_root = _account_from_rlp(value).storage_root
        leaf, lookups = walk(get_node, storage_root, keccak(slot.to_bytes(32, "big")), stats, pinned, owner)
        total += lookups
        if leaf:
            start, end = rlp_item(leaf, 0)
            result = int.from_bytes(leaf[start:end], "big")
    stats.slot_reads += 1
    stats.slot_lookups += total
    return result
