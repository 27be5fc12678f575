"""Measure evmpipe's own costs on a file, for the simulation's parameters.

Replays of the file through the real pipeline (`evmpipe.replay.replay_file`):

1. `sequential`, one block at a time (`serial_work`): the main process's CPU less
   the recorded transactions, system work and sender recovery is the *serial work*
   (decoding, checks, reading state ahead, merkleization, commit, the event loop);
   it is shared out over the blocks, and within a block between prefetch and the
   stages after execution, as the stage times are.
2. `optimistic`, then `declared`, with one worker process, blocks in flight as
   `evmpipe bench` runs them (`calibrate`): the main process's and the worker's CPU
   over the whole run (whole-run figures: a stage's own CPU would also count the
   other stages that ran meanwhile in the same process).

A message's round trip is timed apart, and so are the cores this machine gives a
busy process right now (`available_cores`).

With each transaction's execution time from the sequential recording
(`evmpipe.analyze.record`) and the transactions that validation re-executes (from
the graph), the rest of the workers' and the master's CPU is per-transaction
overhead, per strategy (medians over `--runs`):

    worker_per_tx   = (worker CPU - execution - sender recovery - the sampled
                       calls' execution (declared: they run twice)) / transactions,
                      but at least decoding and packing a result as timed in the
                      recording
    validate_per_tx = (main CPU - serial work - system work - the re-executed
                       transactions' execution - prediction (declared))
                       / transactions, but at least unpacking, comparing the reads
                      and applying the writes of each result as timed in the
                      recording
    message         = the 20th percentile of 30 one-transaction round trips
                      (sender recovery, after the replays) - recovery: on a busy
                      machine most round trips also wait for a core, which the
                      simulation adds itself

One worker on a machine with two or more cores, so that neither waits for a core:
the costs measured at one worker are then played at any worker count.
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
    executes: dict[str, list[list]] = field(default_factory=dict)  # per strategy, per run: the execute stage's events


def _stage_seconds(events: list) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for event in events:
        if event.block is not None and event.stage in SERIAL_STAGES + ("execute",):
            per = out.setdefault(event.block, {})
            per[event.stage] = per.get(event.stage, 0.0) + event.seconds
    return out


@dataclass
class Replay:
    """One replay of the file through the pipeline."""

    stages: dict[int, dict[str, float]]  # per block, each stage's wall seconds
    events: list
    wall: float
    main_cpu: float  # this process (all its threads)
    worker_cpu: float  # the pool's workers


def replay_blocks(native: str, count: int, strategy: str, state: str | None = None, pool: object = None, one_at_a_time: bool = False) -> Replay:
    """Replay the first `count` blocks of `native` (after `state`'s head, on a copy of
    it), as `evmpipe bench` does (blocks in flight at once), or `one_at_a_time`."""
    from evmpipe.replay import replay_file
    from pipeline.runner import PipelineConfig

    config = PipelineConfig(lookahead=1, capacity=1) if one_at_a_time else PipelineConfig()
    with tempfile.TemporaryDirectory(prefix="evmpipe-analyze-replay-") as tmp:
        datadir = Path(tmp) / "datadir"
        if state is not None:
            _copy_datadir(Path(state), datadir)
        workers_before = pool.cpu_seconds if pool is not None else 0.0  # type: ignore[attr-defined]
        outcome = replay_file(native, str(datadir), config=config, synchronous="OFF", strategy=strategy, pool=pool, max_in_flight=1 if one_at_a_time else None, limit=count)  # type: ignore[arg-type]
        workers = pool.cpu_seconds - workers_before if pool is not None else 0.0  # type: ignore[attr-defined]
    if outcome.rejected is not None or outcome.input_error is not None:
        problem = outcome.rejected.error.describe() if outcome.rejected and outcome.rejected.error else str(outcome.input_error)
        raise AnalyzeError(f"evmpipe analyze: the {strategy} replay of the blocks failed: {problem}", 1)
    return Replay(_stage_seconds(outcome.events.events), outcome.events.events, outcome.wall_seconds, outcome.cpu_seconds - workers, workers)


def serial_work(records: list[BlockRecord], graphs: list[Graph], replays: list[Replay]) -> tuple[float, list[tuple[float, float]]]:
    """The main process's time outside the transactions, sender recovery and the
    system work, in the sequential replays (median over them; its wall time, or
    its CPU time where that is less): decoding, checks,
    reading state ahead, merkleization, commit, the event loop. Returned as the
    total, and per block the part in prefetch and the part after execution, shared
    out as the block's stage times are (prefetch less its sender recovery; validate,
    merkleize and commit)."""
    executed = sum(g.total for g in graphs)
    system = sum(r.begin_seconds + r.finish_seconds for r in records)
    recover = sum(r.recover_seconds for r in records)
    floor = sum(r.decode_seconds for r in records)
    # one process: its wall time, or its CPU where that is less (it waited for a
    # core another process had); CPU above wall is SQLite's own threads, off the
    # interpreter lock, which the pipeline overlaps
    total = max(floor, statistics.median(min(r.main_cpu, r.wall) for r in replays) - executed - system - recover)
    stages = fastest([r.stages for r in replays])
    weights = []
    for record in records:
        per = stages.get(record.number, {})
        weights.append((max(record.decode_seconds, per.get("prefetch", 0.0) - record.recover_seconds), sum(per.get(s, 0.0) for s in SERIAL_STAGES if s != "prefetch")))
    whole = sum(a + b for a, b in weights) or 1.0
    return total, [(total * a / whole, total * b / whole) for a, b in weights]


def calibrate(native: str, records: list[BlockRecord], graphs: list[Graph], serial: float, state: str | None = None, runs: int = 1) -> Calibration:
    """Replay `native` (the blocks `records` describe) with `optimistic` and with
    `declared` on one worker, `runs` times each, as `evmpipe bench` does, and derive
    each strategy's overheads from the main process's and the workers' CPU (medians
    over the runs; see the module's docstring). `serial`: the main process's CPU
    outside the transactions in the sequential replays (`serial_work`)."""
    from execution.workers import WorkerPool

    cpu: dict[str, tuple[list[float], list[float]]] = {"optimistic": ([], []), "declared": ([], [])}
    walls: list[float] = []
    executes_kept: dict[str, list[list]] = {"optimistic": [], "declared": []}
    numbers = {r.number for r in records}
    gaps: list[float] = []
    spans: dict[str, list[tuple[float, float, int]]] = {"optimistic": [], "declared": []}
    senders: list[tuple[float, float, int]] = []  # declared: prefetch's sender recovery requests
    firsts: dict[int, list[float]] = {}  # per block: its first request's extra time, each run of each strategy
    with WorkerPool(1) as pool:
        # a fresh worker is slower at first (cold caches, the interpreter's first
        # specialisations); `evmpipe bench` and a node keep theirs: one untimed round
        for strategy in cpu:
            replay_blocks(native, len(records), strategy, state, pool)
        for _ in range(runs):
            for strategy, (master, worker) in cpu.items():
                replay = replay_blocks(native, len(records), strategy, state, pool)
                spans[strategy].append(worker_spans(replay.events, numbers))
                for block, extra in first_request_extra(replay.events, numbers).items():
                    firsts.setdefault(block, []).append(extra)
                if strategy == "declared":
                    senders.append(worker_spans(replay.events, {None}))  # type: ignore[arg-type]
                if strategy == "optimistic":
                    gaps.extend(_dispatch_gaps(replay.events))
                executes_kept[strategy].append([e for e in replay.events if e.stage == "execute" and e.block in numbers])
                master.append(replay.main_cpu)
                worker.append(replay.worker_cpu)
                if strategy == "optimistic":
                    walls.append(replay.wall)
        round_trips = _round_trips(pool, native)
    trips = round_trips.walls
    txs = sum(len(r.txs) for r in records) or 1
    executed = sum(g.total for g in graphs)
    system = sum(r.begin_seconds + r.finish_seconds for r in records)
    recover = sum(r.recover_seconds for r in records)
    predicting = sum(r.predict_seconds for r in records)
    sampled = sum(g.seconds[i] for r, g in zip(records, graphs) for i in r.sampled)
    worker_floor = sum(r.decode_seconds + r.pack_seconds for r in records)
    validate_floor = sum(r.validate_seconds for r in records)
    # a request's latency: a low percentile of idle round trips (on a busy machine
    # most round trips also wait for a core, which the simulation adds itself)
    # every request costs CPU besides its transactions, measured on the same round
    # trips: the master's (it sends and takes the reply) and the worker's (less the
    # one recovery); at one worker it is inside the per-transaction figures below,
    # with more workers there are more requests (declared splits each chunk by worker)
    request_worker = max(0.0, round_trips.worker_cpu - recover / txs)
    request_master = round_trips.master_cpu
    message = max(0.0, _percentile(trips, 0.2) - recover / txs - request_worker)
    # a worker waits between its requests on a block while the master takes the
    # reply (reading, unpacking, on threads that wait for the interpreter lock) and
    # sends the next: per transaction
    reply_per_tx = statistics.median(w for _, w, _ in spans["optimistic"]) / txs
    # prefetch's sender recovery on the workers (declared), per transaction: the
    # requests' wall time less the messages, at least the recovery itself
    senders_per_tx = max(recover, statistics.median(b - r * message for b, _, r in senders)) / txs if senders else recover / txs
    # the master's work on a block before its first chunk reaches a worker (building
    # the request: the block, the uncommitted diffs)
    block_head = max(0.0, statistics.median(gaps) - message) if gaps else 0.0
    # a worker's first request on a block takes in the state changed since its last
    # block: at one worker once per block (inside worker_per_tx as measured); every
    # worker used pays it, so it is played apart (`first_request_per_tx`)
    # the first block's: opening the database and cold caches, once per worker and run
    first_block = min(numbers) if numbers else None
    worker_start = max(0.0, statistics.median(firsts[first_block])) if first_block in firsts else 0.0
    first_request_per_tx = first_request_share({b: x for b, x in firsts.items() if b != first_block}, {r.number: len(r.txs) for r in records})
    detail: dict[str, float] = {"runs": float(runs), "recorded_execution": executed, "serial_main_cpu": serial, "system": system, "recover": recover, "round_trip_median": statistics.median(trips), "round_trip_p20": _percentile(trips, 0.2), "round_trip_min": min(trips), "optimistic_wall": statistics.median(walls)}
    overheads = {}
    for strategy, (master, worker) in cpu.items():
        master_cpu, worker_cpu = statistics.median(master), statistics.median(worker)
        again = sum(sum(s for s, a in zip(g.seconds, reexecuted(g, r.chains or None if strategy == "declared" else None)) if a) for r, g in zip(records, graphs))
        # the workers recover the senders: while they speculate (optimistic), or
        # asked by prefetch (declared); declared's sampled calls run twice and its
        # master predicts
        worker_extra = worker_cpu - executed - recover - (sampled if strategy == "declared" else 0.0)
        # the requests' wall time: what the worker's work took, waiting for a core
        # or a cold cache included (its CPU time misses that); less the
        # transactions, the messages, and the senders (optimistic) or the sampled
        # calls (declared)
        busy = statistics.median(b - r * message for b, _, r in spans[strategy])
        # the requests at one worker: on the blocks, and prefetch's sender recovery (declared)
        requests = statistics.median(r for _, _, r in spans[strategy])
        master_requests = requests + (statistics.median(r for _, _, r in senders) if strategy == "declared" and senders else 0.0)
        worker_wall_extra = busy - executed - (recover if strategy == "optimistic" else sampled)
        master_extra = master_cpu - serial - system - again - (predicting if strategy == "declared" else 0.0)
        overheads[strategy] = Overheads(
            worker_per_tx=max(worker_floor / txs, max(worker_wall_extra, worker_extra, worker_floor) / txs - first_request_per_tx - (worker_start + request_worker * requests) / txs),
            worker_speed=1.0,
            message=message,
            reply_per_tx=reply_per_tx,
            senders_per_tx=senders_per_tx,
            validate_per_tx=max(master_extra - request_master * master_requests, validate_floor) / txs,
            block_head=block_head,
            predict_per_tx=predicting / txs if strategy == "declared" else 0.0,
            first_request_per_tx=first_request_per_tx,
            worker_start=worker_start,
            request_master=request_master,
            request_worker=request_worker,
        )
        detail.update(
            {
                f"{strategy}_master_cpu": master_cpu,
                f"{strategy}_worker_cpu": worker_cpu,
                f"{strategy}_reexecution": again,
                f"{strategy}_validate_per_tx_by_difference": master_extra / txs,
                f"{strategy}_worker_per_tx_by_difference": worker_extra / txs,
                f"{strategy}_worker_per_tx_by_request_wall": worker_wall_extra / txs,
            }
        )
    detail.update(first_request_per_tx=first_request_per_tx, worker_start=worker_start, request_master_cpu=request_master, request_worker_cpu=request_worker, validate_per_tx_timed=validate_floor / txs, worker_per_tx_timed=worker_floor / txs, dispatch_gap_median=statistics.median(gaps) if gaps else 0.0, worker_idle_per_tx_median=reply_per_tx, idle_round_trip_p20_less_recovery=max(0.0, _percentile(trips, 0.2) - recover / txs))
    return Calibration(overheads, statistics.median(walls), detail, executes_kept)


def _dispatch_gaps(events: list) -> list[float]:
    """Per block run in parallel: from the start of its execute stage to the start of
    the first worker request on it."""
    starts = {e.block: e.start for e in events if e.stage == "execute"}
    first: dict[int, float] = {}
    for e in events:
        if e.stage.startswith("worker") and e.block in starts:
            first[e.block] = min(e.start, first.get(e.block, e.start))
    return [first[b] - starts[b] for b in first]


def first_request_extra(events: list, numbers: set[int]) -> dict[int, float]:
    """Per block run in parallel on one worker with three requests or more: how much
    longer its first request took than the median of the others (the first takes in
    the state changed since the worker's last block: the diffs, the cache, the
    database's new commit). The last request is left out of the median (a remainder)."""
    spans: dict[int, list[tuple[float, float]]] = {}
    for e in events:
        if e.stage.startswith("worker") and e.block in numbers:
            spans.setdefault(e.block, []).append((e.start, e.end))
    out = {}
    for block, mine in spans.items():
        if len(mine) < 3:
            continue
        mine.sort()
        took = [end - start for start, end in mine]
        out[block] = took[0] - statistics.median(took[1:-1] if len(took) > 3 else took[1:])
    return out


def first_request_share(extras: dict[int, list[float]], txs: dict[int, int]) -> float:
    """`first_request_extra` over runs (median per block, at least zero), per
    transaction of the blocks measured."""
    measured = [b for b in extras if txs.get(b)]
    if not measured:
        return 0.0
    return sum(max(0.0, statistics.median(extras[b])) for b in measured) / sum(txs[b] for b in measured)


def worker_spans(events: list, numbers: set[int]) -> tuple[float, float, int]:
    """Over the blocks `numbers` run in parallel: the wall time of the workers'
    requests (sent to reply taken), the time a worker waited between two of its
    requests on one block, and the number of requests."""
    spans: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for e in events:
        if e.stage.startswith("worker") and e.block in numbers:
            spans.setdefault((e.stage, e.block), []).append((e.start, e.end))
    busy = waited = 0.0
    requests = 0
    for mine in spans.values():
        mine.sort()
        busy += sum(end - start for start, end in mine)
        waited += sum(max(0.0, start - end) for (_, end), (start, _) in zip(mine, mine[1:]))
        requests += len(mine)
    return busy, waited, requests


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


def _round_trips(pool: object, native: str) -> RoundTrips:
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
        return RoundTrips([0.0], 0.0, 0.0)

    async def trips() -> RoundTrips:
        out = []
        cpu, workers = time.process_time(), pool.cpu_seconds  # type: ignore[attr-defined]
        for _ in range(ROUND_TRIPS):
            started = time.perf_counter()
            await pool.recover_senders(schedule.to_dict(), header_rlp, encoded[:1])  # type: ignore[attr-defined]
            out.append(time.perf_counter() - started)
        return RoundTrips(out, (time.process_time() - cpu) / ROUND_TRIPS, (pool.cpu_seconds - workers) / ROUND_TRIPS)  # type: ignore[attr-defined]

    async def measure() -> RoundTrips:
        session = getattr(pool, "session", None)  # pools that serve one trio run at a time
        if session is None:
            return await trips()
        async with session():
            return await trips()

    return trio.run(measure)


@dataclass
class RoundTrips:
    """`ROUND_TRIPS` one-transaction requests: each one's wall time, and per request
    the CPU of this process (sending, waiting, taking the reply: the thread hops,
    packing, the event loop) and of the worker (the request's whole work, one
    sender recovery included)."""

    walls: list[float]
    master_cpu: float
    worker_cpu: float


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
