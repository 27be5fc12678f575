"""The stage contract (STYLE.md: one suite every stage passes), on real blocks.

For each stage:
- execute: a valid block gets the stage's own record and no other;
- reject: a block invalid at that stage raises `InvalidBlock`; after the runner's
  rejection (remember it, unwind every stage to the height below it) the chain is
  as it was before the block;
- unwind: a block the stage handled, unwound to the height below it, leaves the
  chain as it was before;
- the same block twice: the second pass, after an unwind, gives the same record
  (and a block committed twice leaves the head and the state as the first did).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

import pytest
import rlp
from eth_hash.auto import keccak

from consensus_stub.blockfile import BlockRecord, iter_blocks, read_header
from evmpipe.demo import sample_path
from pipeline.block import BlockInput, InFlightBlock
from pipeline.chain import ChainState
from pipeline.datadir import open_datadir
from pipeline.errors import BlockError, InvalidBlock, TxError
from pipeline.node import build_stages
from pipeline.stage import Stage, StageId
from state.trie import ordered_trie_root
from tests.node.helpers import with_bad_state_root

SAMPLE = Path(sample_path())
BLOCKS = list(iter_blocks(SAMPLE))
RECORDS = {"prefetch": "prefetched", "execute": "executed", "validate": "receipts_root", "merkleize": "merkleized", "commit": "committed"}


def _rewrite(record: BlockRecord, change: Callable[[list[Any]], None]) -> BlockRecord:
    block = rlp.decode(record.rlp)
    change(block)
    return BlockRecord(record.number, keccak(rlp.encode(block[0])), rlp.encode(block), 0, None)


def _older_timestamp(block: list[Any]) -> None:
    block[0][11] = b"\x01"


def _without_first_tx(block: list[Any]) -> None:
    block[1] = block[1][1:]
    block[0][4] = ordered_trie_root([tx if isinstance(tx, bytes) else rlp.encode(tx) for tx in block[1]])


def _wrong_gas_used(block: list[Any]) -> None:
    block[0][10] = (int.from_bytes(block[0][10], "big") - 1).to_bytes(8, "big").lstrip(b"\x00")


BAD = {
    "prefetch": (lambda r: _rewrite(r, _older_timestamp), BlockError.INVALID_BLOCK_TIMESTAMP_OLDER_THAN_PARENT),
    "execute": (lambda r: _rewrite(r, _without_first_tx), TxError.NONCE_MISMATCH_TOO_HIGH),
    "validate": (lambda r: _rewrite(r, _wrong_gas_used), BlockError.INVALID_GAS_USED),
    "merkleize": (with_bad_state_root, BlockError.INVALID_STATE_ROOT),
}


@dataclass
class Harness:
    chain: ChainState
    stages: list[Stage]

    def index(self, stage_id: str) -> int:
        return [s.id.value for s in self.stages].index(stage_id)

    async def through(self, item: InFlightBlock, last: int) -> None:
        """Run `item` through the stages up to and including `last`."""
        for stage in self.stages[: last + 1]:
            await stage.execute(item)

    async def reject(self, item: InFlightBlock, stage: Stage, error: InvalidBlock) -> None:
        """What the runner does with a rejected block."""
        item.fail(stage.id.value, error)
        pre = item.prefetched
        target = self.chain.rejected(item.hash if pre else None, item.number, error, executed=item.hash)
        if target is not None:
            for each in reversed(self.stages):
                await each.unwind(target)

    def snapshot(self) -> tuple[Any, ...]:
        chain = self.chain
        overlay = chain.overlay
        return (chain.tip, chain.best, chain.head, chain.in_flight, [n for n, _ in overlay.diffs], sorted(overlay.nodes), sorted(overlay.sealed))


def _harness(tmp_path: Path) -> Harness:
    header = read_header(SAMPLE)
    store = open_datadir(tmp_path / "db", header.schedule, header.genesis_header_rlp, header.alloc, synchronous="OFF")
    chain = ChainState.open(store, header.schedule)
    return Harness(chain, build_stages(chain))


def _item(record: BlockRecord) -> InFlightBlock:
    return InFlightBlock(BlockInput(record.number, record.rlp, {"number": record.number, "hash": record.hash}))


def _records(item: InFlightBlock) -> dict[str, bool]:
    return {name: bool(getattr(item, name)) for name in RECORDS.values()}


STAGES = [stage.value for stage in StageId]


@pytest.fixture
def harness(tmp_path: Path):
    made = _harness(tmp_path)
    try:
        yield made
    finally:
        made.chain.store.close()


async def _committed_block_1(harness: Harness) -> None:
    await harness.through(_item(BLOCKS[0]), len(harness.stages) - 1)


@pytest.mark.parametrize("stage_id", STAGES)
async def test_execute_adds_its_own_record(harness: Harness, stage_id: str) -> None:
    await _committed_block_1(harness)
    index = harness.index(stage_id)
    item = _item(BLOCKS[1])
    await harness.through(item, index - 1)
    before = _records(item)
    await harness.stages[index].execute(item)
    after = _records(item)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {RECORDS[stage_id]}


@pytest.mark.parametrize("stage_id", list(BAD))
async def test_reject_leaves_the_chain_as_it_was(harness: Harness, stage_id: str) -> None:
    await _committed_block_1(harness)
    make_bad, code = BAD[stage_id]
    index = harness.index(stage_id)
    item = _item(make_bad(BLOCKS[1]))
    before = harness.snapshot()
    await harness.through(item, index - 1)
    with pytest.raises(InvalidBlock) as caught:
        await harness.stages[index].execute(item)
    assert caught.value.code == code
    await harness.reject(item, harness.stages[index], caught.value)
    assert harness.snapshot() == before
    # and the valid block at that height goes through every stage afterwards
    good = _item(BLOCKS[1])
    await harness.through(good, len(harness.stages) - 1)
    assert good.committed and harness.chain.head_hash == BLOCKS[1].hash


@pytest.mark.parametrize("stage_id", STAGES[:-1])
async def test_unwind_leaves_the_chain_as_it_was(harness: Harness, stage_id: str) -> None:
    await _committed_block_1(harness)
    before = harness.snapshot()
    item = _item(BLOCKS[1])
    await harness.through(item, harness.index(stage_id))
    for stage in reversed(harness.stages):
        await stage.unwind(BLOCKS[0].number)
    assert harness.snapshot() == before


@pytest.mark.parametrize("stage_id", STAGES[:-1])
async def test_the_same_block_twice_gives_the_same_record(harness: Harness, stage_id: str) -> None:
    await _committed_block_1(harness)
    index = harness.index(stage_id)
    records = []
    for _ in range(2):
        item = _item(BLOCKS[1])
        await harness.through(item, index)
        records.append(_comparable(getattr(item, RECORDS[stage_id])))
        for stage in reversed(harness.stages):
            await stage.unwind(BLOCKS[0].number)
    assert records[0] == records[1]


async def test_commit_of_the_same_block_twice_gives_the_same_head(harness: Harness) -> None:
    """A block committed already comes again: execute runs it on its parent once
    more (the store switched back to the parent), commit writes it again; the head
    and the database are as after the first copy."""
    await _committed_block_1(harness)
    first = _item(BLOCKS[1])
    await harness.through(first, len(harness.stages) - 1)
    head = harness.chain.store.head()
    accounts = dict(harness.chain.store.iter_accounts())
    second = _item(BLOCKS[1])
    await harness.through(second, len(harness.stages) - 1)
    assert second.committed and harness.chain.store.head() == head == harness.chain.head
    assert dict(harness.chain.store.iter_accounts()) == accounts


def _comparable(record: Any) -> Any:
    """A stage record as plain values (receipts and diffs compared by their encoding)."""
    if isinstance(record, bytes):
        return record
    if record is None:
        return None
    values = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if field.name == "execution":
            value = ([r.encode() for r in value.receipts], value.gas_used, value.bloom, sorted(value.diff.accounts.items()))
        elif field.name == "block":
            value = value.header.hash
        elif field.name == "report":
            value = value.strategy
        values[field.name] = value
    return values




async def test_a_stalled_commit_stops_the_node_at_its_deadline(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A commit that does not return (a stalled disk) is left behind at the commit
    stage's deadline: a FatalError naming the block, not a hang."""
    import time

    from pipeline.errors import FatalError
    from stages.commit import CommitStage

    await _committed_block_1(harness)
    item = _item(BLOCKS[1])
    await harness.through(item, harness.index("merkleize"))
    monkeypatch.setattr(harness.chain.store, "commit_block", lambda commit: time.sleep(2))
    started = time.monotonic()
    with pytest.raises(FatalError, match="block 2: the commit took more than 0.2 s"):
        await CommitStage(harness.chain, deadline=0.2).execute(item)
    assert time.monotonic() - started < 1.5
    assert harness.chain.head_hash == BLOCKS[0].hash and not item.committed
