"""pipeline/runner.py with scripted fake stages: order, backpressure, rejected blocks,
fatal errors."""

from __future__ import annotations

from typing import AsyncIterator, Callable

import pytest
import trio
import trio.testing

from pipeline.block import BlockInput, InFlightBlock
from pipeline.errors import InvalidBlock
from pipeline.events import EventLog
from pipeline.runner import PipelineConfig, run_pipeline
from pipeline.stage import BaseStage, StageId

STAGE_IDS = list(StageId)


class FakeStage(BaseStage):
    """Records what it saw; `script(seq)` may raise or block."""

    def __init__(self, stage_id: StageId, *, sees_failed: bool = False, script: Callable | None = None) -> None:
        self.id = stage_id
        self.sees_failed = sees_failed
        self.script = script
        self.seen: list[int] = []
        self.unwound: list[int] = []

    async def execute(self, block: InFlightBlock) -> None:
        self.seen.append(block.input.seq)
        block.counts[self.id.value] = {"n": block.input.seq}
        await trio.lowlevel.checkpoint()
        if self.script is not None:
            await self.script(block)
        block.input.meta.setdefault("trail", []).append(self.id.value)

    async def unwind(self, to_number: int) -> None:
        self.unwound.append(to_number)


class CommitStage(FakeStage):
    def __init__(self, **kwargs) -> None:
        super().__init__(StageId.COMMIT, sees_failed=True, **kwargs)
        self.committed: list[int] = []
        self.cleaned: list[int] = []

    async def execute(self, block: InFlightBlock) -> None:
        await super().execute(block)
        if block.error is None:
            self.committed.append(block.input.seq)
            block.committed = True
        else:
            self.cleaned.append(block.input.seq)


def make_source(n: int, counter: dict | None = None) -> Callable[[], AsyncIterator[BlockInput]]:
    async def source() -> AsyncIterator[BlockInput]:
        for seq in range(n):
            if counter is not None:
                counter["yielded"] = seq + 1
            yield BlockInput(seq, b"rlp-%d" % seq, {})

    return source


class Sink:
    def __init__(self) -> None:
        self.blocks: list[InFlightBlock] = []

    async def __call__(self, block: InFlightBlock) -> None:
        self.blocks.append(block)

    @property
    def seqs(self) -> list[int]:
        return [b.input.seq for b in self.blocks]


async def test_every_block_in_order() -> None:
    stages = [FakeStage(sid) for sid in STAGE_IDS[:4]] + [CommitStage()]
    sink = Sink()
    events = EventLog(log_events=False)
    await run_pipeline(make_source(12), stages, sink, config=PipelineConfig(lookahead=2, capacity=1), events=events)

    assert sink.seqs == list(range(12))
    for stage in stages:
        assert stage.seen == list(range(12))
    assert stages[-1].committed == list(range(12))
    for block in sink.blocks:
        assert block.error is None and block.committed
        assert block.input.meta["trail"] == [s.value for s in STAGE_IDS]
        assert set(block.counts) == {s.value for s in STAGE_IDS}

    assert len(events.events) == 5 * 12
    assert all(e.ok for e in events.events)
    for sid in STAGE_IDS:  # per stage: every block, in order
        assert [e.seq for e in events.events if e.stage == sid.value] == list(range(12))
    order = {(e.stage, e.seq): i for i, e in enumerate(events.events)}
    for seq in range(12):  # per block: the stages in pipeline order, each done before the next began
        idx = [order[(sid.value, seq)] for sid in STAGE_IDS]
        assert idx == sorted(idx)
        evs = [events.events[i] for i in idx]
        for earlier, later in zip(evs, evs[1:]):
            assert earlier.end <= later.start
    for e in events.events:
        assert e.counts["n"] == e.seq
        assert "queue_in" in e.counts
    assert set(events.busy_by_stage()) == {s.value for s in STAGE_IDS}


async def test_empty_source() -> None:
    sink = Sink()
    await run_pipeline(make_source(0), [FakeStage(StageId.EXECUTE)], sink, events=EventLog(log_events=False))
    assert sink.blocks == []


@pytest.mark.parametrize(
    ("lookahead", "capacity", "n_stages"),
    [(1, 1, 5), (1, 1, 1), (1, 1, 2), (3, 1, 3), (1, 2, 3), (2, 3, 4)],
)
async def test_backpressure_bound(lookahead: int, capacity: int, n_stages: int) -> None:
    release = trio.Event()

    async def block_forever(block: InFlightBlock) -> None:
        await release.wait()

    stages = [FakeStage(sid) for sid in STAGE_IDS[: n_stages - 1]]
    stages.append(FakeStage(STAGE_IDS[n_stages - 1], script=block_forever))
    counter = {"yielded": 0}
    sink = Sink()
    total = 100
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_pipeline(
                make_source(total, counter), stages, sink,
                config=PipelineConfig(lookahead=lookahead, capacity=capacity), events=EventLog(log_events=False),
            )
        )
        await trio.testing.wait_all_tasks_blocked()
        # Blocks in the pipeline: one in every stage (the last one stuck in execute, the
        # others stuck sending), the buffers in front of prefetch (lookahead) and between
        # stages (capacity each; the one after the stuck stage is empty), and the one the
        # feeder holds while it waits to send.
        bound = n_stages + lookahead + (n_stages - 1) * capacity + 1
        assert counter["yielded"] == bound
        assert sink.blocks == []
        assert stages[-1].seen == [0]
        await trio.testing.wait_all_tasks_blocked()
        assert counter["yielded"] == bound  # stable: nothing is running any more
        release.set()
    assert sink.seqs == list(range(total))
    assert counter["yielded"] == total


async def test_backpressure_from_slow_sink() -> None:
    release = trio.Event()
    counter = {"yielded": 0}
    received: list[int] = []

    async def sink(block: InFlightBlock) -> None:
        received.append(block.input.seq)
        await release.wait()

    stages = [FakeStage(StageId.PREFETCH), FakeStage(StageId.EXECUTE)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(
            lambda: run_pipeline(make_source(50, counter), stages, sink,
                                 config=PipelineConfig(lookahead=1, capacity=1), events=EventLog(log_events=False))
        )
        await trio.testing.wait_all_tasks_blocked()
        # sink holds 1; channel after each stage 1 each; each stage 1; lookahead 1; feeder 1
        assert counter["yielded"] == 1 + 2 * 1 + 2 + 1 + 1
        assert received == [0]
        release.set()
    assert received == list(range(50))


async def test_invalid_block_marks_only_that_block() -> None:
    async def reject_three(block: InFlightBlock) -> None:
        if block.input.seq == 3:
            raise InvalidBlock("BlockException.INVALID_GASLIMIT", "scripted rejection")

    stages = [
        FakeStage(StageId.PREFETCH),
        FakeStage(StageId.EXECUTE, script=reject_three),
        FakeStage(StageId.VALIDATE),
        FakeStage(StageId.MERKLEIZE, sees_failed=True),
        CommitStage(),
    ]
    sink = Sink()
    events = EventLog(log_events=False)
    await run_pipeline(make_source(7), stages, sink, config=PipelineConfig(lookahead=1, capacity=1), events=events)

    assert sink.seqs == list(range(7))
    bad = sink.blocks[3]
    assert isinstance(bad.error, InvalidBlock)
    assert bad.error.code == "BlockException.INVALID_GASLIMIT"
    assert bad.failed_stage == StageId.EXECUTE.value
    assert not bad.committed
    for i, block in enumerate(sink.blocks):
        if i != 3:
            assert block.error is None and block.failed_stage is None and block.committed
    assert stages[0].seen == list(range(7))
    assert stages[1].seen == list(range(7))
    assert stages[2].seen == [0, 1, 2, 4, 5, 6]  # skips the rejected block
    assert stages[3].seen == list(range(7))  # sees_failed
    assert stages[4].seen == list(range(7))
    assert stages[4].committed == [0, 1, 2, 4, 5, 6]
    assert stages[4].cleaned == [3]
    assert bad.input.meta["trail"] == ["prefetch", "merkleize", "commit"]

    by_key = {(e.stage, e.seq): e for e in events.events}
    assert by_key[("execute", 3)].ok is False
    assert ("validate", 3) not in by_key
    assert by_key[("merkleize", 3)].ok is False
    assert by_key[("prefetch", 3)].ok is True
    assert all(e.ok for e in events.events if e.seq != 3)


async def test_invalid_block_error_gets_position() -> None:
    async def reject(block: InFlightBlock) -> None:
        raise InvalidBlock("X", "always", number=7)

    sink = Sink()
    await run_pipeline(make_source(2), [FakeStage(StageId.VALIDATE, script=reject)], sink, events=EventLog(log_events=False))
    assert [b.error.number for b in sink.blocks] == [7, 7]  # type: ignore[union-attr]
    assert [b.number for b in sink.blocks] == [7, 7]  # no decoded block: the error says where


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize(("fail_stage", "lookahead", "capacity"), [(1, 1, 1), (3, 1, 1), (2, 4, 2), (0, 2, 3)])
async def test_fatal_error_cancels_everything(fail_stage: int, lookahead: int, capacity: int) -> None:
    async def explode(block: InFlightBlock) -> None:
        if block.input.seq == 3:
            raise Boom("disk on fire")

    stages: list[FakeStage] = [FakeStage(sid) for sid in STAGE_IDS[:4]]
    stages[fail_stage] = FakeStage(STAGE_IDS[fail_stage], script=explode)
    commit = CommitStage()
    stages.append(commit)
    sink = Sink()
    counter = {"yielded": 0}

    with pytest.raises(ExceptionGroup) as info:
        await run_pipeline(make_source(1000, counter), stages, sink,
                           config=PipelineConfig(lookahead=lookahead, capacity=capacity), events=EventLog(log_events=False))
    assert info.group_contains(Boom, depth=None)
    matched, rest = info.value.split(Boom)
    assert matched is not None and rest is None  # nothing else went wrong (cancellations are absorbed)

    assert commit.committed == list(range(len(commit.committed)))  # a prefix...
    assert set(commit.committed) <= {0, 1, 2}  # ...never the failing block nor a later one
    assert commit.cleaned == []
    assert all(seq < 3 for seq in sink.seqs)
    for stage in stages[fail_stage + 1:]:
        assert 3 not in stage.seen and all(s < 3 for s in stage.seen)
    assert counter["yielded"] < 1000  # the source was cancelled too


async def test_fatal_error_in_sink_propagates() -> None:
    async def sink(block: InFlightBlock) -> None:
        if block.input.seq == 2:
            raise Boom("sink failed")

    commit = CommitStage()
    with pytest.raises(ExceptionGroup) as info:
        await run_pipeline(make_source(100), [FakeStage(StageId.EXECUTE), commit], sink,
                           config=PipelineConfig(lookahead=1, capacity=1), events=EventLog(log_events=False))
    assert info.group_contains(Boom, depth=None)
    assert len(commit.committed) < 100
