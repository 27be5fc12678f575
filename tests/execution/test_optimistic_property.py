"""Property: optimistic execution equals sequential execution, whatever the conflicts.

Hypothesis builds Cancun blocks out of transactions chosen to conflict: nonce chains
of one sender, many payments to one recipient, a shared counter slot, reads of the
fee recipient's balance, CREATE, SELFDESTRUCT, reverts and out-of-gas. Each block is
executed sequentially and optimistically (every transaction speculated on the
pre-block state, then validated in order) and the receipts, gas and state diff must
be identical.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import trio
from eth.vm.forks import CancunVM
from eth_keys import keys
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from execution.block import BlockRun, execute_block, make_vm
from execution.predict import AccessPredictor, schedule_chains
from execution.speculate import pack_results, speculate, unpack_results
from execution.strategies import first_difference, validate_in_order
from state.genesis import genesis_commit
from state.overlay import Overlay
from state.store import StateStore

CHAIN_ID = 1
COINBASE = b"\xc0" * 20
KEYS = [keys.PrivateKey(bytes([i + 1]) * 32) for i in range(4)]
SENDERS = [k.public_key.to_canonical_address() for k in KEYS]
EOAS = [bytes([0xE0 + i]) * 20 for i in range(3)]
COUNTER = b"\x01" * 20  # slot0 += 1
BALANCE_READER = b"\x02" * 20  # slot0 = BALANCE(COINBASE)
REVERTER = b"\x03" * 20  # REVERT(0, 0)
LOOPER = b"\x04" * 20  # runs out of gas
CREATOR = b"\x05" * 20  # CREATE an empty contract
DESTRUCTOR = b"\x06" * 20  # SELFDESTRUCT to the caller
CODE = {
    COUNTER: bytes.fromhex("60005460010160005500"),
    BALANCE_READER: bytes.fromhex("41316000" "5500"),
    REVERTER: bytes.fromhex("60006000fd"),
    LOOPER: bytes.fromhex("5b600056"),
    CREATOR: bytes.fromhex("600060006000f000"),
    DESTRUCTOR: bytes.fromhex("33ff"),
}
TARGETS = EOAS + list(CODE) + [COINBASE]
BASE_FEE = 7
GAS_LIMIT = 30_000_000


def _alloc() -> dict[bytes, dict]:
    alloc: dict[bytes, dict] = {a: {"nonce": 0, "balance": 10**20, "code": b"", "storage": {}} for a in SENDERS}
    for address, code in CODE.items():
        alloc[address] = {"nonce": 1, "balance": 10**9, "code": code, "storage": {0: 5}}
    alloc[EOAS[0]] = {"nonce": 0, "balance": 1, "code": b"", "storage": {}}
    return alloc


@pytest.fixture(scope="module")
def overlay(tmp_path_factory: pytest.TempPathFactory) -> Overlay:
    path = Path(tmp_path_factory.mktemp("prop")) / "state.sqlite"
    store = StateStore(path, synchronous="OFF")
    from state.genesis import alloc_diff
    from state.merkle import merkleize
    from state.account import BLANK_ROOT

    def no_node(h: bytes) -> bytes:
        raise KeyError(h)

    root = merkleize(alloc_diff(_alloc()), BLANK_ROOT, lambda a: None, no_node).root
    header = _header(root, number=0)
    import rlp

    store.commit_block(genesis_commit(_alloc(), header.hash, rlp.encode(header), root, 0))
    return Overlay(store)


def _header(state_root: bytes, number: int = 1):  # type: ignore[no-untyped-def]
    header_class = CancunVM.get_block_class()._meta.fields[0][1]
    return header_class(
        parent_hash=b"\x00" * 32,
        coinbase=COINBASE,
        state_root=state_root,
        difficulty=0,
        block_number=number,
        gas_limit=GAS_LIMIT,
        timestamp=1_700_000_000 + number,
        base_fee_per_gas=BASE_FEE,
        withdrawals_root=b"\x00" * 32,
        blob_gas_used=0,
        excess_blob_gas=0,
        parent_beacon_block_root=b"\x00" * 32,
    )


tx_spec = st.tuples(
    st.integers(0, len(KEYS) - 1),  # sender
    st.integers(0, len(TARGETS) - 1),  # recipient
    st.sampled_from([0, 1, 10**15]),  # value
    st.integers(1, 3),  # tip
)


def _block(specs: list[tuple[int, int, int, int]]):  # type: ignore[no-untyped-def]
    builder = CancunVM.get_transaction_builder()
    nonces = [0] * len(KEYS)
    txs = []
    for sender, target, value, tip in specs:
        to = TARGETS[target]
        gas = 200_000 if to in (LOOPER, CREATOR) else 100_000
        unsigned = builder.new_unsigned_dynamic_fee_transaction(
            chain_id=CHAIN_ID,
            nonce=nonces[sender],
            max_priority_fee_per_gas=tip,
            max_fee_per_gas=BASE_FEE + tip,
            gas=gas,
            to=to,
            value=value,
            data=b"",
            access_list=[],
        )
        txs.append(unsigned.as_signed_transaction(KEYS[sender], chain_id=CHAIN_ID))
        nonces[sender] += 1
    return CancunVM.get_block_class()(_header(b"\x00" * 32), transactions=txs, uncles=[], withdrawals=[])


def _vm(overlay: Overlay, block):  # type: ignore[no-untyped-def]
    return make_vm(CancunVM, block.header, overlay, [], CHAIN_ID)


def _alone(block):  # type: ignore[no-untyped-def]
    """Every transaction on its own, on the pre-block state (the optimistic strategy)."""
    return [(index, tx, None) for index, tx in enumerate(block.transactions)]


def _in_chains(block, chains: list[int]):  # type: ignore[no-untyped-def]
    """Transactions in chains (the declared strategy): a chain runs in order on one
    database; chains are speculated one after another, as a worker would."""
    order = sorted(range(len(chains)), key=lambda index: (chains[index], index))
    return [(index, block.transactions[index], chains[index]) for index in order]


def _optimistic(overlay: Overlay, block, txs):  # type: ignore[no-untyped-def]
    """Speculate `txs`, then validate in block order; returns (execution, conflicts)."""
    speculative = speculate(_vm(overlay, block), block.header, txs)
    speculative = unpack_results(pack_results(speculative))  # through the wire format, as from a worker
    speculative.sort(key=lambda result: result.index)
    run = BlockRun(_vm(overlay, block), block)
    run.begin()
    conflicts = trio.run(validate_in_order, run, speculative)
    return run.finish(), conflicts


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(tx_spec, min_size=1, max_size=24))
def test_optimistic_equals_sequential(overlay: Overlay, specs: list) -> None:
    block = _block(specs)
    sequential = execute_block(_vm(overlay, block), block)

    speculative = speculate(_vm(overlay, block), block.header, _alone(block))
    speculative = unpack_results(pack_results(speculative))  # through the wire format, as from a worker
    run = BlockRun(_vm(overlay, block), block)
    run.begin()
    conflicts = trio.run(validate_in_order, run, speculative)
    optimistic = run.finish()

    assert first_difference(optimistic, sequential) is None
    assert [r.encode() for r in optimistic.receipts] == [r.encode() for r in sequential.receipts]
    assert optimistic.diff.accounts == sequential.diff.accounts
    assert optimistic.diff.storage == sequential.diff.storage
    assert sum(conflicts.values()) <= len(block.transactions)


def test_payments_to_one_recipient_do_not_conflict(overlay: Overlay) -> None:
    """Fee credits and value credits are commutative: 12 payments to one account,
    from 4 senders with tips to the same fee recipient, re-execute only nonce chains."""
    specs = [(i % 4, 1, 10**15, 2) for i in range(4)]  # four senders, one recipient, first tx each
    block = _block(specs)
    speculative = speculate(_vm(overlay, block), block.header, _alone(block))
    run = BlockRun(_vm(overlay, block), block)
    run.begin()
    conflicts = trio.run(validate_in_order, run, speculative)
    assert sum(conflicts.values()) == 0
    assert first_difference(run.finish(), execute_block(_vm(overlay, block), block)) is None


def test_shared_counter_conflicts_and_is_exact(overlay: Overlay) -> None:
    specs = [(i, TARGETS.index(COUNTER), 0, 1) for i in range(4)]
    block = _block(specs)
    speculative = speculate(_vm(overlay, block), block.header, _alone(block))
    run = BlockRun(_vm(overlay, block), block)
    run.begin()
    conflicts = trio.run(validate_in_order, run, speculative)
    assert sum(conflicts.values()) == 3  # every counter increment after the first saw a stale slot
    optimistic = run.finish()
    assert optimistic.diff.storage[COUNTER][0] == 5 + 4
    assert first_difference(optimistic, execute_block(_vm(overlay, block), block)) is None


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(tx_spec, min_size=1, max_size=24), st.data())
def test_any_chains_equal_sequential(overlay: Overlay, specs: list, data: st.DataObject) -> None:
    """Whatever the chains (a prediction can be arbitrarily wrong), declared execution
    gives the sequential result."""
    block = _block(specs)
    chains = data.draw(st.lists(st.integers(0, 3), min_size=len(specs), max_size=len(specs)))
    sequential = execute_block(_vm(overlay, block), block)
    declared, conflicts = _optimistic(overlay, block, _in_chains(block, chains))
    assert first_difference(declared, sequential) is None
    assert [r.encode() for r in declared.receipts] == [r.encode() for r in sequential.receipts]
    assert declared.diff.accounts == sequential.diff.accounts
    assert declared.diff.storage == sequential.diff.storage


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(tx_spec, min_size=1, max_size=24))
def test_predicted_chains_equal_sequential_and_learn(overlay: Overlay, specs: list) -> None:
    """Chains from the predictor, after it learned from the block run sequentially:
    identical result, and no conflict left where the prediction can be exact (nonce
    chains, the shared counter)."""
    block = _block(specs)
    sequential = execute_block(_vm(overlay, block), block)
    predictor = AccessPredictor()
    for tx, result in zip(block.transactions, sequential.tx_results):
        predictor.learn(tx, tx.sender, result.reads, result.writes, COINBASE)
    chains = schedule_chains([predictor.predict(tx, tx.sender) for tx in block.transactions])
    declared, conflicts = _optimistic(overlay, block, _in_chains(block, chains))
    assert first_difference(declared, sequential) is None
    assert declared.diff.accounts == sequential.diff.accounts
    assert declared.diff.storage == sequential.diff.storage
    predictable = {EOAS[1], EOAS[2], COUNTER, REVERTER}
    if all(tx.to in predictable for tx in block.transactions):
        assert sum(conflicts.values()) == 0


def test_declared_chains_a_shared_counter(overlay: Overlay) -> None:
    """Four increments of one slot: optimistic re-executes three; after learning the
    slot, declared runs them as one chain and re-executes none."""
    block = _block([(i, TARGETS.index(COUNTER), 0, 1) for i in range(4)])
    sequential = execute_block(_vm(overlay, block), block)
    predictor = AccessPredictor()
    predictor.learn(block.transactions[0], SENDERS[0], sequential.tx_results[0].reads, sequential.tx_results[0].writes, COINBASE)
    chains = schedule_chains([predictor.predict(tx, tx.sender) for tx in block.transactions])
    assert chains == [0, 0, 0, 0]
    declared, conflicts = _optimistic(overlay, block, _in_chains(block, chains))
    assert sum(conflicts.values()) == 0
    assert declared.diff.storage[COUNTER][0] == 5 + 4
    assert first_difference(declared, sequential) is None
