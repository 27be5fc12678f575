"""Sender recovery from a transaction's encoding, once, with coincurve directly.

py-evm's `tx.sender` builds an unsigned transaction object, RLP-encodes it through
its sedes, wraps the signature in eth-keys objects and only then calls libsecp256k1:
about 140 µs per transaction here, of which the elliptic-curve recovery itself is
50 µs. The message that was signed is already in the block: the transaction's own
encoding without its three signature fields (and, for an [EIP-155] legacy
transaction, with the chain id and two empty strings in their place). Cutting those
bytes out of the encoding and recovering with coincurve gives the same address for
about a third of the cost.

Only the common, well-formed cases take this path: typed transactions, legacy ones
with v of 27 or 28, and EIP-155 legacy ones from Spurious Dragon on. Anything else
(a v, r or s out of range, Frontier and Homestead with an EIP-155 v) goes through
py-evm, so that a bad signature fails with py-evm's own error, as before.

[EIP-155]: https://eips.ethereum.org/EIPS/eip-155
"""
from __future__ import annotations

from typing import Any

from coincurve import PublicKey
from eth.vm.forks.berlin.transactions import TypedTransaction
from eth.vm.forks.spurious_dragon.transactions import SpuriousDragonTransaction
from eth_hash.auto import keccak

from execution.decode import mark_sender
from state.trie import rlp_int, rlp_item, rlp_list, rlp_str

#: the order of secp256k1: r and s must lie in [1, N)
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
EMPTY_STRING = rlp_str(b"")


def recover_sender(tx: Any, encoded: bytes) -> bytes:
    """The sender of `tx`, whose encoding as the block carries it is `encoded`; marked
    on `tx` (see `mark_sender`). Raises what py-evm raises for a bad signature."""
    message = signing_message(tx, encoded)
    if message is None:
        sender = tx.sender
    else:
        signature = tx.r.to_bytes(32, "big") + tx.s.to_bytes(32, "big") + bytes([tx.y_parity])
        public_key = PublicKey.from_signature_and_message(signature, keccak(message), hasher=None)
        sender = keccak(public_key.format(compressed=False)[1:])[12:]
    mark_sender(tx, sender)
    return sender


def signing_message(tx: Any, encoded: bytes) -> bytes | None:
    """What the sender signed, cut out of `encoded`; None where py-evm should decide."""
    if not (0 < tx.r < SECP256K1_N and 0 < tx.s < SECP256K1_N):
        return None
    if isinstance(tx, TypedTransaction):
        if tx.y_parity not in (0, 1):
            return None
        return encoded[:1] + rlp_list(b"".join(_list_items(encoded, 1)[:-3]))
    v = tx.v
    if v in (27, 28):
        return rlp_list(b"".join(_list_items(encoded, 0)[:6]))
    if v >= 35 and isinstance(tx, SpuriousDragonTransaction):
        items = _list_items(encoded, 0)[:6]
        return rlp_list(b"".join(items) + rlp_int(tx.chain_id) + EMPTY_STRING + EMPTY_STRING)
    return None


def _list_items(data: bytes, start: int) -> list[bytes]:
    """The encoded items of the RLP list at `data[start:]` (already decoded once, so
    well-formed), each with its own prefix."""
    offset, end = rlp_item(data, start)
    items = []
    while offset < end:
        item_end = rlp_item(data, offset)[1]
        items.append(data[offset:item_end])
        offset = item_end
    return items
