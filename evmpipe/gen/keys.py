"""Deterministic keys and addresses from the generator's seed.

A private key is `keccak256("evmpipe-gen/key" ++ seed ++ role ++ index)` (re-hashed in the
astronomically unlikely case it is not a valid secp256k1 scalar); addresses that need no
key (fresh recipients) are the low 20 bytes of a similar hash. Same seed, same keys, on
any machine. Signing uses eth_keys, whose coincurve backend is picked up when installed.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from eth_hash.auto import keccak
from eth_keys import keys

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _material(seed: int, domain: str, role: str, index: int) -> bytes:
    return b"evmpipe-gen/" + domain.encode() + b"/" + seed.to_bytes(8, "big") + role.encode() + b"/" + index.to_bytes(8, "big")


def private_key_bytes(seed: int, role: str, index: int) -> bytes:
    digest = keccak(_material(seed, "key", role, index))
    while not 0 < int.from_bytes(digest, "big") < SECP256K1_N:
        digest = keccak(digest)
    return digest


def fresh_address(seed: int, role: str, index: int) -> bytes:
    """An address nobody holds a key for (a fresh recipient, a withdrawal target)."""
    return keccak(_material(seed, "addr", role, index))[12:]


def derive_hash(seed: int, role: str, index: int) -> bytes:
    """A 32-byte deterministic value (beacon roots, prevRandao)."""
    return keccak(_material(seed, "hash", role, index))


@dataclass(eq=False)
class KeyedAccount:
    """An externally owned account the generator signs for, with its modelled state."""

    private_key: keys.PrivateKey = field(repr=False)
    address: bytes
    nonce: int = 0
    balance: int = 0  # a lower bound: fees are charged at the worst case in the model
    role: str = "user"


def keyed_account(seed: int, role: str, index: int) -> KeyedAccount:
    key = keys.PrivateKey(private_key_bytes(seed, role, index))
    return KeyedAccount(key, key.public_key.to_canonical_address(), role=role)
