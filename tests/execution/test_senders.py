"""`recover_sender` (the signed message cut out of the encoding) against py-evm's
`tx.sender`, for every kind of transaction and for signatures that must fail.

The conformance suite checks the same thing end to end (a wrong sender changes the
state root); these tests name the case that differs.
"""
from __future__ import annotations

import pytest
import rlp
from eth.vm.forks import BerlinVM, CancunVM, FrontierVM, HomesteadVM, LondonVM, PragueVM, SpuriousDragonVM
from eth_keys import keys
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.senders import SECP256K1_N, recover_sender, signing_message

TO = b"\x11" * 20


def _key(seed: int) -> keys.PrivateKey:
    return keys.PrivateKey(seed.to_bytes(32, "big"))


def _legacy(vm, key, nonce=0, value=1, data=b"", chain_id=None, to=TO):  # type: ignore[no-untyped-def]
    builder = vm.get_transaction_builder()
    unsigned = builder.create_unsigned_transaction(nonce=nonce, gas_price=10, gas=21_000 + 16 * len(data), to=to, value=value, data=data)
    return unsigned.as_signed_transaction(key, chain_id=chain_id) if chain_id else unsigned.as_signed_transaction(key)


def _typed(vm, key, kind, nonce=0, data=b"", access=()):  # type: ignore[no-untyped-def]
    builder = vm.get_transaction_builder()
    common = dict(chain_id=1, nonce=nonce, gas=100_000, to=TO, value=5, data=data, access_list=tuple(access))
    if kind == 1:
        unsigned = builder.new_unsigned_access_list_transaction(gas_price=10, **common)
    else:
        unsigned = builder.new_unsigned_dynamic_fee_transaction(max_priority_fee_per_gas=1, max_fee_per_gas=10, **common)
    return unsigned.as_signed_transaction(key)


def _encoded(tx) -> bytes:  # type: ignore[no-untyped-def]
    """The encoding a block carries: a typed transaction as its own bytes."""
    return tx.encode()


def _roundtrip(vm, tx):  # type: ignore[no-untyped-def]
    """A freshly decoded copy (no cached sender)."""
    encoded = _encoded(tx)
    return vm.get_transaction_builder().decode(encoded), encoded


def _expect_same(vm, tx) -> None:  # type: ignore[no-untyped-def]
    fresh, encoded = _roundtrip(vm, tx)
    reference, _ = _roundtrip(vm, tx)
    try:
        expected = reference.sender
    except Exception:
        with pytest.raises(Exception):
            recover_sender(fresh, encoded)
        return
    assert recover_sender(fresh, encoded) == expected
    assert fresh.sender == expected  # marked on the transaction


@pytest.mark.parametrize("vm", [FrontierVM, HomesteadVM, SpuriousDragonVM, BerlinVM, LondonVM, CancunVM, PragueVM])
def test_legacy_without_chain_id(vm) -> None:  # type: ignore[no-untyped-def]
    tx = _legacy(vm, _key(7))
    assert signing_message(*_roundtrip(vm, tx)) is not None  # the fast path
    _expect_same(vm, tx)


@pytest.mark.parametrize("vm", [SpuriousDragonVM, BerlinVM, CancunVM])
@pytest.mark.parametrize("chain_id", [1, 5, 1337, 2**40])
def test_legacy_eip155(vm, chain_id) -> None:  # type: ignore[no-untyped-def]
    tx = _legacy(vm, _key(9), chain_id=chain_id, data=b"\x00\x01" * 40)
    assert signing_message(*_roundtrip(vm, tx)) is not None
    _expect_same(vm, tx)


@pytest.mark.parametrize(("vm", "kind"), [(BerlinVM, 1), (LondonVM, 1), (LondonVM, 2), (CancunVM, 2), (PragueVM, 1), (PragueVM, 2)])
def test_typed(vm, kind) -> None:  # type: ignore[no-untyped-def]
    tx = _typed(vm, _key(11), kind, data=b"\xaa" * 100, access=[(TO, (1, 2**255))])
    assert signing_message(*_roundtrip(vm, tx)) is not None
    _expect_same(vm, tx)


def _resigned(vm, tx, **fields):  # type: ignore[no-untyped-def]
    """`tx` with signature fields replaced (legacy: v, r, s)."""
    raw = rlp.decode(tx.encode())
    names = {"v": 6, "r": 7, "s": 8}
    for name, value in fields.items():
        raw[names[name]] = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return vm.get_transaction_builder().decode(rlp.encode(raw))


@pytest.mark.parametrize(
    "fields",
    [dict(r=0), dict(s=0), dict(r=SECP256K1_N), dict(s=SECP256K1_N + 1), dict(v=29), dict(v=0), dict(v=26), dict(r=5)],
)
def test_bad_legacy_signatures_fail_or_agree(fields) -> None:  # type: ignore[no-untyped-def]
    tx = _resigned(CancunVM, _legacy(CancunVM, _key(3)), **fields)
    _expect_same(CancunVM, tx)


def test_frontier_with_an_eip155_v_is_left_to_py_evm() -> None:
    tx = _legacy(SpuriousDragonVM, _key(5), chain_id=1)
    fresh = FrontierVM.get_transaction_builder().decode(tx.encode())
    assert signing_message(fresh, tx.encode()) is None
    _expect_same(FrontierVM, fresh)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(1, 2**64),
    nonce=st.integers(0, 2**64 - 1),
    data=st.binary(max_size=300),
    kind=st.sampled_from(["legacy", "eip155", "type1", "type2"]),
)
def test_any_signed_transaction(seed: int, nonce: int, data: bytes, kind: str) -> None:
    key = _key(seed)
    if kind == "legacy":
        tx = _legacy(CancunVM, key, nonce=nonce, data=data)
    elif kind == "eip155":
        tx = _legacy(CancunVM, key, nonce=nonce, data=data, chain_id=seed % 10_000 + 1)
    else:
        tx = _typed(CancunVM, key, int(kind[-1]), nonce=nonce, data=data)
    fresh, encoded = _roundtrip(CancunVM, tx)
    assert recover_sender(fresh, encoded) == key.public_key.to_canonical_address()
