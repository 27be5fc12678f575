"""Prague blocks, three ways: evmpipe (every strategy), py-evm, and EELS.

The chain comes from `evmpipe gen prague` (sealed by py-evm's PragueVM, with
evmpipe's receipt gas fix): EIP-7702 delegations, re-delegation, clearing, skipped
authorizations, delegated senders; EIP-7623 floor transactions; 9-blob blocks; all
three EIP-7685 request types. It must replay through evmpipe's pipeline with each
strategy and `--verify`, re-import into py-evm with identical roots, and pass EELS's
`state_transition` (the spec), which recomputes every root and the requests hash.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth.tools._utils.normalization import normalize_blockchain_fixtures
from eth.tools.fixtures.helpers import apply_fixture_block_to_chain, new_chain_from_fixture, verify_state

from consensus_stub.convert import blocktest_to_native
from evmpipe.gen import GenParams, generate
from execution.blobs import CANCUN, PRAGUE, blob_base_fee, calc_excess_blob_gas
from execution.requests import EMPTY_REQUESTS_HASH, compute_requests_hash
from execution.strategies import STRATEGIES
from execution.workers import WorkerPool
from tests.replay_check import replay_verified
from tests.execution.eels_oracle import eels_available, replay_prague

FILLER_TXS = 30  # blocks of 33..38 transactions: `auto` runs them in parallel


@pytest.fixture(scope="module")
def chain_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    path = tmp_path_factory.mktemp("prague") / "prague.json.gz"
    generate(GenParams("prague", txs=FILLER_TXS, seed=3)).write(path)
    return path, next(iter(json.loads(gzip.decompress(path.read_bytes())).values()))


@pytest.fixture(scope="module")
def pool():  # type: ignore[no-untyped-def]
    with WorkerPool(2) as workers:
        yield workers


def test_chain_has_what_prague_added(chain_file: tuple[Path, dict]) -> None:
    _, test = chain_file
    assert test["network"] == "Prague"
    blocks = test["blocks"]
    types = [int(tx["type"], 16) for b in blocks for tx in b["transactions"]]
    assert types.count(4) >= 5 and types.count(3) >= 4
    blob_gas = [int(b["blockHeader"]["blobGasUsed"], 16) for b in blocks]
    assert max(blob_gas) == PRAGUE.max > CANCUN.max  # 9 blobs in a block
    hashes = {b["blockHeader"]["requestsHash"] for b in blocks}
    assert "0x" + EMPTY_REQUESTS_HASH.hex() in hashes and len(hashes) >= 3
    post, addresses = test["postState"], test["_info"]["addresses"]
    a1, a2, a3, a4, a5 = addresses["authorities"]
    assert post[a1]["code"] == "0xef0100" + addresses["delegate2"][2:]  # re-delegated
    assert post[a3]["code"] == "0xef0100" + addresses["delegate"][2:]  # delegated in the last block
    assert post[a4]["code"] == "0x" and post[a4]["nonce"] == "0x00"  # wrong chain id: skipped
    assert post[a5]["code"] == "0xef0100" + addresses["delegate"][2:]  # self-sponsored


def test_evmpipe_replays_with_every_strategy(chain_file: tuple[Path, dict], pool: WorkerPool, tmp_path: Path) -> None:
    path, test = chain_file
    native = tmp_path / "blocks"
    summary = blocktest_to_native(path, native)
    assert summary.blocks == len(test["blocks"])
    for strategy in STRATEGIES:
        executed = replay_verified(native, tmp_path / f"db-{strategy}", strategy, pool, summary.blocks)
        if strategy == "optimistic":
            assert all(e.counts.get("strategy") == "optimistic" for e in executed)
            # calls into one delegated EOA conflict on its storage: some re-executed
            assert sum(e.counts.get("reexecuted", 0) for e in executed) > 0
        if strategy in ("declared", "auto"):
            assert all(str(e.counts.get("strategy")).startswith(("declared", "auto:")) for e in executed)


def test_pyevm_reimports_with_identical_roots(chain_file: tuple[Path, dict]) -> None:
    _, test = chain_file
    fixture = normalize_blockchain_fixtures(test)
    chain = new_chain_from_fixture(fixture)
    assert rlp.encode(chain.get_canonical_block_by_number(0)) == fixture["genesisRLP"]
    for block_fixture in fixture["blocks"]:
        original, imported, encoded = apply_fixture_block_to_chain(block_fixture, chain, perform_validation=True)
        assert imported == original and encoded == block_fixture["rlp"]
        assert imported.header.state_root == block_fixture["blockHeader"]["stateRoot"]
        assert imported.header.requests_hash == block_fixture["blockHeader"]["requestsHash"]
    assert chain.get_canonical_head().hash == fixture["lastblockhash"]
    verify_state(fixture["postState"], chain.get_vm().state)


@pytest.mark.skipif(not eels_available(), reason="ethereum-execution (EELS) is not installed")
def test_eels_agrees(chain_file: tuple[Path, dict]) -> None:
    _, test = chain_file
    roots = replay_prague(test)
    assert ["0x" + root.hex() for root in roots] == [b["blockHeader"]["stateRoot"] for b in test["blocks"]]


# -- the parts, against the EIPs' numbers -------------------------------------------------


def test_blob_parameters_per_fork() -> None:
    class Parent:
        excess_blob_gas = 0
        blob_gas_used = 786_432  # six blobs: Cancun's maximum, Prague's target

    assert calc_excess_blob_gas(Parent(), CANCUN) == 393_216
    assert calc_excess_blob_gas(Parent(), PRAGUE) == 0  # a Prague child of a Cancun parent
    assert blob_base_fee(10_000_000, CANCUN) > blob_base_fee(10_000_000, PRAGUE) > 1


def test_requests_hash_of_nothing_is_sha256_of_nothing() -> None:
    import hashlib

    assert compute_requests_hash([]) == hashlib.sha256(b"").digest() == EMPTY_REQUESTS_HASH
    one = b"\x01" + b"\xaa" * 76
    assert compute_requests_hash([one]) == hashlib.sha256(hashlib.sha256(one).digest()).digest()


def test_cancun_to_prague_boundary_uses_the_childs_blob_target(tmp_path: Path) -> None:
    """CancunToPragueAtTime15k: a Cancun block with 6 blobs (Cancun's maximum), then the
    first Prague block, whose excess blob gas is computed with Prague's target: 0, not
    Cancun's 393216 (EIP-7691). Sealed by py-evm, replayed by evmpipe."""
    from eth.chains.base import Chain
    from eth.db.atomic import AtomicDB
    from eth.vm.forks import CancunVM, PragueVM

    from evmpipe.gen.builder import alloc_json, header_json
    from evmpipe.gen.keys import fresh_address
    from evmpipe.gen.prague import EXTRA_DATA, Tx, build_world, genesis_params, sign

    world = build_world(6, 4)
    chain_class = Chain.configure("Transition", vm_configuration=((0, CancunVM), (2, PragueVM)), chain_id=1)
    params = {k: v for k, v in genesis_params().items() if k != "requests_hash"}
    chain = chain_class.from_genesis(AtomicDB(), dict(params, timestamp=14_976), world.alloc)
    genesis = chain.get_canonical_block_by_number(0)
    nonces = {address: fields["nonce"] for address, fields in world.alloc.items()}
    parent, blocks = genesis.header, []
    for number, (vm_class, txs) in enumerate(((CancunVM, [Tx("6 blobs", world.sponsors[0], fresh_address(6, "x", 0), kind="blob", blobs=6)]),
                                              (PragueVM, [Tx("transfer", world.sponsors[1], fresh_address(6, "x", 1), value=1)])), start=1):
        template = chain.create_header_from_parent(parent, coinbase=world.coinbase, gas_limit=parent.gas_limit, timestamp=14_976 + 12 * number, extra_data=EXTRA_DATA, parent_beacon_block_root=b"\x07" * 32)
        builder = vm_class.get_transaction_builder()
        signed = [builder.decode(sign(tx, nonces, template.base_fee_per_gas).encode()) for tx in txs]
        block = vm_class.get_block_class()(header=template, transactions=signed, uncles=[], withdrawals=[])
        sealed = chain.import_block(block, perform_validation=False).imported_block
        blocks.append({"rlp": "0x" + rlp.encode(sealed).hex(), "blockHeader": header_json(sealed.header)})
        parent = sealed.header
    assert blocks[0]["blockHeader"]["blobGasUsed"] == "0x0c0000" and blocks[1]["blockHeader"]["excessBlobGas"] == "0x00"
    assert "requestsHash" in blocks[1]["blockHeader"] and "requestsHash" not in blocks[0]["blockHeader"]
    test = {
        "network": "CancunToPragueAtTime15k", "pre": alloc_json(world.alloc), "genesisBlockHeader": header_json(genesis.header),
        "genesisRLP": "0x" + rlp.encode(genesis).hex(), "blocks": blocks, "lastblockhash": "0x" + parent.hash.hex(),
        "postStateHash": "0x" + parent.state_root.hex(),
    }
    from evmpipe.engine import run_blockchain_test

    result = run_blockchain_test("transition", "cancun-to-prague", test)
    assert result.passed, result.error
    # and the Cancun rule at the boundary would be wrong: evmpipe rejects it
    wrong = PragueVM.get_block_class()
    block2 = rlp.decode(bytes.fromhex(blocks[1]["rlp"][2:]), sedes=wrong)
    bad = dict(test, blocks=[blocks[0], {"rlp": "0x" + rlp.encode(block2.copy(header=block2.header.copy(excess_blob_gas=393_216))).hex(), "expectException": "BlockException.INCORRECT_EXCESS_BLOB_GAS"}], lastblockhash=blocks[0]["blockHeader"]["hash"])
    bad["postStateHash"] = blocks[0]["blockHeader"]["stateRoot"]
    result = run_blockchain_test("transition", "cancun-rule-at-prague", bad)
    assert result.blocks[1].reason == "BlockException.INCORRECT_EXCESS_BLOB_GAS" and result.passed, result.error
