"""Rejected blocks with children behind them: the runner unwinds, descendants are
rejected as such (naming the invalid ancestor), and the valid chain goes on.

Each test fails on the code before `ChainState` and runner-level unwind: the child
of a block with a wrong state root was merkleized from the parent's claimed root
(KeyError, the pipeline died) or rejected for a wrong reason (its parent's diff
dropped under it: NONCE_MISMATCH_TOO_HIGH)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import rlp
import trio
from eth_hash.auto import keccak

from consensus_stub.blockfile import BlockRecord, iter_blocks
from evmpipe.demo import sample_path
from execution.strategies import make_strategy
from execution.workers import WorkerPool, pool_session
from pipeline.block import BlockInput, InFlightBlock
from pipeline.chain import ChainState
from pipeline.datadir import DB_NAME, open_datadir
from pipeline.errors import BlockError
from pipeline.node import build_stages
from pipeline.runner import PipelineConfig, run_pipeline
from consensus_stub.blockfile import read_header
from state.store import StateStore
from state.trie import ordered_trie_root
from tests.node.helpers import with_bad_state_root, write_chain

SAMPLE = Path(sample_path())
BLOCKS = list(iter_blocks(SAMPLE))  # blocks 1..4, 100 transfers each


def child_of(record: BlockRecord, parent_hash: bytes, *, empty: bool = False) -> BlockRecord:
    """`record` re-sealed on another parent (its transactions kept, or removed with
    the header's transactions root, receipts root, bloom and gas used to match)."""
    block = rlp.decode(record.rlp)
    block[0][0] = parent_hash
    if empty:
        block[1] = []
        block[0][4] = block[0][5] = ordered_trie_root([])
        block[0][6] = b"\x00" * 256
        block[0][10] = b""
    header_hash = keccak(rlp.encode(block[0]))
    return BlockRecord(record.number, header_hash, rlp.encode(block), 0, None)


def bad_branch(*, empty_child: bool = False) -> list[BlockRecord]:
    """Block 2 with a wrong state root, block 3 on it, and (unless 3 is empty: 4's
    base fee would be wrong on its own) block 4 on that."""
    bad2 = with_bad_state_root(BLOCKS[1])
    child3 = child_of(BLOCKS[2], bad2.hash, empty=empty_child)
    if empty_child:
        return [bad2, child3]
    return [bad2, child3, child_of(BLOCKS[3], child3.hash)]


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2) as workers:
        yield workers


def run_records(datadir: Path, records: list[BlockRecord], strategy: str, pool: WorkerPool | None, config: PipelineConfig = PipelineConfig()) -> list[InFlightBlock]:
    header = read_header(SAMPLE)
    store = open_datadir(datadir, header.schedule, header.genesis_header_rlp, header.alloc, synchronous="OFF")
    results: list[InFlightBlock] = []
    try:
        chain = ChainState.open(store, header.schedule)

        async def source():
            for seq, record in enumerate(records):
                yield BlockInput(seq, record.rlp, {"number": record.number, "hash": record.hash})

        async def sink(block: InFlightBlock) -> None:
            results.append(block)

        async def main() -> None:
            async with pool_session(pool):
                stages = build_stages(chain, make_strategy(strategy, pool))
                await run_pipeline(source, stages, sink, config=config, chain=chain)

        trio.run(main)
        head = store.head()
        assert head is not None
        assert chain.head == head  # the cached head is the stored one
    finally:
        store.close()
    return results


def _head(datadir: Path) -> tuple[int, bytes]:
    store = StateStore(datadir / DB_NAME)
    try:
        head = store.head()
        assert head is not None
        return head.number, head.hash
    finally:
        store.close()


@pytest.mark.parametrize("strategy", ["sequential", "optimistic", "auto"])
@pytest.mark.parametrize("empty_child", [False, True], ids=["child-with-txs", "empty-child"])
def test_invalid_block_with_children_then_the_valid_chain(tmp_path: Path, strategy: str, empty_child: bool, pool: WorkerPool) -> None:
    bad = bad_branch(empty_child=empty_child)
    records = [BLOCKS[0], *bad, *BLOCKS[1:]]
    results = run_records(tmp_path / "db", records, strategy, pool if strategy != "sequential" else None)
    verdicts = [(block.number, block.error.code if block.error else "ok") for block in results]
    descendants = [(n, BlockError.UNKNOWN_PARENT) for n in range(3, 3 + len(bad) - 1)]
    assert verdicts == [(1, "ok"), (2, BlockError.INVALID_STATE_ROOT), *descendants, (2, "ok"), (3, "ok"), (4, "ok")]
    for child in results[2 : 1 + len(bad)]:
        assert child.error is not None and "descends from invalid block 2" in child.error.reason
        assert bad[0].hash.hex()[:16] in child.error.reason
    assert _head(tmp_path / "db") == (4, BLOCKS[3].hash)


def without_first_transaction(record: BlockRecord, *, reseal: bool) -> BlockRecord:
    """Block 2 without its first transaction: the sender's later nonces are too high.
    Resealed (the header's transactions root updated: another hash), or not (the
    same header, with a body that is not the one it commits to)."""
    block = rlp.decode(record.rlp)
    block[1] = block[1][1:]
    if reseal:
        block[0][4] = ordered_trie_root([tx if isinstance(tx, bytes) else rlp.encode(tx) for tx in block[1]])
    return BlockRecord(record.number, keccak(rlp.encode(block[0])), rlp.encode(block), 0, None)


@pytest.mark.parametrize("strategy", ["sequential", "optimistic"])
def test_rejected_at_execute_child_is_named(tmp_path: Path, strategy: str, pool: WorkerPool) -> None:
    """A block rejected before it finished executing (a transaction invalid on its
    state): its child is rejected as a descendant, before it runs."""
    bad2 = without_first_transaction(BLOCKS[1], reseal=True)
    child3 = child_of(BLOCKS[2], bad2.hash)
    results = run_records(tmp_path / "db", [BLOCKS[0], bad2, child3, *BLOCKS[1:]], strategy, pool if strategy != "sequential" else None)
    codes = [block.error.code if block.error else "ok" for block in results]
    assert codes[1].startswith("TransactionException.NONCE_MISMATCH")
    assert codes[2] == BlockError.UNKNOWN_PARENT and "descends from invalid block 2" in results[2].error.reason
    assert codes[3:] == ["ok"] * 3
    assert _head(tmp_path / "db") == (4, BLOCKS[3].hash)


def test_a_wrong_body_does_not_condemn_its_header(tmp_path: Path, pool: WorkerPool) -> None:
    """The same header with a body it does not commit to is rejected; the right body
    under the same hash, and the blocks built on it, are then accepted."""
    wrong_body = without_first_transaction(BLOCKS[1], reseal=False)
    assert wrong_body.hash == BLOCKS[1].hash
    results = run_records(tmp_path / "db", [BLOCKS[0], wrong_body, *BLOCKS[1:]], "optimistic", pool)
    codes = [block.error.code if block.error else "ok" for block in results]
    assert codes[1].startswith("TransactionException.NONCE_MISMATCH")
    assert codes[2:] == ["ok"] * 3
    assert _head(tmp_path / "db") == (4, BLOCKS[3].hash)


def test_unwind_with_deep_pipeline(tmp_path: Path, pool: WorkerPool) -> None:
    """Many blocks in flight (lookahead 8, capacity 4): every descendant is caught
    wherever it is in the pipeline."""
    records = [BLOCKS[0], *bad_branch(), *BLOCKS[1:]]
    results = run_records(tmp_path / "db", records, "optimistic", pool, PipelineConfig(lookahead=8, capacity=4))
    assert [block.error is None for block in results] == [True, False, False, False, True, True, True]


def test_replay_stops_at_the_invalid_block_and_names_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.blocks"
    write_chain(path, read_header(SAMPLE), [BLOCKS[0], *bad_branch()[:2]])
    done = subprocess.run(
        [sys.executable, "-m", "evmpipe", "replay", str(path), "--datadir", str(tmp_path / "db"), "--strategy", "optimistic", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    assert "block 2" in done.stderr and "INVALID_STATE_ROOT" in done.stderr
    assert _head(tmp_path / "db") == (1, BLOCKS[0].hash)
