"""`evmpipe replay FILE --datadir DIR`: a recorded block file through the pipeline.

Resumes where a previous run stopped (the datadir's committed head), shows progress,
and ends with the summary table. A corrupt record ends intake: every good block
before it is still executed and committed, then the command names the record and
exits 2. An invalid block stops the replay with its reason (exit 1); the database
stays at the last good block.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import AsyncIterator, Iterator

import trio

from consensus_stub.blockfile import BlockRecord, iter_blocks, read_header
from execution.strategies import STRATEGIES, make_strategy
from execution.workers import REQUEST_DEADLINE, WorkerPool, pool_session
from pipeline.block import BlockInput, InFlightBlock
from pipeline.chain import ChainState
from pipeline.datadir import open_datadir
from pipeline.errors import BadInput, FatalError, InvalidBlock
from pipeline.events import EventLog, StageEvent, configure_logging
from pipeline.node import build_stages
from stages.prefetch import reader_events
from pipeline.progress import Progress
from pipeline.required_state import check_required_state
from pipeline.state_options import ReadTracker, StateOptions, add_state_arguments, attach_reads, print_state_reads
from pipeline.runner import BlockSource, PipelineConfig, ResultSink, run_pipeline
from pipeline.stage import Stage
from pipeline.summary import render_summary, summarize
from pipeline.trace import write_trace


def add_replay_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("replay", help="replay a recorded block file into a datadir (resumable)")
    parser.add_argument("file", help="a native block file (see docs/BLOCKFILE.md; `evmpipe convert` makes one)")
    parser.add_argument("--datadir", required=True, help="database directory; created on first use, resumed afterwards")
    parser.add_argument("--lookahead", type=int, default=4, help="blocks consensus may hand out ahead of execution (K, default 4)")
    parser.add_argument("--capacity", type=int, default=2, help="buffer of each channel between stages (default 2)")
    parser.add_argument("--fsync", choices=["normal", "full", "off"], default="normal", help="SQLite synchronous mode (default normal: a killed process loses nothing committed)")
    parser.add_argument("--trace", metavar="FILE", help="write a Chrome/Perfetto trace of the stages")
    parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    parser.add_argument("--log", choices=["off", "info", "debug"], default="off", help="structlog stage events on stderr (default off)")
    parser.add_argument("--log-file", metavar="FILE", help="write the structlog events as JSON lines to FILE (appended) instead of stderr")
    parser.add_argument("--limit", type=int, help="stop after this many blocks")
    parser.add_argument("--max-in-flight", type=int, help="executed blocks that may await their commit (1: one block at a time; default: as the channels allow)")
    add_strategy_arguments(parser)
    add_state_arguments(parser)
    parser.set_defaults(func=cmd_replay)


@dataclass
class ReplayOutcome:
    input_error: BadInput | None = None
    rejected: InFlightBlock | None = None
    committed: int = 0
    last: int | None = None
    wall_seconds: float = 0.0  # the pipeline run alone (not opening the datadir)
    cpu_seconds: float = 0.0  # CPU time of this process and its children meanwhile
    events: EventLog = field(default_factory=lambda: EventLog(log_events=False))
    state_reads: dict | None = None  # read tiers of the whole run (pipeline.state_options)
    state_reads_per_block: list = field(default_factory=list)


class _Rejected(Exception):
    """Raised by the sink to stop the run at the first invalid block."""


def replay_file(
    path: str,
    datadir: str,
    *,
    config: PipelineConfig = PipelineConfig(),
    synchronous: str = "NORMAL",
    limit: int | None = None,
    progress: Progress | None = None,
    events: EventLog | None = None,
    strategy: str = "sequential",
    workers: int | None = None,
    worker_deadline: float = REQUEST_DEADLINE,
    verify: bool = False,
    pool: WorkerPool | None = None,
    max_in_flight: int | None = None,
    state_options: StateOptions = StateOptions(),
) -> ReplayOutcome:
    header = read_header(path)
    check_required_state(datadir, header.genesis_header_rlp, header.alloc, path)
    state_options.prepare(datadir)
    store = open_datadir(datadir, header.schedule, header.genesis_header_rlp, header.alloc, synchronous=synchronous)
    outcome = ReplayOutcome(events=events or EventLog(log_events=False))
    try:
        chain = ChainState.open(store, header.schedule)
        head = chain.head
        start_after = head.number if head else None
        state_options.configure(store)
        reads = ReadTracker(store, getattr(chain, "overlay", None))
        records = iter_blocks(path, start_after=start_after)

        async def source() -> AsyncIterator[BlockInput]:
            count = 0
            while limit is None or count < limit:
                try:
                    record = await trio.to_thread.run_sync(_next, records)
                except BadInput as error:
                    outcome.input_error = error
                    return
                if record is None:
                    return
                count += 1
                yield BlockInput(count, record.rlp, {"number": record.number, "offset": record.offset})

        async def sink(block: InFlightBlock) -> None:
            if block.error is not None:
                outcome.rejected = block
                raise _Rejected()
            outcome.committed += 1
            outcome.last = block.number
            tiers = reads.block(block.number)
            outcome.state_reads_per_block.append({"number": block.number, **tiers})
            attach_reads(outcome.events.events, block.number, tiers)
            if progress:
                progress.advance(block)

        with ExitStack() as stack:
            if pool is None and strategy != "sequential":
                pool = stack.enter_context(WorkerPool(workers, request_deadline=worker_deadline))
            worker_cpu_before = pool.cpu_seconds if pool else 0.0
            stages = build_stages(chain, make_strategy(strategy, pool, verify=verify), max_in_flight, state_options.prefetch_options())
            cpu_before, wall_before = cpu_time(), time.perf_counter()
            try:
                trio.run(partial(_run, pool, source, stages, sink, config, outcome.events, chain))
            except* _Rejected:
                pass
            outcome.wall_seconds = time.perf_counter() - wall_before
            outcome.state_reads = reads.total()
            outcome.cpu_seconds = cpu_time() - cpu_before + (pool.cpu_seconds - worker_cpu_before if pool else 0.0)
            if pool is not None:
                worker_events(outcome.events, pool, since=wall_before)
            reader_events(outcome.events, stages, since=wall_before)
    finally:
        store.close()
    return outcome


async def _run(pool: WorkerPool | None, source: BlockSource, stages: list[Stage], sink: ResultSink, config: PipelineConfig, events: EventLog, chain: ChainState) -> None:
    async with pool_session(pool):
        await run_pipeline(source, stages, sink, config=config, events=events, chain=chain)


def worker_events(events: EventLog, pool: WorkerPool, since: float) -> None:
    """The workers' request spans as events on tracks of their own ("worker N"), for
    the trace; they are not pipeline stages, so the summary leaves them out."""
    for worker, block, start, end in pool.spans:
        if start >= since:
            events.events.append(StageEvent(f"worker {worker}", block, -1, start - events.t0, end - events.t0, True, {}))


def cpu_time() -> float:
    """User + system CPU seconds of this process (all threads) and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _next(records: Iterator[BlockRecord]) -> BlockRecord | None:
    return next(records, None)


def cmd_replay(args: argparse.Namespace) -> int:
    configure_logging(level=args.log, log_file=args.log_file)
    try:
        header = read_header(args.file)
    except (BadInput, OSError) as error:
        print(f"evmpipe replay: {error}", file=sys.stderr)
        return 2
    total = _count_blocks(args.file)
    progress = Progress(total, label="replay")
    started = time.perf_counter()
    try:
        try:
            with progress:
                outcome = replay_file(
                    args.file,
                    args.datadir,
                    config=PipelineConfig(lookahead=args.lookahead, capacity=args.capacity),
                    synchronous=args.fsync.upper(),
                    limit=args.limit,
                    progress=progress,
                    events=EventLog(log_events=args.log != "off"),
                    strategy=args.strategy,
                    workers=args.workers,
                    worker_deadline=args.worker_deadline,
                    verify=args.verify,
                    max_in_flight=args.max_in_flight,
                    state_options=StateOptions.from_args(args),
                )
        except* FatalError as group:
            for error in group.exceptions:
                print(f"evmpipe replay: stopped: {error}", file=sys.stderr)
            outcome = None
    except BadInput as error:
        print(f"evmpipe replay: {error}", file=sys.stderr)
        return 2
    if outcome is None:
        return 1
    wall = time.perf_counter() - started
    summary = summarize(outcome.events.events, outcome.wall_seconds or wall)
    render_summary(summary, title=f"evmpipe replay: {Path(args.file).name}, chain id {header.chain_id}")
    print_state_reads(outcome.state_reads, StateOptions.from_args(args))
    if args.trace:
        write_trace(args.trace, outcome.events.events)
        print(f"trace written to {args.trace}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(_summary_json(summary, outcome), out, indent=2)
    if outcome.rejected is not None:
        error = outcome.rejected.error
        assert isinstance(error, InvalidBlock)
        print(f"evmpipe replay: invalid block, stopped: {error.describe()}", file=sys.stderr)
        print(f"evmpipe replay: database left at block {outcome.last if outcome.last is not None else 'unchanged'}", file=sys.stderr)
        return 1
    if outcome.input_error is not None:
        print(f"evmpipe replay: {outcome.input_error}", file=sys.stderr)
        print(f"evmpipe replay: the {outcome.committed} good blocks before it were committed", file=sys.stderr)
        return 2
    return 0


def add_strategy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", choices=STRATEGIES, default="sequential", help="how transactions execute (default sequential; see docs/ARCHITECTURE.md)")
    parser.add_argument("--workers", type=int, help="worker processes for optimistic, declared and auto (default: the number of cores)")
    parser.add_argument(
        "--worker-deadline",
        type=float,
        default=REQUEST_DEADLINE,
        metavar="SECONDS",
        help=f"a worker that does not answer a request within this is killed and replaced, and its block runs sequentially (default {REQUEST_DEADLINE:g})",
    )
    parser.add_argument("--verify", action="store_true", help="also execute every block sequentially and stop at the first difference")


def _count_blocks(path: str) -> int | None:
    """How many block records the file has (a quick pass; None when it is not readable to the end)."""
    try:
        return sum(1 for _ in iter_blocks(path))
    except BadInput:
        return None


def _summary_json(summary, outcome: ReplayOutcome) -> dict:  # type: ignore[no-untyped-def]
    return {
        "blocks": summary.blocks,
        "transactions": summary.txs,
        "gas": summary.gas,
        "wall_seconds": summary.wall_seconds,
        "mgas_per_s": summary.mgas_per_s,
        "tx_per_s": summary.tx_per_s,
        "stage_busy_seconds": summary.stage_busy,
        "latency_p50_s": summary.percentile(0.5),
        "latency_p99_s": summary.percentile(0.99),
        "overlap": summary.overlap,
        "last_block": outcome.last,
        "rejected": outcome.rejected.error.describe() if outcome.rejected and outcome.rejected.error else None,
        "input_error": str(outcome.input_error) if outcome.input_error else None,
        "state_reads": outcome.state_reads,
        "state_reads_per_block": outcome.state_reads_per_block,
    }
