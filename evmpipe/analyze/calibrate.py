"""Measure evmpipe's own overheads on a file, for the simulation's parameters.

Two replays of the file through the real pipeline (`evmpipe.replay.replay_file`),
one block at a time so that each stage's time is its own:

1. `sequential`: each block's stage times (prefetch, validate, merkleize, commit),
   the serial work outside the transactions, scaled by the run's CPU over wall
   time where that is below one (the process waited for a core: load, not work).
2. `optimistic` with one worker process: from the execute stage's events the
   master's and the worker's CPU time per block.

A message's round trip is timed apart, and so are the cores this machine gives a
busy process right now (`available_cores`).

With each transaction's execution time from the sequential recording
(`evmpipe.analyze.record`) and the transactions that validation re-executes (from
the graph), the rest of the workers' and the master's CPU is per-transaction
overhead:

    worker_per_tx   = (worker CPU - sum of execution) / transactions, but at least
                      sender recovery, decoding and packing a result, timed in
                      the recording
    validate_per_tx = (master CPU in execute - execution of the re-executed
                       transactions - system work) / transactions, but at least
                      what unpacking, comparing the reads and applying the writes
                      of each result cost when timed in the recording: the
                      difference holds everything the master does per
                      transaction, but is unsteady where most transactions run
                      twice (it came out negative on small blocks)
    message         = median round trip of a one-transaction request (sender
                      recovery, 30 of them after the replay) - recovery

One worker on a machine with two or more cores, so that neither waits for a core.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from evmpipe.analyze.graph import Graph
from evmpipe.analyze.record import AnalyzeError, BlockRecord
from evmpipe.analyze.schedule import Overheads, reexecuted

SERIAL_STAGES = ("prefetch", "validate", "merkleize", "commit")


@dataclass
class Calibration:
    overheads: Overheads
    parallel_stages: dict[int, dict[str, float]] = field(default_factory=dict)  # block -> stage -> seconds, optimistic
    optimistic_wall: float = 0.0
    detail: dict[str, float] = field(default_factory=dict)


def _stage_seconds(events: list) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for event in events:
        if event.block is not None and event.stage in SERIAL_STAGES + ("execute",):
            per = out.setdefault(event.block, {})
            per[event.stage] = per.get(event.stage, 0.0) + event.seconds
    return out


def replay_blocks(native: str, count: int, strategy: str, state: str | None = None, pool: object = None) -> tuple[dict[int, dict[str, float]], list, float, list]:
    """Replay the first `count` blocks of `native` (after `state`'s head, on a copy of
    it) one block at a time: stage seconds per block, the events, the wall time and
    the worker pool's request spans."""
    from evmpipe.replay import replay_file
    from pipeline.runner import PipelineConfig

    with tempfile.TemporaryDirectory(prefix="evmpipe-analyze-replay-") as tmp:
        datadir = Path(tmp) / "datadir"
        if state is not None:
            _copy_datadir(Path(state), datadir)
        spans_before = len(pool.spans) if pool is not None else 0  # type: ignore[attr-defined]
        outcome = replay_file(native, str(datadir), config=PipelineConfig(lookahead=1, capacity=1), synchronous="OFF", strategy=strategy, pool=pool, max_in_flight=1, limit=count)  # type: ignore[arg-type]
    if outcome.rejected is not None or outcome.input_error is not None:
        problem = outcome.rejected.error.describe() if outcome.rejected and outcome.rejected.error else str(outcome.input_error)
        raise AnalyzeError(f"evmpipe analyze: {native}: the {strategy} replay failed: {problem}", 1)
    spans = list(pool.spans[spans_before:]) if pool is not None else []  # type: ignore[attr-defined]
    stages = _stage_seconds(outcome.events.events)
    if strategy == "sequential" and outcome.wall_seconds > 0:
        # One process, one block at a time: CPU over wall below 1 means it waited for
        # a core that another process had; the stages' wall times are scaled by it,
        # so that load on the machine does not pass for serial work.
        share = min(1.0, outcome.cpu_seconds / outcome.wall_seconds)
        stages = {block: {stage: seconds * share for stage, seconds in per.items()} for block, per in stages.items()}
    return stages, outcome.events.events, outcome.wall_seconds, spans


def calibrate(native: str, records: list[BlockRecord], graphs: list[Graph], state: str | None = None, runs: int = 1) -> Calibration:
    """Replay `native` (the blocks `records` describe) with `optimistic` on one worker,
    `runs` times, and derive the overheads (see the module's docstring): the median
    of each CPU figure over the runs, the fastest of each stage's times."""
    from execution.workers import WorkerPool

    numbers = {r.number for r in records}
    master, worker, walls, stage_runs = [], [], [], []
    with WorkerPool(1) as pool:
        for _ in range(runs):
            stages, events, wall, _ = replay_blocks(native, len(records), "optimistic", state, pool)
            executes = [e for e in events if e.stage == "execute" and e.block in numbers]
            master.append(sum(float(e.counts.get("master_cpu", 0.0)) for e in executes))
            worker.append(sum(float(e.counts.get("worker_cpu", 0.0)) for e in executes))
            walls.append(wall)
            stage_runs.append(stages)
        trips = _round_trips(pool, native)
    master_cpu, worker_cpu = statistics.median(master), statistics.median(worker)
    txs = sum(len(r.txs) for r in records) or 1
    executed = sum(g.total for g in graphs)
    again = sum(sum(s for s, a in zip(g.seconds, reexecuted(g)) if a) for g in graphs)
    system = sum(r.begin_seconds + r.finish_seconds for r in records)
    recover_per_tx = sum(r.recover_seconds for r in records) / txs
    overheads = Overheads(
        worker_per_tx=max(worker_cpu - executed, sum(r.recover_seconds + r.decode_seconds + r.pack_seconds for r in records)) / txs,
        worker_speed=1.0,
        message=max(0.0, statistics.median(trips) - recover_per_tx),
        validate_per_tx=max(sum(r.validate_seconds for r in records), master_cpu - again - system) / txs,
        block_head=0.0,
        predict_per_tx=sum(r.predict_seconds for r in records) / txs,
    )
    detail = {
        "runs": float(runs),
        "optimistic_master_cpu": master_cpu,
        "optimistic_worker_cpu": worker_cpu,
        "recorded_execution": executed,
        "recorded_reexecution": again,
        "validate_per_tx_by_difference": (master_cpu - again - system) / txs,
        "validate_per_tx_timed": sum(r.validate_seconds for r in records) / txs,
        "worker_per_tx_by_difference": (worker_cpu - executed) / txs,
        "worker_per_tx_timed": sum(r.recover_seconds + r.decode_seconds + r.pack_seconds for r in records) / txs,
        "round_trip_median": statistics.median(trips),
        "round_trip_min": min(trips),
        "optimistic_wall": statistics.median(walls),
    }
    return Calibration(overheads, fastest(stage_runs), statistics.median(walls), detail)


def fastest(runs: list[dict[int, dict[str, float]]]) -> dict[int, dict[str, float]]:
    """Per block and stage, the least time over several runs (the others waited for
    something: a core, the disk)."""
    out: dict[int, dict[str, float]] = {}
    for run in runs:
        for block, stages in run.items():
            mine = out.setdefault(block, {})
            for stage, seconds in stages.items():
                mine[stage] = min(seconds, mine.get(stage, seconds))
    return out


def _copy_datadir(src: Path, dst: Path) -> None:
    """A copy of a datadir's database (with its WAL), for a replay that must not
    change the original."""
    import sqlite3

    dst.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{src / 'state.sqlite'}?mode=ro", uri=True)
    try:
        target = sqlite3.connect(dst / "state.sqlite")
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


#: One-transaction round trips timed for `message`.
ROUND_TRIPS = 30


def _round_trips(pool: object, native: str) -> list[float]:
    """Wall seconds of one-transaction requests to a worker (sender recovery of the
    file's first transaction): a message's round trip, with the trio thread hops."""
    import rlp
    import trio

    from consensus_stub.blockfile import iter_blocks, read_header
    from execution.decode import decode_block_and_transactions

    header = read_header(native)
    schedule = header.schedule
    for record in iter_blocks(native):
        _, _, encoded = decode_block_and_transactions(schedule, record.rlp)
        if encoded:
            header_rlp = rlp.encode(rlp.decode(record.rlp)[0])
            break
    else:
        return [0.0]

    async def trips() -> list[float]:
        out = []
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            await pool.recover_senders(schedule.to_dict(), header_rlp, encoded[:1])  # type: ignore[attr-defined]
            out.append(time.perf_counter() - started)
        return out

    async def measure() -> list[float]:
        session = getattr(pool, "session", None)  # pools that serve one trio run at a time
        if session is None:
            return await trips()
        async with session():
            return await trips()

    return trio.run(measure)


def _burn(seconds: float, conn: object) -> None:
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        pass
    conn.send(time.process_time())  # type: ignore[attr-defined]


def available_cores(seconds: float = 0.5) -> float:
    """How many cores busy processes get right now: one busy loop per core for
    `seconds`, their CPU time over the wall time (less than the core count when
    other processes use the machine)."""
    import multiprocessing
    import os

    cores = os.cpu_count() or 1
    context = multiprocessing.get_context("fork")
    pipes, procs = [], []
    for _ in range(cores):
        parent, child = context.Pipe()
        proc = context.Process(target=_burn, args=(seconds, child), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    started = time.perf_counter()
    cpu = sum(pipe.recv() for pipe in pipes)
    wall = max(time.perf_counter() - started, seconds)
    for proc in procs:
        proc.join()
    return min(float(cores), cpu / wall)
