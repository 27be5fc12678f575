"""`evmpipe gen`: determinism, independent re-import with py-evm, contract behaviour."""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

import pytest
import rlp
from eth import MainnetChain
from eth.db.atomic import AtomicDB
from eth.tools._utils.normalization import normalize_blockchain_fixtures
from eth.tools.builder.chain import disable_pow_check
from eth.tools.fixtures.helpers import (
    apply_fixture_block_to_chain,
    genesis_params_from_fixture,
    new_chain_from_fixture,
    verify_state,
)
from eth.vm.forks import CancunVM
from eth.vm.forks.cancun.constants import BEACON_ROOTS_ADDRESS, BEACON_ROOTS_CONTRACT_CODE, HISTORY_BUFFER_LENGTH

from evmpipe.gen import KINDS, GenParams, generate
from evmpipe.gen import contracts as C
from evmpipe.gen.builder import GenChain, genesis_params
from evmpipe.gen.cli import add_gen_parser
from evmpipe.gen.keys import keyed_account
from evmpipe.gen.workloads import GAS_ETH, plan_workload

SMALL = {"blocks": 2, "txs": 30}


@pytest.fixture(scope="module")
def workloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict[str, Any]]]:
    """Each kind, small, written to a .json.gz and read back as a file."""
    out = {}
    folder = tmp_path_factory.mktemp("gen")
    for kind in KINDS:
        path = folder / f"{kind}.json.gz"
        generate(GenParams(kind, seed=7, **SMALL)).write(path)
        tests = json.loads(gzip.decompress(path.read_bytes()))
        assert len(tests) == 1
        out[kind] = (path, next(iter(tests.values())))
    return out


def _hex(value: str) -> int:
    return int(value, 16)


# -- determinism -----------------------------------------------------------------------


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    params = GenParams("mixed", blocks=2, txs=20, seed=5)
    first, second = tmp_path / "a.json.gz", tmp_path / "b.json.gz"
    generate(params).write(first)
    generate(params).write(second)
    assert first.read_bytes() == second.read_bytes()
    other = generate(GenParams("mixed", blocks=2, txs=20, seed=6)).to_json_bytes()
    assert gzip.decompress(first.read_bytes()) != other


def test_plain_json_when_not_gz(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    generate(GenParams("transfers-independent", blocks=1, txs=5)).write(path)
    assert list(json.loads(path.read_text())) == ["transfers_independent_b1_t5_s1"]


# -- re-import with py-evm: the independent check -----------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_reimports_with_pyevm(workloads: dict, kind: str) -> None:
    _, test = workloads[kind]
    assert test["network"] == "Cancun" and test["sealEngine"] == "NoProof"
    fixture = normalize_blockchain_fixtures(test)
    chain = new_chain_from_fixture(fixture)
    genesis = chain.get_canonical_block_by_number(0)
    assert genesis.hash == fixture["genesisBlockHeader"]["hash"]
    assert rlp.encode(genesis) == fixture["genesisRLP"]
    for block_fixture in fixture["blocks"]:
        original, imported, encoded = apply_fixture_block_to_chain(block_fixture, chain, perform_validation=True)
        assert imported == original
        assert encoded == block_fixture["rlp"]
        header = block_fixture["blockHeader"]
        assert imported.header.state_root == header["stateRoot"]
        assert imported.header.receipt_root == header["receiptTrie"]
        assert imported.header.transaction_root == header["transactionsTrie"]
        assert imported.header.gas_used == header["gasUsed"]
        assert imported.hash == header["hash"]
        assert len(imported.transactions) == SMALL["txs"]
    head = chain.get_canonical_head()
    assert head.hash == fixture["lastblockhash"]
    # the full postState matches what py-evm computed ...
    verify_state(fixture["postState"], chain.get_vm().state)
    # ... and is complete: alone, it has the last block's state root
    assert _state_root_of(fixture["postState"]) == head.state_root


def _state_root_of(alloc: dict) -> bytes:
    chain = GenChain.from_genesis(AtomicDB(), genesis_params(30_000_000), alloc)
    return chain.get_canonical_head().state_root


@pytest.mark.parametrize("kind", KINDS)
def test_fixture_shape(workloads: dict, kind: str) -> None:
    _, test = workloads[kind]
    assert set(test) >= {"_info", "blocks", "genesisBlockHeader", "genesisRLP", "lastblockhash", "network", "postState", "pre", "sealEngine"}
    beacon = "0x" + BEACON_ROOTS_ADDRESS.hex()
    assert test["pre"][beacon]["code"] == "0x" + BEACON_ROOTS_CONTRACT_CODE.hex()
    gas_limit = _hex(test["genesisBlockHeader"]["gasLimit"])
    coinbases = {b["blockHeader"]["coinbase"] for b in test["blocks"]}
    assert len(coinbases) == 1
    roots = set()
    types = []
    for block in test["blocks"]:
        header = block["blockHeader"]
        assert _hex(header["gasLimit"]) == gas_limit
        assert 0.35 <= _hex(header["gasUsed"]) / gas_limit <= 0.65, "blocks should be about half full"
        roots.add(header["parentBeaconBlockRoot"])
        # the beacon-roots system call wrote this block's ring-buffer slots
        slot = _hex(header["timestamp"]) % HISTORY_BUFFER_LENGTH
        storage = test["postState"][beacon]["storage"]
        assert storage[_qty(slot)] == header["timestamp"]
        assert _hex(storage[_qty(slot + HISTORY_BUFFER_LENGTH)]) == _hex(header["parentBeaconBlockRoot"])
        base_fee = _hex(header["baseFeePerGas"])
        for tx in block["transactions"]:
            types.append(tx["type"])
            # every transaction tips the fee recipient
            if tx["type"] == "0x00":
                assert _hex(tx["gasPrice"]) > base_fee
                assert _hex(tx["v"]) in (37, 38)  # EIP-155, chain id 1
            else:
                assert _hex(tx["maxFeePerGas"]) > base_fee and _hex(tx["maxPriorityFeePerGas"]) > 0
            assert tx["chainId"] == "0x01"
    assert len(roots) == len(test["blocks"])
    assert "0x00" in types and "0x02" in types
    assert 0.03 <= types.count("0x00") / len(types) <= 0.35
    # quantities are even-length lowercase hex
    assert all(len(v) % 2 == 0 and v == v.lower() for v in test["blocks"][0]["blockHeader"].values())
    # the coinbase earned tips in every block
    coinbase = coinbases.pop()
    assert _hex(test["postState"][coinbase]["balance"]) > _hex(test["pre"].get(coinbase, {"balance": "0x00"})["balance"])


def _qty(value: int) -> str:
    text = f"{value:x}"
    return "0x" + "0" * (len(text) % 2) + text


def test_transfers_independent_is_conflict_free(workloads: dict) -> None:
    _, test = workloads["transfers-independent"]
    for block in test["blocks"]:
        senders = [tx["sender"] for tx in block["transactions"]]
        recipients = [tx["to"] for tx in block["transactions"]]
        assert len(set(senders)) == len(senders)
        assert len(set(recipients)) == len(recipients)
        assert not set(senders) & set(recipients)
        assert all(_hex(tx["gasLimit"]) == GAS_ETH and tx["data"] == "0x" for tx in block["transactions"])
    fresh = [a for a in test["postState"] if a not in test["pre"]]
    assert fresh, "some recipients are fresh accounts"


def test_transfers_hot_has_nonce_chains() -> None:
    test = generate(GenParams("transfers-hot", blocks=1, txs=60, hot=0.6, seed=3)).fixture
    hot = set(test["_info"]["addresses"]["hotWallets"])
    txs = test["blocks"][0]["transactions"]
    by_sender: dict[str, list[int]] = {}
    for tx in txs:
        by_sender.setdefault(tx["sender"], []).append(_hex(tx["nonce"]))
    chains = {s: n for s, n in by_sender.items() if len(n) > 1}
    assert chains and set(chains) <= hot
    for nonces in chains.values():
        assert nonces == list(range(nonces[0], nonces[0] + len(nonces)))
    deposits = [tx for tx in txs if tx["to"] in hot]
    assert len(deposits) > 5


def test_erc20_calls_the_token(workloads: dict) -> None:
    _, test = workloads["erc20"]
    token = test["_info"]["addresses"]["tokens"][0]
    for block in test["blocks"]:
        for tx in block["transactions"]:
            assert tx["to"] == token and tx["data"].startswith("0x" + C.SEL_TRANSFER.hex())
    assert test["_info"]["contracts"]["vyper"] == C.VYPER_VERSION
    assert test["_info"]["stats"]["reverted"] == 0


def test_planner_model_matches_execution(workloads: dict) -> None:
    """The planner's token balances and reserves are exactly what py-evm ended with."""
    _, test = workloads["mixed"]
    world, _ = plan_workload(GenParams("mixed", seed=7, **SMALL))
    post = test["postState"]
    for t, token in enumerate(world.tokens):
        storage = post["0x" + token.hex()]["storage"]
        for holder, amount in world.balances[t].items():
            assert _hex(storage.get(_qty(C.balance_slot(holder)), "0x00")) == amount
    for pool in world.pools:
        r0, r1, _ = C.unpack_reserves(_hex(post["0x" + pool.address.hex()]["storage"][_qty(C.PAIR_RESERVES_SLOT)]))
        assert (r0, r1) == (pool.reserve0, pool.reserve1)
    assert test["_info"]["stats"]["withdrawals"] == 2 * 16


@pytest.mark.parametrize("kind", ["erc20", "amm", "mixed"])
def test_gas_estimates_are_calibrated(workloads: dict, kind: str) -> None:
    """The planner's per-transaction gas estimates (which size the gas limits) match py-evm."""
    _, test = workloads[kind]
    _, plans = plan_workload(GenParams(kind, seed=7, **SMALL))
    for plan, block in zip(plans, test["blocks"], strict=True):
        used = _hex(block["blockHeader"]["gasUsed"])
        assert abs(plan.estimate - used) <= 0.005 * used
        for intent, tx in zip(plan.intents, block["transactions"], strict=True):
            assert intent.gas == _hex(tx["gasLimit"]) and intent.gas >= intent.estimate


# -- amm with one pool: fully serial -----------------------------------------------------


class _RecordingVM(CancunVM):
    """CancunVM that records the pool's reserves slot around every transaction."""

    watch: bytes = b""
    log: list = []

    def apply_transaction(self, header, transaction):  # type: ignore[no-untyped-def]
        before = self.state.get_storage(self.watch, C.PAIR_RESERVES_SLOT)
        receipt, computation = super().apply_transaction(header, transaction)
        after = self.state.get_storage(self.watch, C.PAIR_RESERVES_SLOT)
        self.log.append((transaction.to, not computation.is_error, before, after))
        return receipt, computation


def test_amm_single_pool_is_serial() -> None:
    workload = generate(GenParams("amm", pools=1, seed=3, stale=0.1, **SMALL))
    test = json.loads(workload.to_json_bytes())[workload.name]
    (pool,) = test["_info"]["addresses"]["pools"]
    fixture = normalize_blockchain_fixtures(test)
    vm = _RecordingVM.configure(__name__="RecordingVM", watch=bytes.fromhex(pool[2:]), log=[])
    chain_class = disable_pow_check(MainnetChain.configure("Rec", vm_configuration=((0, vm),)))
    chain = chain_class.from_genesis(AtomicDB(), genesis_params_from_fixture(fixture), fixture["pre"])
    for block_fixture in fixture["blocks"]:
        apply_fixture_block_to_chain(block_fixture, chain, perform_validation=True)
    records = vm.log
    assert len(records) == 2 * SMALL["txs"]
    assert all("0x" + to.hex() == pool for to, *_ in records)
    successes = [r for r in records if r[1]]
    reverts = [r for r in records if not r[1]]
    assert reverts, "some swaps carry a stale quote"
    assert len(successes) > len(records) * 0.8
    for _, ok, before, after in records:
        if ok:
            assert after != before  # every successful swap writes the one reserves slot
        else:
            assert after == before
    # a chain: each successful swap reads what the previous one wrote
    for previous, current in zip(successes[:-1], successes[1:], strict=True):
        assert current[2] == previous[3]


# -- contract behaviour ------------------------------------------------------------------


class Harness:
    """Two tokens and a pair in a py-evm Cancun state; transactions applied one by one."""

    def __init__(self) -> None:
        self.alice = keyed_account(99, "test", 0)
        self.bob = keyed_account(99, "test", 1)
        self.token0 = b"\x10" * 20
        self.token1 = b"\x11" * 20
        self.pair = b"\x20" * 20
        self.r0, self.r1 = 10**24, 3 * 10**24
        self.ts = 1_700_000_000
        alloc: dict = {a.address: {"balance": 10**21, "nonce": 0, "code": b"", "storage": {}} for a in (self.alice, self.bob)}
        for token, reserve in ((self.token0, self.r0), (self.token1, self.r1)):
            storage = {
                C.balance_slot(self.pair): reserve,
                C.balance_slot(self.alice.address): 10**22,
                C.allowance_slot(self.alice.address, self.pair): C.MAX_UINT256,
                C.allowance_slot(self.alice.address, self.bob.address): 5 * 10**18,
                C.TOKEN_TOTAL_SUPPLY_SLOT: reserve + 10**22,
            }
            alloc[token] = {"balance": 0, "nonce": 1, "code": C.runtime_code("Token"), "storage": storage}
        alloc[self.pair] = {
            "balance": 0, "nonce": 1, "code": C.runtime_code("Pair"),
            "storage": {
                C.PAIR_TOKEN0_SLOT: int.from_bytes(self.token0, "big"),
                C.PAIR_TOKEN1_SLOT: int.from_bytes(self.token1, "big"),
                C.PAIR_RESERVES_SLOT: C.pack_reserves(self.r0, self.r1, self.ts - 12),
                C.PAIR_PRICE0_SLOT: 5, C.PAIR_PRICE1_SLOT: 6,
            },
        }
        chain = GenChain.from_genesis(AtomicDB(), genesis_params(30_000_000), alloc)
        header = chain.create_header_from_parent(chain.get_canonical_head(), timestamp=self.ts)
        self.vm = chain.get_vm(header)
        self.state = self.vm.state
        self.base_fee = header.base_fee_per_gas
        self.nonces = {self.alice.address: 0, self.bob.address: 0}

    def send(self, who, to: bytes, data: bytes):  # type: ignore[no-untyped-def]
        builder = CancunVM.get_transaction_builder()
        tx = builder.create_unsigned_transaction(nonce=self.nonces[who.address], gas_price=self.base_fee + 10**9, gas=300_000, to=to, value=0, data=data)
        self.nonces[who.address] += 1
        return self.state.apply_transaction(tx.as_signed_transaction(who.private_key, chain_id=1))

    def balance(self, token: bytes, holder: bytes) -> int:
        return self.state.get_storage(token, C.balance_slot(holder))

    def reserves(self) -> tuple[int, int, int]:
        return C.unpack_reserves(self.state.get_storage(self.pair, C.PAIR_RESERVES_SLOT))


def test_token_transfer_moves_balances_and_logs() -> None:
    h = Harness()
    a, b = h.alice.address, h.bob.address
    computation = h.send(h.alice, h.token0, C.transfer_data(b, 1234))
    assert not computation.is_error
    assert h.balance(h.token0, a) == 10**22 - 1234 and h.balance(h.token0, b) == 1234
    ((address, topics, log_data),) = computation.get_log_entries()
    assert address == h.token0
    assert list(topics) == [int.from_bytes(C.TOPIC_TRANSFER, "big"), int.from_bytes(a, "big"), int.from_bytes(b, "big")]
    assert int.from_bytes(log_data, "big") == 1234
    # more than the balance: reverts, nothing moves
    computation = h.send(h.bob, h.token0, C.transfer_data(a, 1235))
    assert computation.is_error and h.balance(h.token0, b) == 1234


def test_token_transfer_from_allowances() -> None:
    h = Harness()
    a, b = h.alice.address, h.bob.address
    data = C.encode_call(C.SEL_TRANSFER_FROM, a, b, 2 * 10**18)
    assert not h.send(h.bob, h.token0, data).is_error
    assert h.state.get_storage(h.token0, C.allowance_slot(a, b)) == 3 * 10**18  # finite: decremented
    assert h.balance(h.token0, b) == 2 * 10**18
    assert h.send(h.bob, h.token0, C.encode_call(C.SEL_TRANSFER_FROM, a, b, 4 * 10**18)).is_error


def test_swap_pays_the_quote_and_keeps_the_product() -> None:
    h = Harness()
    a = h.alice.address
    amount_in = 10**21
    expected = C.amount_out(amount_in, h.r0, h.r1)
    computation = h.send(h.alice, h.pair, C.swap_data(True, amount_in, expected, a))
    assert not computation.is_error
    assert int.from_bytes(computation.output, "big") == expected
    r0, r1, ts = h.reserves()
    assert (r0, r1, ts) == (h.r0 + amount_in, h.r1 - expected, h.ts)
    assert r0 * r1 >= h.r0 * h.r1  # the constant product holds (grows by the fee)
    assert h.balance(h.token0, h.pair) == r0 and h.balance(h.token1, h.pair) == r1
    assert h.balance(h.token1, a) == 10**22 + expected
    topics = [entry[1][0] for entry in computation.get_log_entries()]
    assert topics == [int.from_bytes(t, "big") for t in (C.TOPIC_TRANSFER, C.TOPIC_TRANSFER, C.TOPIC_SYNC, C.TOPIC_SWAP)]
    # the first swap of the block advanced the price accumulators by 12 seconds
    assert h.state.get_storage(h.pair, C.PAIR_PRICE0_SLOT) == 5 + C.price_accumulator_step(h.r0, h.r1, 12)
    assert h.state.get_storage(h.pair, C.PAIR_PRICE1_SLOT) == 6 + C.price_accumulator_step(h.r1, h.r0, 12)
    # many swaps both ways: the product never shrinks, reserves track balances
    product = r0 * r1
    for i in range(12):
        zero_for_one = i % 3 != 0
        r0, r1, _ = h.reserves()
        r_in, r_out = (r0, r1) if zero_for_one else (r1, r0)
        size = 10**20 * (i + 1)
        out = C.amount_out(size, r_in, r_out)
        assert not h.send(h.alice, h.pair, C.swap_data(zero_for_one, size, out, a)).is_error
        r0, r1, _ = h.reserves()
        assert r0 * r1 >= product
        product = r0 * r1
        assert h.balance(h.token0, h.pair) == r0 and h.balance(h.token1, h.pair) == r1
    # later swaps in the same block leave the accumulators alone
    assert h.state.get_storage(h.pair, C.PAIR_PRICE0_SLOT) == 5 + C.price_accumulator_step(h.r0, h.r1, 12)


def test_swap_with_a_stale_quote_reverts() -> None:
    h = Harness()
    a = h.alice.address
    quote = C.amount_out(10**21, h.r0, h.r1)
    # someone else's swap moves the price first; the quote is now stale
    assert not h.send(h.alice, h.pair, C.swap_data(True, 5 * 10**21, 0, a)).is_error
    before = (h.reserves(), h.balance(h.token0, a), h.balance(h.token1, a), h.state.get_storage(h.pair, C.PAIR_PRICE0_SLOT))
    computation = h.send(h.alice, h.pair, C.swap_data(True, 10**21, quote, a))
    assert computation.is_error
    assert b"slippage" in computation.output
    assert computation.get_log_entries() == ()
    assert before == (h.reserves(), h.balance(h.token0, a), h.balance(h.token1, a), h.state.get_storage(h.pair, C.PAIR_PRICE0_SLOT))


def test_swap_without_allowance_reverts() -> None:
    h = Harness()
    computation = h.send(h.bob, h.pair, C.swap_data(True, 10, 0, h.bob.address))
    assert computation.is_error


def test_committed_bytecode_matches_sources() -> None:
    vyper = pytest.importorskip("vyper")
    if not str(vyper.__version__).startswith(C.VYPER_VERSION):
        pytest.skip(f"vyper {vyper.__version__} installed; the committed bytecode is from {C.VYPER_VERSION}")
    for name in C.CONTRACTS:
        assert C.compile_runtime(name) == C.runtime_code(name), f"{name}.runtime.hex is stale: run python -m evmpipe.gen.contracts"


def test_storage_layout_matches_vyper() -> None:
    pytest.importorskip("vyper")
    from vyper.compiler import compile_code
    from vyper.compiler.settings import Settings

    def layout(name: str) -> dict:
        out = compile_code(C.source_path(name).read_text(), output_formats=["layout"], settings=Settings(evm_version="cancun"))
        return {k: v["slot"] for k, v in out["layout"]["storage_layout"].items()}

    assert layout("Token") == {"balanceOf": C.TOKEN_BALANCES_SLOT, "allowance": C.TOKEN_ALLOWANCES_SLOT, "totalSupply": C.TOKEN_TOTAL_SUPPLY_SLOT}
    assert layout("Pair") == {
        "token0": C.PAIR_TOKEN0_SLOT, "token1": C.PAIR_TOKEN1_SLOT, "reserves": C.PAIR_RESERVES_SLOT,
        "price0CumulativeLast": C.PAIR_PRICE0_SLOT, "price1CumulativeLast": C.PAIR_PRICE1_SLOT,
    }


# -- CLI ---------------------------------------------------------------------------------


def test_cli_writes_file_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="evmpipe")
    add_gen_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "amm.json.gz"
    args = parser.parse_args(["gen", "amm", "-o", str(out), "--blocks", "1", "--txs", "8", "--pools", "2", "--seed", "4"])
    assert args.func(args) == 0
    line = capsys.readouterr().out.strip()
    assert "1 blocks, 8 txs" in line and "bytes" in line and "Mgas" in line
    assert out.stat().st_size > 0
    bad = parser.parse_args(["gen", "amm", "-o", str(out), "--pools", "0"])
    assert bad.func(bad) == 2
