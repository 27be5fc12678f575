"""Simulated schedules of one block: what N workers would give, per strategy.

Three schedulers, each over the block's measured transaction times and dependency
graph (`evmpipe.analyze.graph`):

- `ideal`: a list scheduler that knows the graph (critical-path priority), with no
  overhead at all: each transaction starts when a worker is free and everything it
  depends on has finished. The block's serial work (decoding, merkleization,
  commit) still counts; sender recovery is spread over the workers.
- `optimistic`: evmpipe's optimistic strategy as built (`execution/strategies.py`,
  `execution/workers.py`): every transaction is speculated in chunks handed out
  round-robin in block order (four per worker); the master validates in block
  order as each chunk comes back, and executes again, itself, every transaction
  with a dependency.
- `declared`: evmpipe's declared strategy: the predicted chains go to workers whole,
  longest first to the least loaded, each chunk split by worker; a transaction is
  executed again when it depends on one in another chain (or on one executed again).

The master and the workers are processes on `cores` cores: while more of them have
work than there are cores, each runs at cores/runnable of full speed (processor
sharing). `load` adds that many busy processes of others (a shared machine): they
slow the sequential run too, which has one process. The costs that are not transaction execution are `Overheads`, measured by
`evmpipe.analyze.calibrate`.
"""
from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass, field

from evmpipe.analyze import flow
from evmpipe.analyze.graph import Graph, bottom_levels
from execution.strategies import AutoPolicy, assign_workers
from execution.workers import CHUNKS_PER_WORKER, MIN_TXS_PER_WORKER

WORKER_COUNTS = (1, 2, 4, 8, 16, 32, 64)
STRATEGIES = ("optimistic", "declared", "auto", "ideal")
_EPS = 1e-12


@dataclass(frozen=True)
class Overheads:
    """What evmpipe's parallel strategies cost beyond executing transactions, in
    seconds (`evmpipe.analyze.calibrate` measures them)."""

    worker_per_tx: float = 0.0  # a worker, per transaction: decoding, packing the result (sender recovery is the block's `recover`)
    worker_speed: float = 1.0  # a worker's execution time over the master's sequential time
    message: float = 0.0  # one chunk's round trip to a worker (latency, no CPU)
    senders_per_tx: float = 0.0  # a worker, per transaction, recovering senders for prefetch (0: the recorded recovery)
    reply_per_tx: float = 0.0  # per transaction of a chunk: latency before its worker takes the next request (the reply handed through the master)
    validate_per_tx: float = 0.0  # the master, per transaction: unpacking, comparing reads, applying writes, the receipt
    block_head: float = 0.0  # the master, per block, before speculation starts
    predict_per_tx: float = 0.0  # the master, declared only: predicting and chaining
    first_request_per_tx: float = 0.0  # a worker, per block it takes part in: its first request's extra time (taking in the state changed since its last block), per transaction of the block
    worker_start: float = 0.0  # a worker, once per run: its first request's extra time (opening the database, cold caches)
    request_master: float = 0.0  # the master, per request to a worker: sending it, waiting on it, taking the reply (CPU)
    request_worker: float = 0.0  # a worker, per request: taking it in and replying, besides its transactions (CPU)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class BlockModel:
    """One block as the simulation sees it."""

    graph: Graph
    serial: float = 0.0  # sequential: the block's work outside its transactions (decoding, checks, roots, commit)
    recover: float = 0.0  # sender recovery of the block's transactions
    parallel_serial: float | None = None  # the same work in the parallel strategies' master (None: `serial` less `recover`)
    chains: list[int] = field(default_factory=list)  # declared: chain id per transaction
    sampled: list[int] = field(default_factory=list)  # declared: transactions speculated first to learn from
    system: float = 0.0  # the system work before and after the transactions (part of `serial`)
    pre: float = 0.0  # the part of `serial` in prefetch, besides sender recovery (decoding, checks, reading state ahead)
    gas: int = 0  # the header's gas used (`auto` tells plain transfers by it)
    learned: int = 0  # transactions the predictor learned from after the block (`auto` reads it)

    @property
    def master_serial(self) -> float:
        return self.serial - self.recover if self.parallel_serial is None else self.parallel_serial

    @property
    def post(self) -> float:
        """The part of `serial` after execution: the validate stage, merkleization, commit."""
        return max(0.0, self.serial - self.recover - self.system - self.pre)


def sequential_time(block: BlockModel) -> float:
    return block.serial + block.graph.total


def reexecuted(graph: Graph, chains: list[int] | None = None) -> list[bool]:
    """Which transactions in-order validation executes again: those with a
    dependency on an earlier transaction (or on the system writes) that their
    speculation did not see. With `chains`, a dependency inside a chain is seen,
    unless the transaction depended on was itself executed again."""
    out: list[bool] = []
    for i, preds in enumerate(graph.preds):
        if chains is None:
            again = bool(preds) or bool(graph.system[i])
        else:
            again = bool(graph.system[i]) or any(chains[j] != chains[i] or out[j] for j in preds)
        out.append(again)
    return out


def list_schedule(graph: Graph, workers: int, extra: float = 0.0) -> float:
    """Makespan of the graph on `workers` with critical-path priority; every
    transaction costs its time plus `extra`."""
    n = graph.size
    if not n:
        return 0.0
    seconds = [s + extra for s in graph.seconds]
    level = bottom_levels(Graph(seconds, graph.preds, graph.system))
    waiting = [len(p) for p in graph.preds]
    succs = graph.succs()
    ready = [(-level[i], i) for i in range(n) if not waiting[i]]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    now, idle, done = 0.0, workers, 0
    while done < n:
        while ready and idle:
            _, i = heapq.heappop(ready)
            heapq.heappush(running, (now + seconds[i], i))
            idle -= 1
        now, i = heapq.heappop(running)
        idle += 1
        done += 1
        for k in succs[i]:
            waiting[k] -= 1
            if not waiting[k]:
                heapq.heappush(ready, (-level[k], k))
    return now


def ideal_time(block: BlockModel, workers: int) -> float:
    n = block.graph.size
    extra = block.recover / n if n else 0.0
    return block.master_serial + list_schedule(block.graph, workers, extra)


def _parts_round_robin(n: int, workers: int) -> list[tuple[int, list[int]]]:
    """`execution.workers.WorkerPool.start_speculation` without affinity."""
    used = max(1, min(workers, n // MIN_TXS_PER_WORKER))
    chunks = max(1, min(n, used * CHUNKS_PER_WORKER))
    size = -(-n // chunks)
    return [(number % used, list(range(start, min(n, start + size)))) for number, start in enumerate(range(0, n, size))]


def _parts_by_affinity(affinity: list[int], workers: int) -> list[tuple[int, list[int]]]:
    n = len(affinity)
    chunks = max(1, min(n, workers * CHUNKS_PER_WORKER))
    size = -(-n // chunks)
    parts = []
    for start in range(0, n, size):
        for worker in range(workers):
            mine = [i for i in range(start, min(n, start + size)) if affinity[i] == worker]
            if mine:
                parts.append((worker, mine))
    return parts


def optimistic_time(block: BlockModel, workers: int, cores: float, overheads: Overheads, load: float = 0.0) -> float:
    n = block.graph.size
    if not n:
        return sequential_time(block)
    parts = _parts_round_robin(n, workers)
    again = reexecuted(block.graph)
    # the workers recover the senders of their chunks while they speculate
    own = Overheads(**{**overheads.to_dict(), "worker_per_tx": overheads.worker_per_tx + block.recover / n})
    makespan = _simulate(block.graph.seconds, parts, again, overheads.block_head, workers, cores, own, load=load)
    return block.master_serial + makespan


def declared_time(block: BlockModel, workers: int, cores: float, overheads: Overheads, load: float = 0.0) -> float:
    n = block.graph.size
    if not n:
        return sequential_time(block)
    chains = block.chains or list(range(n))
    parts = _parts_by_affinity(assign_workers(chains, workers), workers)
    again = reexecuted(block.graph, chains)
    head = _declared_head(block, workers, overheads)
    # the senders are recovered first, by all workers (prefetch's round trip)
    makespan = _simulate(block.graph.seconds, parts, again, head, workers, cores, overheads, lead=block.recover / workers, load=load)
    return block.master_serial + makespan


def _declared_head(block: BlockModel, workers: int, overheads: Overheads) -> float:
    """The master's work before declared's speculation starts: predicting and
    chaining, and for functions not learned yet one short round trip of sampled calls."""
    head = overheads.block_head + overheads.predict_per_tx * block.graph.size
    if block.sampled:
        per_worker = -(-len(block.sampled) // workers)
        head += overheads.message + per_worker * overheads.worker_per_tx + sum(block.graph.seconds[i] for i in block.sampled) * overheads.worker_speed / min(workers, len(block.sampled))
    return head


def _simulate(seconds: list[float], parts: list[tuple[int, list[int]]], again: list[bool], head: float, workers: int, cores: float, ov: Overheads, lead: float = 0.0, load: float = 0.0) -> float:
    """The master and the workers on `cores` cores (processor sharing); returns the
    time the master has validated the last transaction.

    A worker's queue alternates a message (latency: uses no core) and the chunk's
    work; the master's work is the head, then per transaction the validation (and
    the execution again where `again`), each waiting for its chunk. `lead`: work
    each worker does before its first chunk."""
    part_of = {}
    for number, (_, members) in enumerate(parts):
        for i in members:
            part_of[i] = number
    queues: list[list[tuple[str, float, int]]] = [[("cpu", lead, -1)] if lead > 0 else [] for _ in range(workers)]
    for number, (worker, members) in enumerate(parts):
        queues[worker].append(("delay", ov.message, -1))
        queues[worker].append(("cpu", sum(seconds[i] * ov.worker_speed + ov.worker_per_tx for i in members), number))
    position = [0] * workers
    remaining = [q[0][1] if q else 0.0 for q in queues]
    delivered = [False] * len(parts)
    n = len(seconds)
    next_tx = 0  # the master's next transaction to validate
    master_left = head  # work of the master's current item
    master_busy = True
    now = 0.0
    while True:
        if not master_busy:
            # take every transaction whose chunk is back, as one item
            work = 0.0
            while next_tx < n and delivered[part_of[next_tx]]:
                work += ov.validate_per_tx + (seconds[next_tx] if again[next_tx] else 0.0)
                next_tx += 1
            if work > 0.0:
                master_left, master_busy = work, True
            elif next_tx == n:
                return now
        running = sum(1 for w in range(workers) if position[w] < len(queues[w]) and queues[w][position[w]][0] == "cpu")
        running += 1 if master_busy else 0
        rate = min(1.0, cores / (running + load)) if running else 1.0
        step = float("inf")
        if master_busy:
            step = master_left / rate
        for w in range(workers):
            if position[w] < len(queues[w]):
                kind = queues[w][position[w]][0]
                step = min(step, remaining[w] / (rate if kind == "cpu" else 1.0))
        if step == float("inf"):  # nothing runs: cannot happen with a consistent plan
            raise RuntimeError("simulation stalled")
        now += step
        if master_busy:
            master_left -= step * rate
            if master_left <= _EPS:
                master_busy = False
                if next_tx == n:
                    return now
        for w in range(workers):
            if position[w] >= len(queues[w]):
                continue
            kind, _, number = queues[w][position[w]]
            remaining[w] -= step * (rate if kind == "cpu" else 1.0)
            if remaining[w] <= _EPS:
                if number >= 0:
                    delivered[number] = True
                position[w] += 1
                if position[w] < len(queues[w]):
                    remaining[w] = queues[w][position[w]][1]


def predicted_dependent(chains: list[int]) -> int:
    """Transactions in a declared chain of more than one (`DeclaredStrategy.schedule`)."""
    sizes: dict[int, int] = {}
    for chain in chains:
        sizes[chain] = sizes.get(chain, 0) + 1
    return sum(size for size in sizes.values() if size > 1)


def auto_decisions(blocks: list[BlockModel], workers: int) -> tuple[list[str], list[bool]]:
    """What `auto` runs each block as, in order: `execution.strategies.AutoPolicy`
    itself, fed what the recorded blocks would report (declared's and optimistic's
    re-executions from the graph, the predictor's chains and what it learned).
    `sequential:serial`: scheduled, then run sequentially (a long predicted chain).
    With the choices, the policy's `independent` after each number of blocks run
    (index 0: before any): prefetch reads it to decide whether the workers recover
    a block's senders ahead, and with blocks in flight it decides before the
    blocks just ahead of that one have run (`senders_ahead_at`)."""
    policy = AutoPolicy()
    out: list[str] = []
    independent = [policy.independent]
    for block in blocks:
        n = block.graph.size
        choice = policy.choose(workers, block.gas, n, False)
        if choice == "optimistic":
            policy.optimistic_ran(n, sum(reexecuted(block.graph)))
        elif choice == "declared":
            chains = block.chains or list(range(n))
            sizes: dict[int, int] = {}
            for chain in chains:
                sizes[chain] = sizes.get(chain, 0) + 1
            if policy.serial(max(sizes.values()), n):
                choice = "sequential:serial"
            else:
                policy.declared_ran(n, sum(reexecuted(block.graph, chains)), block.learned, predicted_dependent(chains))
        out.append(choice)
        independent.append(policy.independent)
    return out, independent


def senders_ahead_at(block: BlockModel, workers: int, independent: bool) -> bool:
    """`AutoPolicy.senders_ahead` for `block`, with the policy's `independent` as
    prefetch sees it when it reaches the block."""
    policy = AutoPolicy()
    policy.independent = independent
    return policy.senders_ahead(workers, block.gas, block.graph.size)


def auto_choices(blocks: list[BlockModel], workers: int) -> list[tuple[str, bool]]:
    """`auto_decisions`' choices, each with whether prefetch had the workers recover
    the senders ahead when it reached the block right after the one before had run
    (the pipeline's prefetch runs further ahead: `file_time` plays that)."""
    choices, independent = auto_decisions(blocks, workers)
    return [(choice, senders_ahead_at(block, workers, independent[k])) for k, (choice, block) in enumerate(zip(choices, blocks))]


def auto_block_time(choice: str, block: BlockModel, workers: int, cores: float, overheads: Overheads, senders_ahead: bool) -> float:
    """One block as `auto` runs it (`choice` from `auto_choices`). A block run
    sequentially whose senders the workers recovered ahead (`senders_ahead`) has the
    master's serial work and a round trip of recovery on the workers instead of
    recovering them itself; `sequential:serial` also predicted and sampled first."""
    if choice == "optimistic":
        return optimistic_time(block, workers, cores, overheads)
    if choice == "declared":
        return declared_time(block, workers, cores, overheads)
    if not senders_ahead:
        return sequential_time(block)
    head = overheads.message + block.recover / min(workers, cores)
    if choice == "sequential:serial":
        head += _declared_head(block, workers, overheads)
    return block.master_serial + head + block.graph.total


OverheadsArg = Overheads | dict[str, Overheads]


def block_time(strategy: str, block: BlockModel, workers: int, cores: float | None, overheads: OverheadsArg, load: float = 0.0) -> float:
    """Seconds for the block with `workers` workers on `cores` cores (None: as many
    cores as workers), beside `load` busy processes of others. The serial work
    outside execution runs in one process, as the sequential run does. `overheads`:
    one set for both strategies, or one per strategy."""
    if isinstance(overheads, dict):
        overheads = overheads.get(strategy) or next(iter(overheads.values()))
    cores = float(workers) if cores is None else cores
    alone = min(1.0, cores / (1.0 + load))  # the share of a core one process gets
    if strategy == "ideal":
        busy = min(1.0, cores / (workers + load))  # every worker busy, beside the others
        return block.master_serial / alone + (ideal_time(block, workers) - block.master_serial) / busy
    if strategy == "optimistic":
        return block.master_serial / alone + optimistic_time(block, workers, cores, overheads, load) - block.master_serial
    if strategy == "declared":
        return block.master_serial / alone + declared_time(block, workers, cores, overheads, load) - block.master_serial
    if strategy == "sequential":
        return sequential_time(block) / alone
    raise ValueError(f"unknown strategy {strategy!r}")


def plan_block(strategy: str, block: BlockModel, workers: int, overheads: Overheads, senders_ahead: bool = False) -> flow.BlockPlan:
    """The block's work as the pipeline runs it (`evmpipe.analyze.flow`):
    `sequential`, `optimistic`, `declared`, `ideal`, or one of `auto`'s choices
    (`sequential:...`, `optimistic`, with `senders_ahead` when prefetch had its
    workers recover the senders)."""
    graph, n = block.graph, block.graph.size
    if strategy.startswith("sequential") and (strategy == "sequential" or not senders_ahead):
        return flow.BlockPlan(pre=block.pre + block.recover, head=block.system + graph.total, post=block.post)
    if strategy.startswith("sequential"):  # auto: the workers recovered the senders ahead
        setup = _declared_head(block, workers, overheads) if strategy == "sequential:serial" else 0.0
        senders = _senders(block, workers, overheads)
        return flow.BlockPlan(pre=block.pre + _senders_master(senders, workers, overheads), senders=senders + (overheads.request_worker if senders else 0.0), setup=setup, head=block.system + graph.total, post=block.post, message=overheads.message)
    if not n:
        return flow.BlockPlan(pre=block.pre + block.recover, head=block.system, post=block.post)
    if strategy == "ideal":
        # the graph's list schedule on `workers`, as the work of one process: the
        # ideal scheduler's workers share the cores as one busy process would
        makespan = list_schedule(graph, workers, block.recover / n)
        return flow.BlockPlan(pre=block.pre, head=block.system, parts=[(0, makespan, list(range(n)))], validate=[0.0] * n, post=block.post)
    seconds = graph.seconds
    if strategy == "optimistic":
        again = reexecuted(graph)
        parts = _parts_round_robin(n, workers)
        setup = overheads.block_head
        if senders_ahead:  # auto: prefetch had the workers recover them; the chunks carry them
            per_tx, senders = overheads.worker_per_tx, _senders(block, workers, overheads)
        else:  # the workers recover the senders while they speculate
            per_tx, senders = overheads.worker_per_tx + block.recover / n, 0.0
    elif strategy == "declared":
        chains = block.chains or list(range(n))
        again = reexecuted(graph, chains)
        per_tx = overheads.worker_per_tx
        parts = _parts_by_affinity(assign_workers(chains, workers), workers)
        senders = _senders(block, workers, overheads)  # prefetch's round trip: the workers recover the senders
        setup = _declared_head(block, workers, overheads)
    else:
        raise ValueError(f"unknown strategy {strategy!r}")
    # each worker's first request on the block takes in the state changed since its
    # last one (`WorkerPool._diffs_for`, `_Worker._sync`): every worker used pays it
    first_request = overheads.first_request_per_tx * n
    firsts: dict[int, int] = {}  # worker -> its first chunk
    for number, (worker, _) in enumerate(parts):
        firsts.setdefault(worker, number)
    chunks = [(worker, overheads.request_worker + sum(seconds[i] * overheads.worker_speed + per_tx for i in members) + (first_request if firsts[worker] == number else 0.0), members) for number, (worker, members) in enumerate(parts)]
    validate = [overheads.validate_per_tx + (seconds[i] if again[i] else 0.0) for i in range(n)]
    for _, members in parts:  # the master's cost of each request, when its reply is taken
        validate[min(members)] += overheads.request_master
    return flow.BlockPlan(pre=block.pre + _senders_master(senders, workers, overheads), senders=senders + (overheads.request_worker if senders else 0.0), setup=setup, head=block.system, parts=chunks, validate=validate, post=block.post,
                          message=overheads.message, reply_per_tx=overheads.reply_per_tx)


def _senders_master(senders: float, workers: int, overheads: Overheads) -> float:
    """The master's cost of prefetch's sender recovery requests (one per worker)."""
    return overheads.request_master * workers if senders else 0.0


def _senders(block: BlockModel, workers: int, overheads: Overheads) -> float:
    """Each worker's share of prefetch's sender recovery request."""
    per_tx = overheads.senders_per_tx or (block.recover / block.graph.size if block.graph.size else 0.0)
    return per_tx * block.graph.size / max(1, min(workers, block.graph.size // MIN_TXS_PER_WORKER))


def file_time(strategy: str, blocks: list[BlockModel], workers: int, cores: float | None, overheads: OverheadsArg, load: float = 0.0) -> float:
    """Seconds for the blocks through the pipeline (`evmpipe.analyze.flow`), with
    `workers` workers on `cores` cores (None: as many as workers) beside `load`
    busy processes of others."""
    cores = float(workers) if cores is None else cores
    per = overheads if isinstance(overheads, dict) else {"optimistic": overheads, "declared": overheads}
    if strategy == "auto":
        choices, independent = auto_decisions(blocks, workers)

        def plan(k: int, ahead: bool) -> flow.BlockPlan:
            return plan_block(choices[k], blocks[k], workers, _overheads_for(per, "optimistic" if choices[k] == "optimistic" else "declared"), ahead)

        # prefetch decides on the senders when it reaches a block, from the blocks
        # executed by then
        return flow.run([plan(k, True) for k in range(len(blocks))], workers, cores, load, at_prefetch=lambda k, executed: plan(k, senders_ahead_at(blocks[k], workers, independent[executed])),
                        worker_start=_overheads_for(per, "declared").worker_start)
    plans = [plan_block(strategy, b, workers, _overheads_for(per, strategy)) for b in blocks]
    # the ideal scheduler has no overheads; sequential has no workers
    start = _overheads_for(per, strategy).worker_start if strategy in ("optimistic", "declared") else 0.0
    return flow.run(plans, workers if strategy != "sequential" else 1, cores, load, worker_start=start)


def _overheads_for(per: dict[str, Overheads], strategy: str) -> Overheads:
    return per.get(strategy) or next(iter(per.values()), Overheads())


def predict(blocks: list[BlockModel], overheads: OverheadsArg, worker_counts: tuple[int, ...] = WORKER_COUNTS, cores: float | None = None, load: float = 0.0) -> dict[str, dict[str, float]]:
    """Predicted speedup over sequential of the whole list of blocks: strategy ->
    worker count (a string, for JSON) -> speedup."""
    out: dict[str, dict[str, float]] = {}
    for strategy in STRATEGIES:
        out[strategy] = {}
        for workers in worker_counts:
            sequential = file_time("sequential", blocks, workers, cores, overheads, load)
            total = file_time(strategy, blocks, workers, cores, overheads, load)
            out[strategy][str(workers)] = sequential / total if total else 1.0
    return out


def load_from_available(cores: int, available: float) -> float:
    """Busy processes of others implied by `available` cores out of `cores` (what
    `cores` busy processes of ours got: cores × cores / (cores + load))."""
    if available >= cores or available <= 0:
        return 0.0
    return cores * cores / available - cores
