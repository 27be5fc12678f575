"""Long-lived worker processes for speculative execution.

Tasks are not cores: trio gives concurrency, EVM execution needs processes. Each
worker imports py-evm once, opens the state database read-only (WAL lets it read
beside the writer), keeps its own cache warm across blocks, and mirrors the master's
overlay of uncommitted block diffs. A request carries what changed since the last
one (new diffs, the committed head, a generation that bumps when the master threw
in-flight work away), the block's header and its share of the transactions, as
msgpack bytes; the reply is the packed `SpecResult`s plus the worker's CPU seconds.

The trio side (`WorkerPool.start_speculation`) never blocks the event loop on a
pipe: it waits for a reply with `wait_readable` and reads it on a thread. It hands a
block out in chunks, round-robin in block order, so that in-order validation starts
on the first chunk while the workers run the rest, and checks that every transaction
it sent came back.

Every request has a deadline (`request_deadline`). A worker that misses it (hung,
stopped) or dies is killed and replaced by a fresh process, and the request fails
with `WorkerFailure`: the strategy runs that block again sequentially. A caller
cancelled while its reply is outstanding (the block was rejected, shutdown) leaves
the worker marked: its next request first discards that stale reply.

Processes outlive a trio run (the blocktest engine reuses one pool for thousands
of tests, each its own `trio.run`); what belongs to a run — the per-worker locks —
lives in a `PoolSession`, opened with `async with pool.session()` inside it, or, for
a pool a stage holds across runs, made per run by `pool.run_session()`. The node
opens the pool itself as an async context manager in its nursery.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, NoReturn

import msgpack
import structlog
import trio

from pipeline.errors import FatalError

#: Below this many transactions per worker a message costs more than it saves.
MIN_TXS_PER_WORKER = 8
_log = structlog.get_logger("evmpipe.workers")
#: Seconds one request may take before its worker is called hung, killed and
#: replaced. A chunk of a mainnet block takes well under a second here; the
#: slowest official tests (huge loops) take tens of seconds per transaction.
REQUEST_DEADLINE = 120.0
#: Seconds a new worker may take to import py-evm and report ready.
START_DEADLINE = 60.0


IDLE, SENDING, AWAITING = range(3)


class WorkerFailure(Exception):
    """A worker died or missed its deadline; it has been replaced. The request's
    block can run again sequentially: nothing of it was used."""


@dataclass
class BlockRequest:
    db_path: str
    db_id: bytes  # the database's random id: a new database at the same path is another
    generation: int
    committed: int
    diffs: list[tuple[int, bytes]]
    schedule: dict
    header_rlp: bytes
    prev_hashes: list[bytes]
    txs: list[tuple[int, bytes, bytes | None, int | None]]  # index, encoded tx, sender if known, chain
    op: str = "speculate"  # or "prerun": prefetch's, for the keys only (`speculate(hints=True)`)
    #: "prerun" without senders: `txs` are the block's first transactions, unrecovered;
    #: the worker recovers them and runs these and their senders' earlier ones
    chosen: list[int] | None = None

    def pack(self) -> bytes:
        payload = [self.db_path, self.db_id, self.generation, self.committed, self.diffs, self.schedule, self.header_rlp, self.prev_hashes, self.txs]
        if self.op == "prerun":
            payload.append(self.chosen)
        return msgpack.packb([self.op, payload], use_bin_type=True)


def worker_main(conn: Any) -> None:
    """A worker's loop: one request, one reply, until the pipe closes.

    Ctrl-C reaches the whole process group; the master decides when workers stop
    (it drains in-flight blocks first), so workers ignore SIGINT."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import execution  # noqa: F401  (selects the keccak backend before eth imports)
    import execution.block  # noqa: F401  (py-evm and every fork, imported before the first block)
    from execution.speculate import pack_results

    worker = _Worker()
    conn.send_bytes(msgpack.packb(time.process_time()))
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            break
        if data == b"stop":
            break
        op, payload = msgpack.unpackb(data, raw=False)
        if op == "speculate":
            reply = pack_results(worker.run(payload))
        elif op == "prerun":
            reply = pack_results(worker.prerun(payload))
        elif op == "senders":
            reply = msgpack.packb(worker.senders(payload), use_bin_type=True)
        else:
            raise ValueError(f"unknown request {op!r}")
        conn.send_bytes(msgpack.packb([time.process_time(), reply], use_bin_type=True))
    worker.close()


class _Worker:
    def __init__(self) -> None:
        self.store: Any = None
        self.overlay: Any = None
        self.path = ""
        self.db_id = b""
        self.generation = -1
        self.schedules: dict[str, Any] = {}
        self.chains: dict[int, Any] = {}  # chain id -> account database, for one block
        self.chains_block = b""
        self.committed = -1  # the committed head at the last request

    def close(self) -> None:
        if self.store is not None:
            self.store.close()

    def _sync(self, path: str, db_id: bytes, generation: int, committed: int, diffs: list) -> None:
        from state.codec import unpack_diff
        from state.overlay import Overlay
        from state.store import StateStore

        if (path, db_id, generation) != (self.path, self.db_id, self.generation):
            self.close()
            self.store = StateStore(path, readonly=True)
            self.overlay = Overlay(self.store)
            self.path, self.db_id, self.generation = path, db_id, generation
            self.chains, self.chains_block = {}, b""
            self.committed = committed
        held = {number for number, _ in self.overlay.diffs}
        for number, diff in self.overlay.diffs:
            if number <= committed:
                self.store.update_cache(diff)
        if any(number not in held for number in range(self.committed + 1, committed + 1)):
            # A block was committed whose diff this worker never got (it was committed
            # before a request could carry it): what the cache holds may be older.
            self.store.clear_cache()
        self.committed = committed
        self.overlay.drop_committed(committed)
        for number, packed in diffs:
            self.overlay.push(number, unpack_diff(packed))

    def _schedule(self, schedule: dict) -> Any:
        import json

        from execution.forks import ForkSchedule

        key = json.dumps(schedule, sort_keys=True)
        return self.schedules.get(key) or self.schedules.setdefault(key, ForkSchedule.from_dict(schedule))

    def run(self, payload: list, hints: bool = False) -> list:
        from execution.block import make_vm
        from execution.decode import decode_header, mark_sender, skip_signature_check
        from execution.senders import recover_sender
        from execution.speculate import speculate

        path, db_id, generation, committed, diffs, schedule, header_rlp, prev_hashes, txs = payload
        self._sync(path, db_id, generation, committed, diffs)
        if header_rlp != self.chains_block:  # chains live for one block
            self.chains, self.chains_block = {}, header_rlp
        fork_schedule = self._schedule(schedule)
        header, vm_class = decode_header(fork_schedule, header_rlp)
        builder = vm_class.get_transaction_builder()
        decoded = []
        for index, encoded, sender, chain in txs:
            tx = builder.decode(encoded)
            if sender is not None:
                mark_sender(tx, sender)  # recovered once already
            else:
                try:
                    recover_sender(tx, encoded)
                except Exception:  # a bad signature: `speculate` reports the transaction invalid
                    skip_signature_check(tx)
            decoded.append((index, tx, chain))
        self._warm(header, decoded)
        vm = make_vm(vm_class, header, self.overlay, prev_hashes, fork_schedule.chain_id)
        return speculate(vm, header, decoded, self.chains, hints=hints)

    def prerun(self, payload: list) -> list:
        """`run` with hints (prefetch's pre-run). With `chosen`, the transactions came
        unrecovered: their senders are recovered here (a few milliseconds, on this
        core rather than the master's), and the chosen ones run with their senders'
        earlier transactions, chained (`pipeline.prerun.with_earlier`)."""
        *request, chosen = payload
        if chosen is not None:
            from pipeline.prerun import with_earlier

            schedule, header_rlp, txs = request[5], request[6], request[8]
            senders = self.senders([schedule, header_rlp, [encoded for _, encoded, _, _ in txs]])
            ran, chains = with_earlier(chosen, senders)
            request[8] = [(i, txs[i][1], senders[i], chains.get(i)) for i in ran]
        return self.run(request, hints=True)

    def senders(self, payload: list) -> list[bytes | None]:
        """Recover the senders of encoded transactions (None: the signature does not
        recover; the master reports that invalid transaction in block order)."""
        from execution.decode import decode_header
        from execution.senders import recover_sender

        schedule, header_rlp, txs = payload
        _, vm_class = decode_header(self._schedule(schedule), header_rlp)
        builder = vm_class.get_transaction_builder()
        senders: list[bytes | None] = []
        for encoded in txs:
            try:
                senders.append(recover_sender(builder.decode(encoded), encoded))
            except Exception:  # eth-keys and coincurve raise several types for bad signatures
                senders.append(None)
        return senders

    def _warm(self, header: Any, txs: list) -> None:
        """One batched read of the accounts every transaction touches first."""
        addresses = {header.coinbase}
        addresses.update(tx.to for _, tx, _ in txs if tx.to)
        accounts = self.store.read_accounts(addresses)
        self.store.read_code({a.code_hash for a in accounts.values() if a is not None})


class WorkerPool:
    """`size` worker processes. `with WorkerPool() as pool` (processes outlive trio
    runs; open a `session()` in each) or `async with WorkerPool() as pool` (starts
    them on a thread, opens the session, stops them at exit)."""

    def __init__(self, size: int | None = None, *, request_deadline: float = REQUEST_DEADLINE) -> None:
        self.size = size or os.cpu_count() or 1
        self.request_deadline = request_deadline
        self._conns: list[Any] = []
        self._procs: list[Any] = []
        self._cpu: list[float] = []
        self._seen: list[tuple[tuple[bytes, int], set[int]]] = []  # per worker: (database, generation), diffs sent
        self._state: list[int] = []  # per worker: IDLE, SENDING or AWAITING (a cancelled caller's leftovers)
        self._session: PoolSession | None = None
        self._async_session: Any = None
        self._run_session: trio.lowlevel.RunVar[PoolSession | None] = trio.lowlevel.RunVar(f"evmpipe-worker-pool-{id(self)}", None)
        self.replaced = 0  # workers killed and started again
        self.cpu_seconds = 0.0  # CPU time the workers spent, summed from their replies
        self.spans: list[tuple[int, int | None, float, float]] = []  # worker, block, start, end (perf_counter)

    # -- processes ----------------------------------------------------------------

    def __enter__(self) -> WorkerPool:
        try:
            for _ in range(self.size):
                conn, process = _spawn()
                self._conns.append(conn)
                self._procs.append(process)
                self._cpu.append(0.0)
                self._seen.append(((b"", -1), set()))
                self._state.append(IDLE)
            for worker in range(self.size):  # imports take about a second: not on the clock
                self._cpu[worker] = _ready(self._conns[worker], worker)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for conn in self._conns:
            try:
                conn.send_bytes(b"stop")
            except OSError:
                pass
        for process in self._procs:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._conns.clear()
        self._procs.clear()
        self._seen.clear()
        self._state.clear()

    async def __aenter__(self) -> WorkerPool:
        await trio.to_thread.run_sync(self.__enter__)
        self._async_session = self.session()
        await self._async_session.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._async_session.__aexit__(*exc)
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.__exit__)

    def session(self) -> PoolSession:
        """What one trio run needs to talk to the workers (one lock each)."""
        return PoolSession(self)

    def run_session(self) -> PoolSession:
        """The current trio run's session, made on the first call of the run and gone
        with it (it lives in a `trio.lowlevel.RunVar`): for a pool held by a stage
        across runs (the pre-run's), where no `async with` spans the whole run to put
        `session()` in. A pool uses one kind or the other."""
        session = self._run_session.get()
        if session is None:
            session = PoolSession(self)
            session.locks = [trio.Lock() for _ in range(self.size)]
            self._run_session.set(session)
        return session

    def _replace(self, worker: int, why: str) -> None:
        """Kill a worker and start a fresh one in its place (blocking: a thread)."""
        process, conn = self._procs[worker], self._conns[worker]
        process.kill()
        process.join(timeout=10)
        conn.close()
        conn, process = _spawn()
        self._conns[worker], self._procs[worker] = conn, process
        self._seen[worker] = ((b"", -1), set())
        self._state[worker] = IDLE
        self._cpu[worker] = _ready(conn, worker)
        self.replaced += 1
        _log.warning("worker_replaced", worker=worker, reason=why, pid=process.pid)

    # -- requests -------------------------------------------------------------------

    def workers_for(self, tx_count: int) -> int:
        return max(1, min(self.size, tx_count // MIN_TXS_PER_WORKER))

    async def _call(self, worker: int, data: bytes, label: int | None = None) -> bytes:
        """One request and its reply on one worker (requests to a worker never
        interleave). Raises `WorkerFailure` when the worker dies or misses the
        deadline; it has been replaced by then."""
        session = self._session or self._run_session.get()
        if session is None:
            raise RuntimeError("WorkerPool used outside `async with pool.session()` (or `run_session()`)")
        async with session.locks[worker]:
            started = time.perf_counter()
            if self._state[worker] == SENDING:  # a cancelled caller left half a request
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._replace, worker, "a cancelled request left its pipe in an unknown state")
            try:
                with trio.fail_after(self.request_deadline):
                    if self._state[worker] == AWAITING:  # a cancelled caller's reply is still coming
                        await self._receive(worker)
                    self._state[worker] = SENDING
                    await trio.to_thread.run_sync(self._conns[worker].send_bytes, data, abandon_on_cancel=True)
                    self._state[worker] = AWAITING
                    reply = await self._receive(worker)
            except trio.TooSlowError:
                await self._fail(worker, f"gave no reply within {self.request_deadline:g} s")
            except (EOFError, OSError) as exc:
                await self._fail(worker, f"died: {exc!r}")
            self._state[worker] = IDLE
            self.spans.append((worker, label, started, time.perf_counter()))
        cpu, packed = msgpack.unpackb(reply, raw=False)
        self.cpu_seconds += max(0.0, cpu - self._cpu[worker])
        self._cpu[worker] = cpu
        return packed

    async def _receive(self, worker: int) -> bytes:
        """Wait for a reply without a thread (cancellable), then read it whole."""
        conn = self._conns[worker]
        await trio.lowlevel.wait_readable(conn.fileno())
        return await trio.to_thread.run_sync(conn.recv_bytes)

    async def _fail(self, worker: int, why: str) -> NoReturn:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._replace, worker, why)
        raise WorkerFailure(f"worker {worker} {why}; replaced")

    def _diffs_for(self, worker: int, request: BlockRequest) -> list[tuple[int, bytes]]:
        """The overlay diffs this worker has not been sent yet (its first request of a
        block carries them; a worker left out of a block gets them with the next)."""
        state, seen = self._seen[worker]
        if state != (request.db_id, request.generation):
            seen = set()
        current = {number for number, _ in request.diffs}
        diffs = [(number, packed) for number, packed in request.diffs if number not in seen]
        self._seen[worker] = ((request.db_id, request.generation), (seen & current) | current)
        return diffs

    def start_speculation(self, nursery: trio.Nursery, request: BlockRequest, label: int | None = None, affinity: list[int] | None = None) -> SpeculationStream:
        """Start speculating in the background, in chunks in block order, so that
        in-order validation can begin on the first chunk while the workers run the
        rest. Without `affinity` chunks go round-robin; with it (the worker of each
        transaction, so that a chain stays on one worker) each chunk is split by
        worker. Results are read with `await stream.get(index)`."""
        from execution.speculate import unpack_results

        txs = request.txs
        workers = self.workers_for(len(txs)) if affinity is None else self.size
        chunks = max(1, min(len(txs), workers * CHUNKS_PER_WORKER))
        size = -(-len(txs) // chunks) if txs else 1
        parts: list[tuple[int, list]] = []  # (worker, transactions), in block order
        for number, start in enumerate(range(0, len(txs), size)):
            chunk = txs[start : start + size]
            if affinity is None:
                parts.append((number % workers, chunk))
                continue
            for worker in range(workers):
                mine = [tx for position, tx in zip(range(start, start + size), chunk) if affinity[position] == worker]
                if mine:
                    parts.append((worker, mine))
        stream = SpeculationStream([[entry[0] for entry in part] for _, part in parts])

        async def run_worker(worker: int) -> None:
            for number, (owner, part) in enumerate(parts):
                if owner == worker:
                    data = BlockRequest(**{**request.__dict__, "txs": part, "diffs": self._diffs_for(worker, request)}).pack()
                    stream.deliver(number, unpack_results(await self._call(worker, data, label)))

        for worker in sorted({owner for owner, _ in parts}):
            nursery.start_soon(run_worker, worker)
        return stream

    async def request_whole(self, request: BlockRequest, label: int | None = None, worker: int = 0) -> list[Any]:
        """One request on one worker, not cut into chunks (the pre-run's: its keys are
        wanted all at once); its results. Raises `WorkerFailure` (replaced)."""
        from execution.speculate import unpack_results

        data = BlockRequest(**{**request.__dict__, "diffs": self._diffs_for(worker, request)}).pack()
        return list(unpack_results(await self._call(worker, data, label)))

    async def recover_senders(self, schedule: dict, header_rlp: bytes, encoded: list[bytes]) -> list[bytes | None]:
        """Senders of `encoded` transactions, recovered by all workers in parallel."""
        workers = self.workers_for(len(encoded))
        size = -(-len(encoded) // workers) if encoded else 1
        parts = [encoded[i : i + size] for i in range(0, len(encoded), size)]
        replies: list[list[bytes | None]] = [[] for _ in parts]

        async def run(worker: int) -> None:
            data = msgpack.packb(["senders", [schedule, header_rlp, parts[worker]]], use_bin_type=True)
            replies[worker] = msgpack.unpackb(await self._call(worker, data), raw=False)

        async with trio.open_nursery() as nursery:
            for worker in range(len(parts)):
                nursery.start_soon(run, worker)
        return [sender for reply in replies for sender in reply]


#: Chunks per worker per block: smaller chunks let validation start sooner; each costs
#: one round trip (about a millisecond here).
CHUNKS_PER_WORKER = 4


class PoolSession:
    """The pool as one trio run sees it: a lock per worker, so that requests to a
    worker never interleave."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.locks: list[trio.Lock] = []

    async def __aenter__(self) -> WorkerPool:
        if self.pool._session is not None:
            raise RuntimeError("a WorkerPool serves one trio run at a time")
        self.locks = [trio.Lock() for _ in range(self.pool.size)]
        self.pool._session = self
        return self.pool

    async def __aexit__(self, *exc: object) -> None:
        self.pool._session = None


@asynccontextmanager
async def pool_session(pool: WorkerPool | None) -> AsyncIterator[WorkerPool | None]:
    """`pool.session()`, or nothing when there is no pool (sequential)."""
    if pool is None:
        yield None
        return
    async with pool.session():
        yield pool


def _spawn() -> tuple[Any, Any]:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=worker_main, args=(child,), daemon=True, name="evmpipe-worker")
    process.start()
    child.close()
    return parent, process


def _ready(conn: Any, worker: int) -> float:
    """Wait for a new worker's ready message: its CPU seconds so far."""
    if not conn.poll(START_DEADLINE):
        raise FatalError(f"speculative worker {worker} did not start within {START_DEADLINE:g} s")
    try:
        return float(msgpack.unpackb(conn.recv_bytes()))
    except (EOFError, OSError, ValueError):
        raise FatalError(f"speculative worker {worker} did not start (see its error above)") from None


class SpeculationStream:
    """Speculative results of one block as they arrive, part by part."""

    def __init__(self, parts: list[list[int]]) -> None:
        self._results: dict[int, Any] = {}
        self._ready = [trio.Event() for _ in parts]
        self._expected = parts
        self._part_of = {index: number for number, members in enumerate(parts) for index in members}

    def ready(self, index: int) -> bool:
        """Whether the result of transaction `index` has arrived."""
        return index in self._results

    def deliver(self, part: int, results: list) -> None:
        if [r.index for r in results] != self._expected[part]:
            raise FatalError(f"a worker returned {len(results)} results for {len(self._expected[part])} transactions")
        for result in results:
            self._results[result.index] = result
        self._ready[part].set()

    async def get(self, index: int) -> Any:
        await self._ready[self._part_of[index]].wait()
        return self._results[index]
