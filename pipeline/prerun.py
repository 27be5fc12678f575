"""The pre-run: a block's unpredicted calls run ahead on a worker process, for the keys
they touch (what geth's state prefetcher does).

The cheap predictions (`pipeline.read_sets`) know senders, recipients and the calls
whose (code, selector) a template has learned. What they cannot know is what a
contract creation's init code reads, or a function no executed block has called
yet. The pre-run finds those keys by running just those transactions (`chosen`) on
a worker process of its own (`execution.workers`, the parallel strategies' workers:
the EVM runs on the other core, the event loop only awaits its pipe), against the
committed state and the diffs of the blocks executed but not committed yet (the
block executing now is not waited for: a hint needs no exactness). Each
transaction runs alone, except that one sender's run in order, its earlier
transactions of the block included; the sender's nonce is taken from the
transaction (`speculate(hints=True)`), since the view may lag it. Prefetch starts
it as soon as a block is decoded (`PreRun.start`); the worker recovers the senders
(this process has not yet) and chains the transactions of each.

Only the keys come back into prefetch (`read_sets.add_prerun`): they are read ahead
like any prediction. The pre-run's values, gas, logs and outcomes are never used: a
wrong key costs a wasted read, a missed one a read on demand, never a result.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

import rlp
import trio

from execution.speculate import SpecResult
from execution.workers import BlockRequest, WorkerFailure, WorkerPool
from pipeline.chain import ChainState, PackedOverlay
from pipeline.read_sets import CodePredictor

#: a pre-run request slower than this is given up (the worker is replaced); prefetch
#: goes on without its keys
PRERUN_DEADLINE = 30.0
#: the auto rule (`wanted(None, ...)`; not the default, which is off) wants a state database at least this large
AUTO_MIN_BYTES = 256 << 20


def wanted(setting: bool | None, db_path: str | os.PathLike[str]) -> bool:
    """Whether to pre-run: `setting` when given; auto (None) is on with two or more
    cores over a state database of `AUTO_MIN_BYTES` or more. At 10M accounts on two
    cores it hid more of the I/O than the cheap predictions alone and served 99 % of
    reads from memory; over a small state (tests, the dev chain) its reads were
    cheap anyway, and starting its worker (importing py-evm) made a short replay
    about half as long again."""
    if setting is not None:
        return setting
    try:
        size = os.path.getsize(db_path)
    except OSError:
        return False
    return (os.cpu_count() or 1) >= 2 and size >= AUTO_MIN_BYTES


def chosen(transactions: Sequence[Any], predictor: CodePredictor) -> list[int]:
    """The transactions worth a pre-run: creations with init code, and calls with data
    whose (code, selector) has no learned template yet. Plain transfers and learned
    calls are predicted without one."""
    return [i for i, tx in enumerate(transactions) if tx.data and (not tx.to or predictor.wants(tx))]


def with_earlier(indices: Sequence[int], senders: Sequence[bytes | None]) -> tuple[list[int], dict[int, int]]:
    """`indices` with the earlier transactions of their senders, in block order, and
    the chain of each transaction whose sender sends more than one: they run in
    order, so that a later one sees the nonce (and balance) the earlier ones left."""
    last: dict[bytes, int] = {}
    for index in indices:
        sender = senders[index]
        if sender is not None:
            last[sender] = max(index, last.get(sender, -1))
    chosen_set = set(indices)
    out = [i for i, sender in enumerate(senders) if i in chosen_set or (sender is not None and i <= last.get(sender, -1))]
    first: dict[bytes, int] = {}
    count: dict[bytes, int] = {}
    for index in out:
        sender = senders[index]
        if sender is not None:
            first.setdefault(sender, index)
            count[sender] = count.get(sender, 0) + 1
    chains = {i: first[s] for i in out if (s := senders[i]) is not None and count[s] > 1}
    return out, chains


class Started:
    """A block's pre-run under way on the worker (`PreRun.start`): `done` is set once
    `results` are in (None: the worker failed; empty: nothing to pre-run)."""

    def __init__(self, indices: list[int], block: bytes) -> None:
        self.indices = indices
        self.block = block  # the header's hash
        self.results: list[SpecResult] | None = []
        self.done = trio.Event()
        self.scope = trio.CancelScope()  # cancelled when its block fails before the keys are used
        self.began = time.perf_counter()
        self.ended = self.began

    def counts(self, waited: float) -> dict[str, Any]:
        """For the prefetch event: transactions pre-run, the pre-run's time, how long
        prefetch waited for it after its cheap reads (from `waited`), and a failure."""
        out: dict[str, Any] = {
            "prerun_txs": len(self.indices),
            "prerun_ms": round((self.ended - self.began) * 1000, 3),
            "prerun_wait_ms": round(max(0.0, self.ended - waited) * 1000, 3),
        }
        if self.results is None:
            out["prerun_failed"] = 1
        return out


class PreRun:
    """One worker process that pre-runs the chosen transactions of the blocks prefetch
    reads ahead. It is started (on a thread) by the first block with something to
    pre-run, not with the stage: a run whose blocks hold no creation or unlearned
    call (most tests' replays) never pays for a process that imports py-evm. It
    outlives trio runs; `close` (with the store) stops it."""

    def __init__(self, deadline: float = PRERUN_DEADLINE) -> None:
        self.pool = WorkerPool(1, request_deadline=deadline)
        self.failures = 0  # requests that failed (the worker died or passed the deadline; replaced)
        self._packed = PackedOverlay()
        self._started = False
        self._start_lock = threading.Lock()

    def _start_worker(self) -> None:
        with self._start_lock:
            if not self._started:
                self.pool.__enter__()
                self._started = True

    def close(self) -> None:
        with self._start_lock:
            if self._started:
                self.pool.__exit__()
                self._started = False

    def start(self, nursery: trio.Nursery, chain: ChainState, header: Any, encoded_txs: Sequence[bytes], senders: Sequence[bytes | None], indices: list[int]) -> Started:
        """Start pre-running the `indices` transactions of a block (`run`; `senders`
        may be empty: the worker recovers them) in `nursery`; prefetch awaits `done`
        after its cheap reads, so the worker runs while this process checks the
        block and reads the cheap predictions."""
        started = Started(indices, header.hash)
        nursery.start_soon(self._run_started, chain, header, encoded_txs, senders, started)
        return started

    async def _run_started(self, chain: ChainState, header: Any, encoded_txs: Sequence[bytes], senders: Sequence[bytes | None], started: Started) -> None:
        try:
            with started.scope:
                if started.indices:
                    prev_hashes = await trio.to_thread.run_sync(chain.ancestor_hashes, header.parent_hash)
                    started.results = await self.run(chain, header, encoded_txs, senders, prev_hashes, started.indices)
        finally:
            started.ended = time.perf_counter()
            started.done.set()

    async def run(self, chain: ChainState, header: Any, encoded_txs: Sequence[bytes], senders: Sequence[bytes | None], prev_hashes: list[bytes], indices: Sequence[int]) -> list[SpecResult] | None:
        """The results of the `indices` transactions (and their senders' earlier ones)
        run on the committed state; None when the worker failed (it has been
        replaced, `failures` counts it, and prefetch goes on without them). Without
        `senders` (one per transaction) the worker recovers them and chains the
        transactions itself (`with_earlier`): the pre-run can start before this
        process has recovered them."""
        if not indices:
            return []
        if not self._started:
            await trio.to_thread.run_sync(self._start_worker)
        self.pool.run_session()  # the worker's lock for this trio run (a pool outlives runs)
        if len(senders) == len(encoded_txs):  # chained here
            ran, chain_of = with_earlier(indices, senders)
            txs = [(i, encoded_txs[i], senders[i], chain_of.get(i)) for i in ran]
            recover: list[int] | None = None
        else:  # the worker recovers the senders and chains them
            txs = [(i, encoded_txs[i], None, None) for i in range(max(indices) + 1)]
            recover = list(indices)
        diffs = self._packed.diffs(chain)
        request = BlockRequest(
            db_path=str(chain.store.path),
            db_id=chain.store.database_id,
            generation=chain.generation,
            committed=chain.head_number,
            diffs=diffs,
            schedule=chain.schedule.to_dict(),
            header_rlp=rlp.encode(header),
            prev_hashes=prev_hashes,
            txs=txs,
            op="prerun",
            chosen=recover,
        )
        try:
            return await self.pool.request_whole(request, label=header.block_number)
        except WorkerFailure:
            self.failures += 1
            return None
