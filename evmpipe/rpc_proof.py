"""`eth_getProof` ([EIP-1186]): the trie nodes from the state root to an account, and
from its storage root to each slot asked for, read from the nodes the node keeps
(`trie_nodes`, content-addressed, never deleted).

A proof lists the RLP of every node on the path that is referenced by hash, root
first; nodes shorter than 32 bytes are embedded in their parent and are not listed
(as geth does). A key that is absent still has a proof: the path down to where it
would be, showing that it is not there.
"""
from __future__ import annotations

from typing import Any, Callable

import rlp
from eth_hash.auto import keccak

from state.account import BLANK_ROOT


def trie_proof(get_node: Callable[[bytes], bytes], root: bytes, key: bytes) -> tuple[list[bytes], bytes | None]:
    """(the proof's nodes, the value at `keccak(key)` or None) in the trie under `root`."""
    if root == BLANK_ROOT:
        return [], None
    nibbles = keccak(key).hex()
    proof: list[bytes] = []
    encoded = get_node(root)
    proof.append(encoded)
    node: Any = rlp.decode(encoded)
    while True:
        if len(node) == 17:  # branch
            if not nibbles:
                return proof, node[16] or None
            child, nibbles = node[int(nibbles[0], 16)], nibbles[1:]
        elif len(node) == 2:  # leaf or extension, its path hex-prefix encoded
            prefix = node[0].hex()
            flag = int(prefix[0], 16)
            partial = prefix[1:] if flag & 1 else prefix[2:]
            if flag & 2:  # leaf
                return proof, node[1] if partial == nibbles else None
            if not nibbles.startswith(partial):
                return proof, None
            child, nibbles = node[1], nibbles[len(partial):]
        else:
            raise ValueError(f"a trie node of {len(node)} items")
        if child in (b"", []):
            return proof, None
        if isinstance(child, list):  # embedded: already in its parent's RLP
            node = child
            continue
        encoded = get_node(child)
        proof.append(encoded)
        node = rlp.decode(encoded)


def account_fields(value: bytes | None) -> tuple[int, int, bytes, bytes] | None:
    """(nonce, balance, storage root, code hash) of a state trie leaf."""
    if value is None:
        return None
    nonce, balance, storage_root, code_hash = rlp.decode(value)
    return int.from_bytes(nonce, "big"), int.from_bytes(balance, "big"), storage_root, code_hash
