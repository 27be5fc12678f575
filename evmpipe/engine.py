"""The `pipeline` engine of `evmpipe blocktest`: one BlockchainTest through the stages.

Each test gets a fresh state database: genesis and pre-state, then every block of the
fixture through prefetch -> execute -> validate -> merkleize -> commit. Then the
committed state is compared with `postState` account by account (or its root with
`postStateHash`), and the head with `lastblockhash`.
"""
from __future__ import annotations

import atexit
import tempfile
import time
from pathlib import Path
from typing import Any

import rlp
import trio

from consensus_stub.fixture import fixture_alloc, fixture_source, hex_bytes
from evmpipe.blocktest.result import BlockOutcome, TestResult
from execution.decode import decode_header
from execution.forks import schedule_for_network
from execution.strategies import ExecutionStrategy, make_strategy
from execution.workers import WorkerPool, pool_session
from pipeline.block import InFlightBlock
from pipeline.chain import ChainState
from pipeline.events import EventLog
from pipeline.node import build_stages
from pipeline.runner import PipelineConfig, run_pipeline
from state.genesis import genesis_commit
from state.nodekeys import DEFAULT_SCHEME
from state.store import StateStore

ENGINE = "pipeline"


_POOL: WorkerPool | None = None


def shared_pool() -> WorkerPool:
    """One worker pool per process, reused by every test (starting one costs ~1 s):
    its processes outlive each test's `trio.run`, which opens a session of its own."""
    global _POOL
    if _POOL is None:
        _POOL = WorkerPool(2).__enter__()
        atexit.register(_POOL.__exit__)
    return _POOL


def run_blockchain_test(path: str, name: str, test: dict[str, Any], *, events: EventLog | None = None, strategy: str = "sequential", verify: bool = False) -> TestResult:
    """Run one test; never raises for a failing test (the result says why)."""
    started = time.perf_counter()
    network = test.get("network", "?")
    outcomes: list[BlockOutcome] = []
    events = events or EventLog(log_events=False)
    try:
        pool = shared_pool() if strategy != "sequential" else None
        error = _run(test, outcomes, events, make_strategy(strategy, pool, verify=verify), pool)
    except Exception as exc:  # a crash is a failed test with its reason, not a crashed runner
        error = f"{type(exc).__name__}: {exc}"
    result = TestResult(path, name, network, ENGINE, error is None, error, time.perf_counter() - started, outcomes)
    result.stage_seconds = events.busy_by_stage()
    return result


def _run(test: dict[str, Any], outcomes: list[BlockOutcome], events: EventLog, strategy: ExecutionStrategy, pool: WorkerPool | None) -> str | None:
    schedule = schedule_for_network(test["network"])
    with tempfile.TemporaryDirectory(prefix="evmpipe-bt-") as tmp:
        store = StateStore(Path(tmp) / "state.sqlite", synchronous="OFF", trie_scheme=DEFAULT_SCHEME)
        try:
            genesis_rlp = hex_bytes(test["genesisRLP"])
            header, _ = decode_header(schedule, rlp.encode(rlp.decode(genesis_rlp)[0]))
            expected_hash = hex_bytes(test["genesisBlockHeader"]["hash"])
            if header.hash != expected_hash:
                return f"genesis hash 0x{header.hash.hex()} != fixture's 0x{expected_hash.hex()}"
            store.commit_block(genesis_commit(fixture_alloc(test["pre"]), header.hash, rlp.encode(header), header.state_root, header.difficulty))
            chain = ChainState.open(store, schedule)

            async def sink(block: InFlightBlock) -> None:
                expect = block.input.meta.get("expect_exception")
                outcomes.append(
                    BlockOutcome(
                        index=block.input.seq,
                        number=block.number,
                        expected_exception=expect,
                        rejected=block.error is not None,
                        reason=block.error.code if block.error else None,
                        detail=block.error.describe() if block.error else None,
                    )
                )

            async def main() -> None:
                async with pool_session(pool):
                    await run_pipeline(fixture_source(test), build_stages(chain, strategy), sink, config=PipelineConfig(), events=events, chain=chain)

            trio.run(main)
            return _check_outcomes(outcomes) or _check_post_state(store, test)
        finally:
            store.close()


def _check_outcomes(outcomes: list[BlockOutcome]) -> str | None:
    return next((problem for outcome in outcomes if (problem := outcome.problem())), None)


def _check_post_state(store: StateStore, test: dict[str, Any]) -> str | None:
    head = store.head()
    assert head is not None
    expected_last = hex_bytes(test["lastblockhash"])
    if "postStateHash" in test:
        expected_root = hex_bytes(test["postStateHash"])
        if head.state_root != expected_root:
            return f"post state root 0x{head.state_root.hex()} != 0x{expected_root.hex()}"
    else:
        problem = compare_state(store, test["postState"])
        if problem:
            return problem
    if head.hash != expected_last:
        return f"last block hash 0x{head.hash.hex()} != fixture's 0x{expected_last.hex()}"
    return None


def compare_state(store: StateStore, post: dict[str, Any]) -> str | None:
    """The first difference between committed state and a fixture's `postState`."""
    expected = fixture_alloc(post)
    ours = dict(store.iter_accounts())
    for address in sorted(set(ours) - set(expected)):
        return f"unexpected account 0x{address.hex()}"
    for address, fields in expected.items():
        account = ours.get(address)
        where = f"0x{address.hex()}"
        if account is None:
            return f"missing account {where}"
        if account.nonce != fields["nonce"]:
            return f"{where} nonce {account.nonce} != {fields['nonce']}"
        if account.balance != fields["balance"]:
            return f"{where} balance {account.balance} != {fields['balance']}"
        code = store.get_code(account.code_hash) if fields["code"] or account.code_hash else b""
        if (code or b"") != fields["code"]:
            return f"{where} code differs"
        storage = dict(store.iter_storage(address))
        want = {k: v for k, v in fields["storage"].items() if v}
        if storage != want:
            diff = sorted(set(storage.items()) ^ set(want.items()))[:3]
            return f"{where} storage differs: {diff}"
    return None

