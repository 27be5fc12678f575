"""Measure evmpipe's own overheads on a file, for the simulation's parameters.

Replays of the file through the real pipeline (`evmpipe.replay.replay_file`), one
block at a time so that each stage's time is its own:

1. `sequential`: each block's stage times (prefetch, validate, merkleize, commit),
   the serial work outside the transactions, scaled by the run's CPU over wall
   time where that is below one (the process waited for a core: load, not work).
2. `optimistic`, then `declared`, with one worker process: from the execute
   stage's events the master's and the worker's CPU time per block.

A message's round trip is timed apart, and so are the cores this machine gives a
busy process right now (`available_cores`).

With each transaction's execution time from the sequential recording
(`evmpipe.analyze.record`) and the transactions that validation re-executes (from
the graph), the rest of the workers' and the master's CPU is per-transaction
overhead, per strategy:

    worker_per_tx   = (worker CPU - execution - sender recovery (optimistic) or
                       the sampled calls' execution (declared)) / transactions,
                      but at least decoding and packing a result as timed in the
                      recording
    validate_per_tx = (master CPU in execute - the re-executed transactions'
                       execution - system work - prediction (declared))
                       / transactions, but at least unpacking, comparing the reads
                      and applying the writes of each result as timed in the
                      recording: the differences hold everything the processes
                      do per transaction, but are unsteady where most
                      transactions run twice, and on a loaded machine (they came
                      out negative)
    message         = the 20th percentile of 30 one-transaction round trips
                      (sender recovery, after the replays) - recovery: on a busy
                      machine most round trips also wait for a core, which the
                      simulation adds itself

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
    overheads: dict[str, Overheads]  # per strategy: optimistic, declared
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
        raise AnalyzeError(f"evmpipe analyze: the {strategy} replay of the blocks failed: {problem}", 1)
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
    """Replay `native` (the blocks `records` describe) with `optimistic` and with
    `declared` on one worker, `runs` times each, and derive each strategy's
    overheads (see the module's docstring): the median of each CPU figure over the
    runs."""
    from execution.workers import WorkerPool

    numbers = {r.number for r in records}
    cpu: dict[str, tuple[list[float], list[float]]] = {"optimistic": ([], []), "declared": ([], [])}
    walls: list[float] = []
    with WorkerPool(1) as pool:
        for _ in range(runs):
            for strategy, (master, worker) in cpu.items():
                _, events, wall, _ = replay_blocks(native, len(records), strategy, state, pool)
                executes = [e for e in events if e.stage == "execute" and e.block in numbers]
                master.append(sum(float(e.counts.get("master_cpu", 0.0)) for e in executes))
                worker.append(sum(float(e.counts.get("worker_cpu", 0.0)) for e in executes))
                if strategy == "optimistic":
                    walls.append(wall)
        trips = _round_trips(pool, native)
    txs = sum(len(r.txs) for r in records) or 1
    executed = sum(g.total for g in graphs)
    system = sum(r.begin_seconds + r.finish_seconds for r in records)
    recover = sum(r.recover_seconds for r in records)
    predicting = sum(r.predict_seconds for r in records)
    sampled = sum(g.seconds[i] for r, g in zip(records, graphs) for i in r.sampled)
    worker_floor = sum(r.decode_seconds + r.pack_seconds for r in records)
    validate_floor = sum(r.validate_seconds for r in records)
    # a low percentile: on a busy machine most round trips also wait for a core,
    # which the simulation adds itself (processor sharing, others' load)
    message = max(0.0, _percentile(trips, 0.2) - recover / txs)
    detail: dict[str, float] = {"runs": float(runs), "recorded_execution": executed, "round_trip_median": statistics.median(trips), "round_trip_p20": _percentile(trips, 0.2), "round_trip_min": min(trips), "optimistic_wall": statistics.median(walls)}
    overheads = {}
    for strategy, (master, worker) in cpu.items():
        master_cpu, worker_cpu = statistics.median(master), statistics.median(worker)
        again = sum(sum(s for s, a in zip(g.seconds, reexecuted(g, r.chains or None if strategy == "declared" else None)) if a) for r, g in zip(records, graphs))
        if strategy == "optimistic":
            # its workers recover the senders while they speculate
            worker_extra = worker_cpu - executed - recover
            master_extra = master_cpu - again - system
        else:
            # senders come recovered (prefetch); the sampled calls run twice; the
            # master predicts
            worker_extra = worker_cpu - executed - sampled
            master_extra = master_cpu - again - system - predicting
        overheads[strategy] = Overheads(
            worker_per_tx=max(worker_extra, worker_floor) / txs,
            worker_speed=1.0,
            message=message,
            validate_per_tx=max(master_extra, validate_floor) / txs,
            block_head=0.0,
            predict_per_tx=predicting / txs if strategy == "declared" else 0.0,
        )
        detail.update(
            {
                f"{strategy}_master_cpu": master_cpu,
                f"{strategy}_worker_cpu": worker_cpu,
                f"{strategy}_reexecution": again,
                f"{strategy}_validate_per_tx_by_difference": master_extra / txs,
                f"{strategy}_worker_per_tx_by_difference": worker_extra / txs,
            }
        )
    detail.update(validate_per_tx_timed=validate_floor / txs, worker_per_tx_timed=worker_floor / txs)
    return Calibration(overheads, statistics.median(walls), detail)


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


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]
