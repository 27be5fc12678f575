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
transaction (`speculate(hints=True)`), since the view may lag it.

Only the keys come back into prefetch (`read_sets.add_prerun`): they are read ahead
like any prediction. The pre-run's values, gas, logs and outcomes are never used: a
wrong key costs a wasted read, a missed one a read on demand, never a result.
"""
from __future__ import annotations

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


class PreRun:
    """One worker process (started by `open`, stopped by `close`) that pre-runs the
    chosen transactions of the blocks prefetch reads ahead."""

    def __init__(self, deadline: float = PRERUN_DEADLINE) -> None:
        self.pool = WorkerPool(1, request_deadline=deadline)
        self._run: object = None  # the trio run whose session the pool holds
        self.failures = 0
        self._packed = PackedOverlay()

    def open(self) -> PreRun:
        self.pool.__enter__()
        return self

    def close(self) -> None:
        self.pool.__exit__()

    async def _session(self) -> None:
        """The worker pool's per-run locks, opened in the first call of each trio run."""
        run = trio.lowlevel.current_root_task()
        if self._run is not run:
            self.pool._session = None  # an earlier run's, over
            await self.pool.session().__aenter__()
            self._run = run

    async def run(self, chain: ChainState, header: Any, encoded_txs: Sequence[bytes], senders: Sequence[bytes | None], prev_hashes: list[bytes], indices: Sequence[int]) -> list[SpecResult]:
        """The results of the `indices` transactions (and their senders' earlier ones)
        run on the committed state; empty when the worker failed (it has been
        replaced, and prefetch goes on without them)."""
        if not indices:
            return []
        await self._session()
        ran, chain_of = with_earlier(indices, senders if len(senders) == len(encoded_txs) else [None] * len(encoded_txs))
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
            txs=[(i, encoded_txs[i], senders[i] if senders else None, chain_of.get(i)) for i in ran],
            op="prerun",
        )
        failed = False
        try:
            async with trio.open_nursery() as nursery:
                stream = self.pool.start_speculation(nursery, request, label=header.block_number)
        except* WorkerFailure:
            failed = True
        if failed:
            self.failures += 1
            return []
        return [await stream.get(index) for index in ran]
