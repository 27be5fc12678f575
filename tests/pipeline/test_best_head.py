"""The best head is written with each commit, so a crash while the store is switched
to a side branch (to execute a block there) resumes on the best head.

Before, fork choice's best head lived in memory only: a kill between the switch and
the switch back left the database on the side branch for good."""
from __future__ import annotations

from pathlib import Path

import rlp
from eth_hash.auto import keccak

from consensus_stub.blockfile import BlockRecord, read_header
from pipeline.chain import ChainState
from pipeline.datadir import DB_NAME
from state.store import StateStore
from tests.pipeline.test_unwind import BLOCKS, SAMPLE, run_records


def sibling(record: BlockRecord) -> BlockRecord:
    """The same block with other extra data: valid, another hash."""
    block = rlp.decode(record.rlp)
    block[0][12] = b"sibling"
    return BlockRecord(record.number, keccak(rlp.encode(block[0])), rlp.encode(block), 0, None)


def test_kill_on_a_side_branch_resumes_on_the_best_head(tmp_path: Path) -> None:
    other2 = sibling(BLOCKS[1])
    results = run_records(tmp_path / "db", [BLOCKS[0], BLOCKS[1], BLOCKS[2], other2], "sequential", None)
    assert all(block.error is None for block in results)
    store = StateStore(tmp_path / "db" / DB_NAME)
    try:
        # after the merge the newest block wins: 2' is the head and the best head
        assert store.head().hash == other2.hash and store.best_hash() == other2.hash
        # what the execute stage does to run a child of block 3, then a kill
        store.reorg_to(BLOCKS[2].hash)
        assert store.head().hash == BLOCKS[2].hash
    finally:
        store.close()
    store = StateStore(tmp_path / "db" / DB_NAME)
    try:
        chain = ChainState.open(store, read_header(SAMPLE).schedule)
        assert chain.head is not None and chain.head.hash == other2.hash
        assert store.head().hash == other2.hash
        assert chain.tip == chain.best == other2.hash
    finally:
        store.close()
    # and the chain goes on from there: the original 3 and 4 (on 2) are taken, a
    # reorganization back to that branch
    results = run_records(tmp_path / "db", [BLOCKS[2], BLOCKS[3]], "sequential", None)
    assert [block.error is None for block in results] == [True, True]
