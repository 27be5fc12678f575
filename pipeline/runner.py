"""The pipeline: one nursery, one task per stage, bounded channels between them.

    source ─K─▶ prefetch ─▶ execute ─▶ validate ─▶ merkleize ─▶ commit ─▶ results

The capacity in front of prefetch is the consensus lookahead K: how many blocks the
source may hand out before execution has finished them. Every other channel holds
`capacity` blocks; a slow stage blocks the ones before it (backpressure, never an
unbounded queue). Each task owns its two channel ends, so closing flows downstream
and shutdown needs no sentinel. An exception other than `InvalidBlock` in any stage
cancels the nursery: nothing more is committed, the error propagates.

Rejection is the runner's business (reth's `ControlFlow::Unwind`): when a stage
raises `InvalidBlock`, the block is marked failed and the `ChainState` remembers it;
if it had executed, every stage is unwound, last to first, to the height below it,
which throws away its diff and those of the blocks already built on it. Before
each stage a block is checked against the rejected blocks: a descendant of one is
rejected as `UNKNOWN_PARENT` (ethereum/tests' name for it), naming it, wherever it is in the pipeline. Later
stages let a failed block pass untouched to the sink, in order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Sequence

import trio

from pipeline.block import BlockInput, InFlightBlock
from pipeline.chain import ChainState
from pipeline.errors import InvalidBlock
from pipeline.events import EventLog, StageEvent
from pipeline.stage import Stage


@dataclass(frozen=True)
class PipelineConfig:
    lookahead: int = 4
    capacity: int = 2


BlockSource = Callable[[], AsyncIterator[BlockInput]]
ResultSink = Callable[[InFlightBlock], Awaitable[None]]


async def run_pipeline(
    source: BlockSource,
    stages: Sequence[Stage],
    sink: ResultSink,
    *,
    config: PipelineConfig = PipelineConfig(),
    events: EventLog | None = None,
    chain: ChainState | None = None,
) -> None:
    """Run every block from `source` through `stages`; hand each to `sink` in order.
    With `chain`, rejected blocks are remembered and unwound (see above)."""
    events = events or EventLog(log_events=False)
    rejector = _Rejector(chain, stages)
    async with trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[InFlightBlock](config.lookahead)
        nursery.start_soon(_feed, source, send)
        for stage in stages:
            next_send, next_receive = trio.open_memory_channel[InFlightBlock](config.capacity)
            nursery.start_soon(_run_stage, stage, receive, next_send, events, rejector)
            receive = next_receive
        nursery.start_soon(_drain, receive, sink)


@dataclass(frozen=True)
class _Rejector:
    """Checks ancestry before a stage, and marks and unwinds a rejected block."""

    chain: ChainState | None
    stages: Sequence[Stage]

    def check(self, block: InFlightBlock) -> None:
        if self.chain is not None and block.prefetched is not None:
            self.chain.check_ancestry(block.header.parent_hash)

    async def reject(self, block: InFlightBlock, stage: Stage, error: InvalidBlock) -> None:
        block.fail(stage.id.value, error)
        if self.chain is None or block.error is None:
            return
        pre = block.prefetched
        # Named by hash only when the body is the header's (another body may come);
        # a block that failed prefetch is not named: its children find no parent.
        named = block.hash if pre is not None and pre.body_matches_header else None
        target = self.chain.rejected(named, block.number, block.error, executed=block.hash)
        if target is not None:
            for each in reversed(self.stages):
                await each.unwind(target)


async def _feed(source: BlockSource, outbox: trio.MemorySendChannel[InFlightBlock]) -> None:
    async with outbox:
        async for item in source():
            await outbox.send(InFlightBlock(item))


async def _run_stage(
    stage: Stage,
    inbox: trio.MemoryReceiveChannel[InFlightBlock],
    outbox: trio.MemorySendChannel[InFlightBlock],
    events: EventLog,
    rejector: _Rejector,
) -> None:
    # The stage's own tasks (`Stage.running`) outlive its channels: its output closes
    # when its input ends, and the blocks after it go on while those tasks finish.
    async with stage.running():
        async with inbox, outbox:
            async for block in inbox:
                if block.error is None or stage.sees_failed:
                    start = events.now()
                    try:
                        if block.error is None:
                            rejector.check(block)
                        await stage.execute(block)
                    except InvalidBlock as error:
                        await rejector.reject(block, stage, error)
                    counts = dict(block.counts.get(stage.id.value, {}))
                    counts["queue_in"] = inbox.statistics().current_buffer_used
                    counts["queue_out"] = outbox.statistics().current_buffer_used
                    events.record(StageEvent(stage.id.value, block.number, block.input.seq, start, events.now(), block.error is None, counts))
                await outbox.send(block)


async def _drain(inbox: trio.MemoryReceiveChannel[InFlightBlock], sink: ResultSink) -> None:
    async with inbox:
        async for block in inbox:
            await sink(block)
