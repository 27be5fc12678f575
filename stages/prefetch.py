"""Prefetch: decode, check what needs no execution, recover senders, warm the cache.

Reads: the block's RLP. Adds: `Prefetched` (the block, its fork, parent, senders,
the transactions' encodings, the ancestor hashes BLOCKHASH reads, the keys warmed).
Writes to disk: nothing (it fills the store's read cache). Unwind: nothing to undo.

Header checks and stateless transaction checks run here, before execution, so that
an invalid block costs no EVM time. The warm-up reads what the block is predicted
to read (`pipeline.read_sets`: senders, recipients, fee recipient, withdrawals,
access lists, EIP-7702 authorities, the learned templates of contract calls, keys
recent blocks read) and their code on a pool of reader threads with their own
SQLite connections (`state.readers`), then, once the block is handed on, the trie
nodes on the paths of the keys it is predicted to write (`state.warm.PathWarm`,
walked one block after another by a task of the stage's own, in the nursery it
holds while it runs), while the blocks before it execute (the channels between
stages let prefetch run `capacity` blocks ahead). With
`--prefetch-run` the transactions no cheap source predicts run ahead on a worker
process meanwhile (`pipeline.prerun`), and the keys they touched are read too. Every read that
can reach SQLite runs on a thread; the event loop only awaits. Predictions only
choose what is read early: a wrong one wastes a read, a missing one leaves a read
to execution; results never depend on them.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import rlp
import trio
from eth.abc import BlockAPI
from eth.vm.forks.london import LondonVM
from eth_hash.auto import keccak

from execution.checks import (
    check_block_blob_gas,
    check_transaction_static,
    check_withdrawals,
    validate_header,
)
from execution.decode import decode_block_and_transactions, mark_senders, skip_signature_check
from execution.forks import VMClass, header_field
from execution.senders import recover_sender
from execution.strategies import ExecutionStrategy
from pipeline.block import InFlightBlock, Prefetched
from pipeline.chain import ChainState
from pipeline.events import EventLog, StageEvent
from pipeline.errors import BlockError, InvalidBlock, InvalidTransaction, TxError
from pipeline.prerun import PreRun, Started, chosen, wanted
from pipeline.read_sets import CodePredictor, HotKeys, ReadSet, add_prerun, add_templates, executed_keys, predict_reads
from pipeline.stage import BaseStage, StageId
from state.account import BLANK_ROOT
from state.readers import DEFAULT_THREADS, ReaderPool
from state.trie import ordered_trie_root
from state.warm import PathWarm, WarmCounts, memory_nodes, walk_predicted, warm_state

#: blocks at least this large are decoded and checked on a thread (about 30 transactions)
OFF_LOOP_BYTES = 4096
T = TypeVar("T")
Runner = Callable[..., Awaitable[Any]]
MAX_OMMERS = 2
MAX_OMMER_DEPTH = 6


#: executed blocks kept to learn from (templates, hot keys) once their execution is done
LEARN_BEHIND = 8
#: trie-path walks waiting for the walker; a block that finds the queue full gets none
#: (merkleize walks its paths)
QUEUED_WALKS = 4
#: walks kept for their trace events ("path walk")
WALKS_KEPT = 4096


@dataclass(frozen=True)
class PrefetchOptions:
    """`--no-prefetch` (enabled False: nothing is read ahead, every read on demand),
    `--prefetch-threads`, whether trie paths are warmed too, and `--prefetch-run`
    (the transactions no cheap source predicts pre-run on a worker process)."""

    enabled: bool = True
    threads: int = DEFAULT_THREADS
    trie_paths: bool = True
    run: bool | None = False  # None: auto (`pipeline.prerun.wanted`)


def open_reader_pool(chain: ChainState, options: PrefetchOptions) -> ReaderPool | None:
    """The pool prefetch and merkleize read through, closed with the store; None when
    prefetch is off or the store is not a file others can open (an in-memory one)."""
    store = chain.store
    if not options.enabled or not Path(store.path).is_file():
        return None
    pool = ReaderPool(store.path, options.threads)
    store.closers.append(pool.close)
    return pool


def open_prerun(chain: ChainState, options: PrefetchOptions, pool: ReaderPool | None) -> PreRun | None:
    """The pre-run's worker process (`--prefetch-run`), stopped with the store; None
    when not wanted, or without a reader pool (prefetch off, or an in-memory store no
    worker can open)."""
    if pool is None or not wanted(options.run, chain.store.path):
        return None
    prerun = PreRun()
    chain.store.closers.append(prerun.close)
    return prerun


class PrefetchStage(BaseStage):
    id = StageId.PREFETCH

    def __init__(self, chain: ChainState, strategy: ExecutionStrategy | None = None, options: PrefetchOptions = PrefetchOptions(), pool: ReaderPool | None = None) -> None:
        self.chain = chain
        self.strategy = strategy
        self.options = options
        self.pool = pool
        self.prerun = open_prerun(chain, options, pool)
        self.predictor = CodePredictor()  # taught by every executed block, whatever the strategy
        self.hot = HotKeys()
        self._behind: deque[InFlightBlock] = deque()
        self.walks: deque[PathWarm] = deque(maxlen=WALKS_KEPT)
        self._walk_queue: trio.MemorySendChannel[PathWarm] | None = None  # open while the stage runs
        self._tasks: trio.Nursery | None = None  # the stage's nursery while it runs (pre-runs)
        self._pending: Started | None = None  # the pre-run started at decode, for `_warm`

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The trie-path walker, for as long as the stage runs: it walks the queued
        blocks' paths one after another, and finishes those still queued when the
        stage's input has ended (merkleize takes back any it reaches first). None
        without a reader pool."""
        if self.pool is None or not (self.options.trie_paths or self.prerun is not None):
            yield
            return
        send, receive = trio.open_memory_channel[PathWarm](QUEUED_WALKS)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._walker, receive)
            self._walk_queue = send
            self._tasks = nursery  # a block's pre-run starts here as soon as it is decoded
            try:
                yield
            finally:
                self._walk_queue = self._tasks = None
                if self._pending is not None:  # its block failed: no one will read its keys
                    self._pending.scope.cancel()
                send.close()

    async def _walker(self, queue: trio.MemoryReceiveChannel[PathWarm]) -> None:
        """The walks are hints: one that fails is counted (the ledger's
        `background_failures`: events, summary, /metrics) and merkleize walks its
        paths; the block never fails for it."""
        assert self.pool is not None
        store = self.chain.store
        async with queue:
            async for paths in queue:
                try:
                    await walk_predicted(self.pool, store, paths, memory_nodes(self.chain.overlay))
                except Exception as error:
                    paths.error = repr(error)[:200]
                    store.prefetch.background_failures += 1

    async def execute(self, item: InFlightBlock) -> None:
        chain = self.chain
        # A large block's CPU work (decoding, signatures, stateless checks) runs on a
        # thread: the GIL is shared all the same, but the event loop gets it back
        # every few milliseconds, so the execute stage keeps its workers fed meanwhile.
        # A small block's is cheaper than the thread hop (about 0.1 ms).
        run = trio.to_thread.run_sync if len(item.input.rlp) >= OFF_LOOP_BYTES else _run_here
        block, vm_class, encoded_txs = await run(decode_block_and_transactions, chain.schedule, item.input.rlp)
        header = block.header
        chain.check_ancestry(header.parent_hash)
        parent = chain.known_header(header.parent_hash) or await trio.to_thread.run_sync(chain.header, header.parent_hash)
        if parent is None:
            raise InvalidBlock(BlockError.UNKNOWN_PARENT, f"parent 0x{header.parent_hash.hex()} is not a known block")
        await self._start_prerun(block, encoded_txs)
        validate_header(vm_class, header, parent[0], parent[1])
        await (trio.to_thread.run_sync if block.uncles else _run_here)(validate_body, chain, block)
        check_withdrawals(header, getattr(block, "withdrawals", None))
        senders = await self._senders(block, encoded_txs, run)
        await run(check_transactions_static, vm_class, block, chain.chain_id)
        check_block_blob_gas(vm_class, header)
        chain.remember(header, vm_class, frozenset(u.hash for u in block.uncles))
        prev_hashes = await trio.to_thread.run_sync(chain.ancestor_hashes, header.parent_hash)
        transactions_root, withdrawals_root = await run(body_roots, block, encoded_txs)
        counts, paths = await self._warm(block, senders, encoded_txs) if self.options.enabled else ({}, None)
        item.prefetched = Prefetched(block, vm_class, parent[0], encoded_txs, senders, prev_hashes, transactions_root, withdrawals_root, counts.get("predicted", 0), paths)
        item.count("prefetch", txs=len(block.transactions), **counts)
        self._behind.append(item)

    async def _senders(self, block: BlockAPI, encoded_txs: list[bytes], run: Runner) -> list[bytes | None]:
        """Recovered here, or by the strategy's workers (for the blocks ahead while the
        current one executes), or left to the workers that will speculate on them
        (an empty list)."""
        strategy = self.strategy
        if strategy is None or not strategy.recovers_senders:
            here: list[bytes | None] = await run(recover_senders, block, encoded_txs)
            return here
        for tx in block.transactions:
            skip_signature_check(tx)
        if not block.transactions:
            return []
        recovered = await strategy.recover_senders(self.chain, block.header, encoded_txs)
        if recovered is None:
            return []
        mark_senders(block.transactions, recovered)
        return recovered

    async def _warm(self, block: BlockAPI, senders: list[bytes | None], encoded_txs: list[bytes]) -> tuple[dict[str, Any], PathWarm | None]:
        """Predict the block's reads and writes, read what is not cached on the reader
        pool (and what the pre-run touched, when it runs), then queue the walk of the
        predicted writes' trie paths; the counts for its event, and the walk."""
        started = time.perf_counter()
        store = self.chain.store
        store.prefetch.expire(self.chain.head_number)  # keys for committed blocks never read: wasted
        await self._learn()
        number = block.header.block_number
        reads = predict_reads(block, senders, self.hot)
        counts = WarmCounts()
        pool = self.pool
        if pool is None:  # an in-memory store: its own connection, on a thread
            await trio.to_thread.run_sync(_read_here, store, reads.accounts, reads.slots)
            return {"predicted": len(reads)}, None
        out: dict[str, Any] = {}
        prerun, self._pending = self._pending, None
        if prerun is not None and prerun.block != block.header.hash:  # another block's, whose keys no one will read
            prerun.scope.cancel()
            prerun = None
        async with trio.open_nursery() as nursery:
            if self.prerun is not None and prerun is None:  # not started at decode (no stage nursery): now
                prerun = self.prerun.start(nursery, self.chain, block.header, encoded_txs, senders, chosen(block.transactions, self.predictor))
            known = await warm_state(pool, store, number, reads.accounts, reads.slots, counts)
            # Then what the called code's templates name (their code hashes are known now).
            code_of: dict[bytes, bytes] = {}
            for tx in block.transactions:
                called = known.get(tx.to) if tx.to else None
                if called is not None:
                    code_of[tx.to] = called.code_hash
            await self._read_more(reads, known, counts, number, add_templates, block, senders, self.predictor, code_of)
            waited = time.perf_counter()
        paths = None
        if self.options.trie_paths and store.layout.layout == "flat":
            # Queued before the pre-run's keys are awaited and read, so that the walk
            # gets that much more head start on merkleize (the pre-run's own writes,
            # mostly new accounts, are left to merkleize's walk).
            paths = self._queue_walk(number, reads, known)
            if paths is None:
                out["path_walk_skipped"] = 1
        if prerun is not None:  # on the worker while the above ran
            await prerun.done.wait()
            out.update(prerun.counts(waited))
            if prerun.results is None:
                store.prefetch.prerun_failures += 1
            if store.prefetch.prerun_failures:
                out["prerun_failures"] = store.prefetch.prerun_failures
            await self._read_more(reads, known, counts, number, add_prerun, prerun.results or [])
        out.update(counts.as_counts())
        out.update({f"from_{source}": n for source, n in reads.sources.items()})
        if store.prefetch.background_failures:
            out["background_failures"] = store.prefetch.background_failures
        out["warm_ms"] = round((time.perf_counter() - started) * 1000, 3)
        out["lead_blocks"] = number - self.chain.head_number - 1
        return out, paths

    def _queue_walk(self, number: int, reads: ReadSet, known: dict[bytes, Any]) -> PathWarm | None:
        """The trie paths of the predicted writes, for the walker: a round of reads per
        trie level, every node decoded in Python, about a block's time, so it runs
        after the block is handed on (holding the block for it made prefetch the
        slowest stage, setting the pace of the whole pipeline). None when the queue
        is full or the stage is not running: merkleize walks those paths itself."""
        slots = []
        for address, slot in reads.written_slots:
            account = known.get(address)
            storage_root = account.storage_root if account is not None else BLANK_ROOT
            if storage_root != BLANK_ROOT:
                slots.append((address, storage_root, slot))
        paths = PathWarm(number, frozenset(reads.written_accounts), slots)
        if self._walk_queue is None:
            return None
        try:
            self._walk_queue.send_nowait(paths)
        except trio.WouldBlock:
            return None
        self.walks.append(paths)
        return paths

    async def _start_prerun(self, block: BlockAPI, encoded_txs: list[bytes]) -> None:
        """Start the block's pre-run (`--prefetch-run`) on the worker as soon as it is
        decoded, in the stage's nursery: the worker recovers the senders it needs and
        runs while this process checks the block, recovers the senders and reads the
        cheap predictions (about as long as the pre-run, at 1M-10M accounts); `_warm`
        awaits it. Started after the senders instead (chained here), prefetch took
        1.0-1.2 s per block at 1M instead of 0.74-0.84. A pre-run whose block failed
        before `_warm` is cancelled here."""
        if self.prerun is None or self._tasks is None:
            return
        if self._pending is not None:
            self._pending.scope.cancel()
        await self._learn()  # the templates learned so far decide which calls need it
        self._pending = self.prerun.start(self._tasks, self.chain, block.header, encoded_txs, [], chosen(block.transactions, self.predictor))

    async def _read_more(self, reads: ReadSet, known: dict[bytes, Any], counts: WarmCounts, number: int, add: Callable[..., None], *args: Any) -> None:
        """Add keys to `reads` (`add(reads, *args)`) and read those it did not hold."""
        assert self.pool is not None
        before = (set(reads.accounts), set(reads.slots))
        add(reads, *args)
        more_accounts, more_slots = reads.accounts - before[0], reads.slots - before[1]
        if more_accounts or more_slots:
            known.update(await warm_state(self.pool, self.chain.store, number, more_accounts, more_slots, counts))

    async def _learn(self) -> None:
        """Teach the predictor (when it is this stage's) and the hot set from the
        blocks prefetched before whose execution is done."""
        ready = []
        while self._behind and (self._behind[0].executed is not None or self._behind[0].error is not None):
            done = self._behind.popleft()
            if done.executed is not None and done.prefetched is not None:
                ready.append(done)
        while len(self._behind) > LEARN_BEHIND:  # blocks that will not execute (a failure upstream)
            self._behind.popleft()
        if ready:
            await trio.to_thread.run_sync(self._learn_from, ready)

    def _learn_from(self, items: list[InFlightBlock]) -> None:
        for item in items:
            results = item.run.execution.tx_results
            accounts, slots = executed_keys(results)
            self.hot.add_block(accounts, slots)
            pre = item.pre
            senders = pre.senders if len(pre.senders) == len(pre.block.transactions) else [getattr(tx, "sender", None) for tx in pre.block.transactions]
            self.predictor.learn_block(pre.block.transactions, senders, results, pre.header.coinbase)


def reader_events(events: EventLog, stages: Sequence[object], since: float) -> None:
    """The reader pool's batches ("reader N") and the trie-path walks ("path walk",
    with their counts, `prefetch_path_*`) as events on tracks of their own, for the
    trace and `evmpipe trace-summary`; not stages, so the summary leaves them out."""
    stage = next((stage for stage in stages if isinstance(stage, PrefetchStage)), None)
    if stage is None or stage.pool is None:
        return
    for reader, block, start, end in list(stage.pool.spans):
        if start >= since:
            events.events.append(StageEvent(f"reader {reader}", block, -1, start - events.t0, end - events.t0, True, {}))
    for paths in list(stage.walks):
        if paths.end and paths.start >= since:
            counts: dict[str, Any] = {"state": paths.state, **paths.counts.as_counts("prefetch_path_")}
            if paths.error:
                counts["error"] = paths.error
            events.events.append(StageEvent("path walk", paths.number, -1, paths.start - events.t0, paths.end - events.t0, True, counts))  # ok: a failed walk fails no block


def _read_here(store: Any, accounts: set[bytes], slots: set[tuple[bytes, int]]) -> None:
    """The warm-up without a pool: batched reads on the store's own connection."""
    found = store.read_accounts(accounts)
    store.read_storage(slots)
    store.read_code({a.code_hash for a in found.values() if a is not None})


async def _run_here(function: Callable[..., T], *args: Any) -> T:
    """`trio.to_thread.run_sync`'s signature, run in this thread."""
    return function(*args)


def body_roots(block: BlockAPI, encoded_txs: list[bytes]) -> tuple[bytes, bytes | None]:
    """The transactions root and (from Shanghai) withdrawals root of the body."""
    withdrawals = getattr(block, "withdrawals", None)
    withdrawals_root = None
    if withdrawals is not None and hasattr(block.header, "withdrawals_root"):
        withdrawals_root = ordered_trie_root([w.encode() for w in withdrawals])
    return ordered_trie_root(encoded_txs), withdrawals_root


def recover_senders(block: BlockAPI, encoded_txs: list[bytes]) -> list[bytes | None]:
    """Recover every sender once, in this process, from the encodings the block carries."""
    senders: list[bytes | None] = []
    for index, (tx, encoded) in enumerate(zip(block.transactions, encoded_txs)):
        try:
            senders.append(recover_sender(tx, encoded))
        except Exception as exc:  # eth-keys and coincurve raise several types for bad signatures
            raise InvalidTransaction(TxError.INVALID_SIGNATURE, f"sender recovery failed: {exc}", tx_index=index) from exc
    return senders


def check_transactions_static(vm_class: VMClass, block: BlockAPI, chain_id: int) -> None:
    """Every transaction's checks that need no state, in block order."""
    for index, tx in enumerate(block.transactions):
        check_transaction_static(vm_class, block.header, tx, index, chain_id)


def validate_body(chain: ChainState, block: BlockAPI) -> None:
    """Ommers against the header and the chain (Yellow Paper section 11.1).

    The transactions and withdrawals roots are checked after execution, in the
    validate stage, as the specs order it: an invalid transaction is reported as
    such even when the header's roots were computed without it."""
    header = block.header
    if keccak(rlp.encode(block.uncles)) != header.uncles_hash:
        raise InvalidBlock(BlockError.INVALID_UNCLES_HASH, "ommers do not match the header's ommers hash")
    if block.uncles:
        validate_ommers(chain, block)


def validate_ommers(chain: ChainState, block: BlockAPI) -> None:
    """Yellow Paper section 11.1: at most two, recent, not ancestors, not repeated."""
    if len(block.uncles) > MAX_OMMERS:
        raise InvalidBlock(BlockError.TOO_MANY_UNCLES, f"{len(block.uncles)} ommers, at most {MAX_OMMERS}")
    ancestors: dict[bytes, object] = {}
    included: set[bytes] = set()
    current = block.header.parent_hash
    for _ in range(MAX_OMMER_DEPTH + 1):
        found = chain.header(current)
        if found is None:
            break
        ancestors[current] = found[0]
        included.update(chain.ommers_of(current))
        if found[0].block_number == 0:
            break
        current = found[0].parent_hash
    seen: set[bytes] = set()
    for ommer in block.uncles:
        if ommer.hash in seen:
            raise InvalidBlock(BlockError.DUPLICATE_UNCLE, "the same ommer twice")
        seen.add(ommer.hash)
        if ommer.hash in ancestors or ommer.hash == block.header.hash:
            raise InvalidBlock(BlockError.UNCLE_IS_ANCESTOR, "ommer is an ancestor")
        if ommer.hash in included:
            raise InvalidBlock(BlockError.UNCLE_ALREADY_INCLUDED, "ommer already included by an ancestor")
        if ommer.parent_hash not in ancestors:
            raise InvalidBlock(BlockError.UNCLE_PARENT_INCORRECT, "ommer's parent is not a recent ancestor")
        if ommer.parent_hash == block.header.parent_hash:
            raise InvalidBlock(BlockError.UNCLE_PARENT_INCORRECT, "ommer is a sibling of the block (its parent is the block's parent)")
        parent = ancestors[ommer.parent_hash]
        if ommer.block_number != parent.block_number + 1:  # type: ignore[attr-defined]
            raise InvalidBlock(BlockError.UNCLE_PARENT_INCORRECT, "ommer's number does not follow its parent")
        ommer_vm = chain.schedule.vm_class(ommer.block_number, ommer.timestamp)
        has_base_fee = header_field(ommer, "base_fee_per_gas") is not None
        if issubclass(ommer_vm, LondonVM) and not has_base_fee:
            raise InvalidBlock(BlockError.IMPORT_IMPOSSIBLE_LEGACY_WRONG_PARENT, "pre-London ommer header in a London position")
        if not issubclass(ommer_vm, LondonVM) and has_base_fee:
            raise InvalidBlock(BlockError.IMPORT_IMPOSSIBLE_LONDON_WRONG_PARENT, "London ommer header before London")
        parent_vm = chain.schedule.vm_class(parent.block_number, parent.timestamp)  # type: ignore[attr-defined]
        try:
            validate_header(ommer_vm, ommer, parent, parent_vm)  # type: ignore[arg-type]
        except InvalidBlock as error:
            raise InvalidBlock(BlockError(error.code), f"ommer: {error.reason}") from error
