"""The pipeline: one nursery, one task per stage, bounded channels between them.

    source ─K─▶ prefetch ─▶ execute ─▶ validate ─▶ merkleize ─▶ commit ─▶ results

The capacity in front of prefetch is the consensus lookahead K: how many blocks the
source may hand out before execution has finished them. Every other channel holds
`capacity` blocks; a slow stage blocks the ones before it (backpressure, never an
unbounded queue). Each task owns its two channel ends, so closing flows downstream
and shutdown needs no sentinel. An exception other than `InvalidBlock` in any stage
cancels the nursery: nothing more is committed, the error propagates.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable, Sequence

import trio

from pipeline.block import BlockInput, InFlightBlock
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
) -> None:
    """Run every block from `source` through `stages`; hand each to `sink` in order."""
    events = events or EventLog(log_events=False)
    async with trio.open_nursery() as nursery:
        send, receive = trio.open_memory_channel[InFlightBlock](config.lookahead)
        nursery.start_soon(_feed, source, send)
        for stage in stages:
            next_send, next_receive = trio.open_memory_channel[InFlightBlock](config.capacity)
            nursery.start_soon(_run_stage, stage, receive, next_send, events)
            receive = next_receive
        nursery.start_soon(_drain, receive, sink)


async def _feed(source: BlockSource, outbox: trio.MemorySendChannel[InFlightBlock]) -> None:
    async with outbox:
        async for item in source():
            await outbox.send(InFlightBlock(item))


async def _run_stage(
    stage: Stage,
    inbox: trio.MemoryReceiveChannel[InFlightBlock],
    outbox: trio.MemorySendChannel[InFlightBlock],
    events: EventLog,
) -> None:
    async with inbox, outbox:
        async for block in inbox:
            if block.error is None or stage.sees_failed:
                start = events.now()
                try:
                    await stage.execute(block)
                except InvalidBlock as error:
                    block.fail(stage.id.value, error)
                counts = dict(block.counts.get(stage.id.value, {}))
                counts["queue_in"] = inbox.statistics().current_buffer_used
                counts["queue_out"] = outbox.statistics().current_buffer_used
                events.record(StageEvent(stage.id.value, block.number, block.input.seq, start, events.now(), block.error is None, counts))
            await outbox.send(block)


async def _drain(inbox: trio.MemoryReceiveChannel[InFlightBlock], sink: ResultSink) -> None:
    async with inbox:
        async for block in inbox:
            await sink(block)
