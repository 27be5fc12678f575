"""Invalid Prague blocks: each rejected with its ethereum/tests code, nothing of it kept.

Each test puts one bad block 1 in front of the generated chain's valid blocks (as an
ethereum/tests fixture does with `expectException`): the bad block must be rejected
for the expected reason, and the valid chain must then import from genesis and end
in the fixture's full `postState`, so nothing of the bad block reached the state.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import pytest
import rlp
from eth.vm.forks import CancunVM, PragueVM

from evmpipe.engine import run_blockchain_test
from evmpipe.gen import GenParams, generate
from evmpipe.gen.keys import fresh_address
from evmpipe.gen.prague import Auth, Tx, build_world, nonzero_calldata, sign
from execution.checks import check_transaction_static
from pipeline.errors import InvalidTransaction

SEED = 5


@pytest.fixture(scope="module")
def test_json() -> dict[str, Any]:
    return generate(GenParams("prague", txs=2, seed=SEED)).fixture


def _first_block(test: dict[str, Any]) -> Any:
    return rlp.decode(bytes.fromhex(test["blocks"][0]["rlp"][2:]), sedes=PragueVM.get_block_class())


def _signed(*txs: Tx, base_fee: int) -> list:
    world = build_world(SEED, 4)
    nonces = {address: fields["nonce"] for address, fields in world.alloc.items()}
    return [sign(tx, nonces, base_fee) for tx in txs]


def _run_with_bad_first_block(test: dict[str, Any], block: Any, expect: str) -> None:
    bad = copy.deepcopy(test)
    bad["blocks"] = [{"rlp": "0x" + rlp.encode(block).hex(), "expectException": expect}] + test["blocks"]
    result = run_blockchain_test("prague-invalid", "bad-first-block", bad)
    outcome = result.blocks[0]
    assert outcome.rejected and outcome.reason == expect, (outcome.reason, outcome.detail)
    assert result.passed, result.error  # the valid chain then reaches the full postState


def _with_txs(make: Callable[[Any], list[Tx]]) -> Callable[[dict[str, Any]], Any]:
    def build(test: dict[str, Any]) -> Any:
        block = _first_block(test)
        world = build_world(SEED, 4)
        return block.copy(transactions=_signed(*make(world), base_fee=block.header.base_fee_per_gas))

    return build


CASES: dict[str, tuple[Callable[[dict[str, Any]], Any], str]] = {
    "type-4 with an empty authorization list": (
        _with_txs(lambda w: [Tx("empty", w.sponsors[0], w.authorities[0].address, gas=100_000, kind="setcode")]),
        "TransactionException.TYPE_4_EMPTY_AUTHORIZATION_LIST",
    ),
    "type-4 contract creation": (
        _with_txs(lambda w: [Tx("create", w.sponsors[0], b"", gas=200_000, kind="setcode", auths=[Auth(w.authorities[0], w.delegate)])]),
        "TransactionException.TYPE_4_TX_CONTRACT_CREATION",
    ),
    "gas below the calldata floor": (
        _with_txs(lambda w: [Tx("floor", w.sponsors[0], fresh_address(SEED, "x", 0), data=nonzero_calldata(SEED, "x", 1000), gas=40_000)]),
        "TransactionException.INTRINSIC_GAS_BELOW_FLOOR_GAS_COST",
    ),
    "ten blobs in one transaction": (
        _with_txs(lambda w: [Tx("blobs", w.sponsors[1], fresh_address(SEED, "x", 1), kind="blob", blobs=10)]),
        "TransactionException.TYPE_3_TX_BLOB_COUNT_EXCEEDED",
    ),
    "ten blobs in the block": (
        _with_txs(lambda w: [
            Tx("7 blobs", w.sponsors[1], fresh_address(SEED, "x", 1), kind="blob", blobs=7),
            Tx("3 blobs", w.sponsors[2], fresh_address(SEED, "x", 2), kind="blob", blobs=3),
        ]),
        "TransactionException.TYPE_3_TX_MAX_BLOB_GAS_ALLOWANCE_EXCEEDED",
    ),
    "wrong requests hash": (
        lambda test: (lambda b: b.copy(header=b.header.copy(requests_hash=b"\x11" * 32)))(_first_block(test)),
        "BlockException.INVALID_REQUESTS",
    ),
    "wrong excess blob gas": (
        lambda test: (lambda b: b.copy(header=b.header.copy(excess_blob_gas=131_072)))(_first_block(test)),
        "BlockException.INCORRECT_EXCESS_BLOB_GAS",
    ),
    "blob gas used above Prague's maximum": (
        lambda test: (lambda b: b.copy(header=b.header.copy(blob_gas_used=10 * 131_072)))(_first_block(test)),
        "BlockException.BLOB_GAS_USED_ABOVE_LIMIT",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_block_is_rejected_and_leaves_nothing(test_json: dict[str, Any], case: str) -> None:
    build, code = CASES[case]
    _run_with_bad_first_block(test_json, build(test_json), code)


def test_set_code_transaction_before_prague(test_json: dict[str, Any]) -> None:
    block = _first_block(test_json)
    world = build_world(SEED, 4)
    tx = _signed(Tx("early", world.sponsors[0], world.authorities[0].address, gas=100_000, kind="setcode", auths=[Auth(world.authorities[0], world.delegate)]), base_fee=block.header.base_fee_per_gas)[0]
    with pytest.raises(InvalidTransaction) as error:
        check_transaction_static(CancunVM, block.header, tx, 0, 1)
    assert error.value.code == "TransactionException.TYPE_4_TX_PRE_FORK"
    check_transaction_static(PragueVM, block.header, tx, 0, 1)  # valid in Prague


def test_seven_blobs_are_too_many_for_cancun_only(test_json: dict[str, Any]) -> None:
    block = _first_block(test_json)
    world = build_world(SEED, 4)
    tx = _signed(Tx("7 blobs", world.sponsors[1], fresh_address(SEED, "x", 1), kind="blob", blobs=7), base_fee=block.header.base_fee_per_gas)[0]
    check_transaction_static(PragueVM, block.header, tx, 0, 1)
    with pytest.raises(InvalidTransaction) as error:
        check_transaction_static(CancunVM, block.header, tx, 0, 1)
    assert error.value.code == "TransactionException.TYPE_3_TX_BLOB_COUNT_EXCEEDED"


def test_missing_request_contract_makes_the_block_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    """EELS (final Prague) rejects a block whose EIP-7251 contract has no code; py-evm
    skips the call (and seals such blocks), evmpipe follows EELS."""
    import evmpipe.gen.prague as prague
    from execution.requests import CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS

    real = prague.build_world

    def without_consolidations(seed: int, fillers: int) -> prague.PragueWorld:
        world = real(seed, fillers)
        del world.alloc[CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS]
        return world

    monkeypatch.setattr(prague, "build_world", without_consolidations)
    test = generate(GenParams("prague", txs=0, seed=SEED)).fixture
    bad = dict(test, blocks=[dict(test["blocks"][0], expectException="BlockException.SYSTEM_CONTRACT_EMPTY")],
               lastblockhash=test["genesisBlockHeader"]["hash"], postState=test["pre"])
    result = run_blockchain_test("prague-invalid", "no-consolidation-contract", bad)
    assert result.blocks[0].reason == "BlockException.SYSTEM_CONTRACT_EMPTY" and result.passed, result.error
